//! # rlvr-cli
//!
//! The `rlvr` command line: argument parsing and printing around the `rlvr-train` library. Each
//! subcommand is a module of [`commands`] with its flags and a short `exec`. A plugin binary
//! links its own crate and calls [`main`]; the built-in crates are named here so that their
//! link-time registrations are kept (see the README's "Writing a plugin").

pub mod algo_args;
pub mod args;
pub mod argv;
pub mod commands;
pub mod document;
pub mod model_arg;
pub mod output;

use rlvr_algos as _;
use rlvr_models as _;
use rlvr_rewards as _;

use clap::Parser;
use std::process::ExitCode;

/// A usage error of the command line (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An `anyhow::Error` that is a usage error.
pub fn usage_error(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// `bail!` with a [`UsageError`].
#[macro_export]
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err($crate::usage_error(format!($($arg)*)))
    };
}

/// A failure that ends the program with a given exit code (a launched rank's).
#[derive(Debug)]
pub struct ExitWith(pub u8, pub String);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for ExitWith {}

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for failures at run time.
pub const EXIT_FAILURE: u8 = 1;

/// The exit code of an error: [`EXIT_USAGE`] when any cause is a usage or configuration error
/// (bad flags, names, values or config files), [`EXIT_FAILURE`] otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    use rlvr_core::CoreError as C;
    if let Some(ExitWith(code, _)) = err.chain().find_map(|c| c.downcast_ref::<ExitWith>()) {
        return *code;
    }
    // A run stopped by a signal ends with 128 + the signal.
    if let Some(code) = err
        .chain()
        .filter_map(|c| c.downcast_ref::<rlvr_train::TrainError>())
        .map(|e| e.exit_code())
        .find(|code| *code > EXIT_USAGE)
    {
        return code;
    }
    let usage = err.chain().any(|cause| {
        cause.downcast_ref::<UsageError>().is_some()
            || cause
                .downcast_ref::<rlvr_train::TrainError>()
                .is_some_and(|e| e.is_usage())
            || matches!(
                cause.downcast_ref::<C>(),
                Some(
                    C::UnknownName { .. } | C::InvalidParam { .. } | C::Config { .. } | C::Input(_)
                )
            )
    });
    if usage {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// Keeps the built-in crates' registrations linked into any binary that links this crate.
#[doc(hidden)]
pub fn link_builtins() {
    std::hint::black_box(rlvr_algos::presets::link_anchor as fn());
    std::hint::black_box(rlvr_models::link_anchor as fn());
    std::hint::black_box(rlvr_rewards::link_anchor as fn());
}

/// Parses `std::env::args`, runs the command, prints any error with its causes, and returns the
/// exit status: 0 on success, 2 for usage and configuration errors, 1 for failures at run time,
/// 128 + N for a run stopped by signal N (130 for SIGINT, 143 for SIGTERM).
pub fn main() -> ExitCode {
    rlvr_core::memory::configure_process_memory();
    report_out_of_memory_panics();
    link_builtins();
    let cli = commands::Cli::parse_from(argv::params_last::<commands::Cli>(
        std::env::args_os().collect(),
    ));
    init_tracing(cli.verbose);
    rlvr_train::build_info::set(format!("rlvr {}", commands::VERSION));
    output::VERBOSITY.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let text = without_backtraces(&format!("{err:#}"));
            let world = rlvr_dist::WorldEnv::from_env()
                .ok()
                .filter(|e| e.world_size > 1);
            // A run stopped on request (Ctrl-C, SIGTERM) is not an error: said once, by rank 0.
            let stopped = err.chain().any(|c| {
                matches!(
                    c.downcast_ref::<rlvr_train::TrainError>(),
                    Some(rlvr_train::TrainError::Interrupted { .. })
                )
            });
            let quiet =
                matches!(err.downcast_ref::<ExitWith>(), Some(ExitWith(_, m)) if m.is_empty());
            match (&world, stopped) {
                _ if quiet => {}
                (Some(env), true) if env.rank > 0 => {}
                (_, true) => eprintln!("{text}"),
                (Some(env), false) => {
                    eprintln!("error (rank {} of {}): {text}", env.rank, env.world_size)
                }
                (None, false) => eprintln!("error: {text}"),
            }
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Turns a panic on a failed allocation (a libtorch call that cannot return an error, under a
/// memory limit such as `ulimit -v` or a cgroup) into an out-of-memory error with exit code 1,
/// instead of a panic message and libtorch's C++ frames. Other panics keep the default report.
fn report_out_of_memory_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let Some(at) = payload.find("can't allocate memory") else {
            default(info);
            return;
        };
        let detail = payload[at..]
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches('\\');
        let detail = detail.split("\\n").next().unwrap_or(detail);
        let rank = rlvr_dist::WorldEnv::from_env()
            .ok()
            .filter(|e| e.world_size > 1)
            .map(|e| format!(" (rank {} of {})", e.rank, e.world_size))
            .unwrap_or_default();
        eprintln!(
            "error{rank}: out of memory: {detail}; this process may not use more memory \
             (a ulimit, cgroup or the machine's size): use fewer or shorter responses per \
             micro-batch, or divide the model state over ranks with train.sharding (see `rlvr \
             plan`)"
        );
        std::process::exit(1);
    }));
}

/// An error message without libtorch's C++ backtraces (`Exception raised from ...` and its
/// `frame #N` lines) and without a line repeated right after itself.
pub fn without_backtraces(message: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for line in message.lines() {
        let t = line.trim_start();
        if t.starts_with("frame #") || t.starts_with("Exception raised from") {
            continue;
        }
        if out.last() != Some(&line) {
            out.push(line);
        }
    }
    out.join("\n")
}

/// The log filter of `-v` counts: rlvr's own crates get more detail, libraries stay at warnings
/// (at most info with `-vvv`: their debug output, such as the tokenizer's internals line by
/// line, would drown rlvr's). `RUST_LOG` chooses anything else.
fn log_filter(verbose: u8) -> &'static str {
    // A directive matches every target that starts with it: `rlvr` covers `rlvr_train::…`.
    match verbose {
        0 => "warn,rlvr=info",
        1 => "warn,rlvr=debug",
        2 => "warn,rlvr=trace",
        _ => "info,rlvr=trace",
    }
}

/// Logs to stderr; `-v` raises the level, `RUST_LOG` overrides it. Colour only on a terminal:
/// stderr redirected to a log file gets plain text.
fn init_tracing(verbose: u8) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_filter(verbose)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn libtorch_backtraces_are_left_out_of_messages() {
        let raw =
            "rollout: libtorch: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: \
                   not enough memory: you tried to allocate 80000000000 bytes.\n\
                   Exception raised from alloc_cpu at aten/src/ATen/native/alloc_cpu.cpp:117:\n\
                   frame #0: c10::Error::Error() + 0x1\nframe #1: at::empty() + 0x2\n\
                   the same line\nthe same line";
        let clean = super::without_backtraces(raw);
        assert!(clean.contains("not enough memory: you tried to allocate 80000000000 bytes"));
        assert!(!clean.contains("frame #") && !clean.contains("Exception raised from"));
        assert_eq!(clean.matches("the same line").count(), 1, "{clean}");
    }
}
