//! `rlvr-with-plugin`: rlvr's CLI with the example plugin linked in. Naming the plugin crate is
//! what keeps its link-time registrations: the linker drops crates nothing refers to.
fn main() -> std::process::ExitCode {
    rlvr_plugin_example::link();
    rlvr_cli::main()
}
