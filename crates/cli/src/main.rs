//! The `rlvr` binary: everything lives in the `rlvr_cli` library so plugin binaries can reuse it.
fn main() -> std::process::ExitCode {
    rlvr_cli::main()
}
