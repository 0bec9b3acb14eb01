//! Which build of rlvr wrote a run's or a sweep's report: results depend on numerics, so every
//! report names the version and commit of the program that produced it. The `rlvr` binary sets
//! it at start-up ([`set`]); a program that uses this crate without setting it reports the
//! crate's version only.

use std::sync::OnceLock;

static BUILD: OnceLock<String> = OnceLock::new();

/// Records the program's build (e.g. `rlvr 0.1.0, commit 1fc4bf8e4ed7`); the first call wins.
pub fn set(description: String) {
    let _ = BUILD.set(description);
}

/// The program's build, for reports.
pub fn describe() -> String {
    BUILD.get().cloned().unwrap_or_else(|| {
        format!(
            "rlvr-train {} (commit not recorded by the program)",
            env!("CARGO_PKG_VERSION")
        )
    })
}
