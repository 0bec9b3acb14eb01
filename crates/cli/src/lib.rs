//! # rlvr-cli
//!
//! The `rlvr` command line and the library behind it. A plugin binary links its own crate and
//! calls [`main`]; the built-in crates are named here so that their link-time registrations are
//! kept (see the README's "Writing a plugin").

pub mod algo_args;
pub mod commands;
pub mod config_file;
pub mod eval_cmd;
pub mod evaluation;
pub mod figures;
pub mod optim;
pub mod run_config;
pub mod sweep;
pub mod train_cmd;
pub mod trainer;

use rlvr_algos as _;
use rlvr_models as _;
use rlvr_rewards as _;

use clap::Parser;
use std::process::ExitCode;

/// Keeps the built-in crates' registrations linked into any binary that links this crate.
#[doc(hidden)]
pub fn link_builtins() {
    std::hint::black_box(rlvr_algos::presets::link_anchor as fn());
    std::hint::black_box(rlvr_models::link_anchor as fn());
    std::hint::black_box(rlvr_rewards::link_anchor as fn());
}

/// Parses `std::env::args`, runs the command, prints any error with its causes, and returns the
/// exit status (2 for usage and configuration errors, 1 for failures at run time).
pub fn main() -> ExitCode {
    link_builtins();
    let cli = commands::Cli::parse();
    init_tracing(cli.verbose);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs to stderr; `-v` raises the level, `RUST_LOG` overrides it.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,rlvr=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
