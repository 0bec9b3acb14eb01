//! The build script of `rlvr-cli`: libtorch's run-time path (as every crate that links it,
//! [`rpath.rs`](rpath.rs)) and the commit HEAD named when the binary was built,
//! `RLVR_GIT_COMMIT` (12 hex digits; "unknown" outside a git checkout), which `rlvr --version`,
//! run summaries and sweep reports print. Uncommitted changes are not tracked (the script re-runs
//! only when HEAD moves, so a commit rebuilds this crate alone).
#[path = "rpath.rs"]
mod rpath;

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    rpath::main();
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RLVR_GIT_COMMIT={commit}");
    // Re-run when HEAD or the branch it names moves (files that exist only: a missing one would
    // re-run the script on every build).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let mut watch = vec![format!("{dir}/HEAD"), format!("{dir}/packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(format!("{dir}/{branch}"));
        }
        for f in watch.into_iter().filter(|f| Path::new(f).exists()) {
            println!("cargo:rerun-if-changed={f}");
        }
    }
}
