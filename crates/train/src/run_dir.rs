//! Run folders that can be trusted (docs/runs.md): names that stay one path component, folders
//! created new (never a reused one), and an exclusive lock held for a run's (or sweep's) life, so
//! two processes never write into one folder.

use crate::config_bail;
use crate::error::{IoResultExt, Result, TrainError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a run or sweep folder.
pub const LOCK_FILE: &str = "lock";

/// Checks that `name` can name a folder inside its parent: one path component, not empty, not
/// `.` or `..`, no `/` or `\`, no control characters, at most 200 bytes. `what` names the setting
/// in the error ("--name", "sweep name", "variant name").
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("names the current or parent folder")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.len() > 200 {
        Some("is longer than 200 bytes")
    } else if name.starts_with('-') {
        Some("starts with '-'")
    } else {
        None
    };
    match problem {
        Some(p) => config_bail!(
            "{what} {name:?} {p}; use letters, digits, '.', '-', '_' and '=' (one folder name)"
        ),
        None => Ok(()),
    }
}

/// A fresh default run name: `<prefix>-<UTC date>-<time>-<4 random hex digits>`.
pub fn unique_name(prefix: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = rlvr_core::calendar::civil_from_days(days as i64);
    format!(
        "{prefix}-{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{:04x}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        rand::random::<u16>()
    )
}

/// An exclusive lock on a run or sweep folder, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    path: PathBuf,
}

impl FolderLock {
    /// Takes the lock of `dir` (which must exist), writing this process's id into it. Fails with
    /// "... is in use by pid N" when another process holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<FolderLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .at(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                };
                return Err(TrainError::Run(format!(
                    "{what} {} is in use by {who}; wait for it to finish or stop it",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(TrainError::io(&path, e)),
        }
        file.set_len(0).at(&path)?;
        file.rewind().at(&path)?;
        writeln!(file, "pid {}", std::process::id()).at(&path)?;
        file.flush().at(&path)?;
        Ok(FolderLock { _file: file, path })
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds the lock of `dir` ("pid N"), if anyone does; `None` when it is free or absent.
pub fn lock_holder(dir: &Path) -> Option<String> {
    let mut file = File::open(dir.join(LOCK_FILE)).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(_) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Some(holder.trim().to_string()).filter(|h| !h.is_empty())
        }
    }
}

/// The error for a new run whose folder exists: "in use by pid N" while another process holds
/// it (a run that has just created its folder is given a second to take its lock), "already
/// exists" otherwise.
pub fn existing_run_error(dir: &Path) -> TrainError {
    let start = std::time::Instant::now();
    loop {
        if let Some(holder) = lock_holder(dir) {
            return TrainError::Run(format!(
                "run {} is in use by {holder}; choose another --name",
                dir.display()
            ));
        }
        let settled = dir.join(LOCK_FILE).exists() || dir.join("config.toml").exists();
        if settled || start.elapsed() > std::time::Duration::from_secs(1) {
            let shown = dir.display();
            let latest = crate::checkpoint::latest_checkpoint(dir).ok().flatten();
            return TrainError::Config(match latest {
                Some((step, _)) => format!(
                    "run folder {shown} already exists (latest complete checkpoint: step \
                     {step}); continue it with --resume {shown}, remove it (rm -r {shown}) or \
                     choose another --name"
                ),
                None => format!(
                    "run folder {shown} already exists and holds no complete checkpoint (its \
                     run failed or stopped before the first one), so it cannot be resumed; \
                     remove it (rm -r {shown}) or choose another --name"
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Creates the folder of a new run — it must not exist yet — and locks it. Its parent folders
/// are created as needed.
pub fn create_run_dir(dir: &Path) -> Result<FolderLock> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).at(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => FolderLock::acquire(dir, "run"),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(existing_run_error(dir)),
        Err(e) => Err(TrainError::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_their_folder_are_rejected() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "/abs",
            "a\\b",
            "x\ny",
            "-rf",
            &"x".repeat(201),
        ] {
            assert!(validate_name("--name", bad).is_err(), "{bad:?}");
        }
        for good in ["run", "alpha=0.01_seed=0", "grpo-20261128-101500-0a3f", "é"] {
            validate_name("--name", good).unwrap();
        }
    }

    #[test]
    fn default_names_are_unique_and_dated() {
        let a = unique_name("simko");
        let b = unique_name("simko");
        assert_ne!(a, b);
        assert!(a.starts_with("simko-20"), "{a}");
        validate_name("--name", &a).unwrap();
        assert_eq!(rlvr_core::calendar::civil_from_days(0), (1970, 1, 1));
        assert_eq!(rlvr_core::calendar::civil_from_days(20_785), (2026, 11, 28));
    }

    #[test]
    fn a_second_lock_names_the_holder_and_a_run_folder_is_created_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let lock = create_run_dir(&dir).unwrap();
        let err = FolderLock::acquire(&dir, "run").unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let busy = create_run_dir(&dir).unwrap_err().to_string();
        assert!(busy.contains("in use by pid"), "{busy}");
        drop(lock);
        let done = create_run_dir(&dir).unwrap_err().to_string();
        assert!(done.contains("already exists"), "{done}");
        FolderLock::acquire(&dir, "run").unwrap();
    }
}
