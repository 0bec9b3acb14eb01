//! Writing files and folders so that a reader never sees them half-written: a file goes to a
//! temporary sibling and is renamed over its destination; a folder is filled under a temporary
//! name ([`StagedDir`]) and moved into place when complete. Every error names its path.

use std::io;
use std::path::{Path, PathBuf};

/// A failed file-system operation and the path it was on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct PathError {
    /// The file or folder.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// Attaches a path to an I/O result.
fn at<T>(result: io::Result<T>, path: &Path) -> Result<T, PathError> {
    result.map_err(|source| PathError {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` through `<path>.tmp` and a rename, so `path` holds either its old
/// or its new contents, never a part.
pub fn write_file(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), PathError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    at(std::fs::write(&tmp, contents), &tmp)?;
    at(std::fs::rename(&tmp, path), path)
}

/// A folder written under a temporary name next to its destination and moved there by
/// [`StagedDir::publish`] once complete; a folder left by an interrupted write is removed first.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    out: PathBuf,
}

impl StagedDir {
    /// Creates the empty staging folder `<out>.<suffix>` (e.g. `step-20.tmp`).
    pub fn create(out: &Path, suffix: &str) -> Result<StagedDir, PathError> {
        let mut name = out.as_os_str().to_owned();
        name.push(".");
        name.push(suffix);
        let staging = PathBuf::from(name);
        if staging.exists() {
            at(std::fs::remove_dir_all(&staging), &staging)?;
        }
        at(std::fs::create_dir_all(&staging), &staging)?;
        Ok(StagedDir {
            staging,
            out: out.to_path_buf(),
        })
    }

    /// The staging folder to write into.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Moves the complete folder to its destination, replacing what was there (an empty folder,
    /// such as a [`ClaimedDir`], is replaced in the one rename); returns the destination.
    pub fn publish(self) -> Result<PathBuf, PathError> {
        if let Some(parent) = self.out.parent().filter(|p| !p.as_os_str().is_empty()) {
            at(std::fs::create_dir_all(parent), parent)?;
        }
        if std::fs::rename(&self.staging, &self.out).is_err() {
            if self.out.exists() {
                at(std::fs::remove_dir_all(&self.out), &self.out)?;
            }
            at(std::fs::rename(&self.staging, &self.out), &self.out)?;
        }
        Ok(self.out)
    }
}

/// A new, empty folder claimed for a result before the work that fills it: creating it is atomic,
/// so of two writers racing for one name exactly one gets it. Dropped without [`ClaimedDir::keep`]
/// (the work failed), it is removed again if still empty.
#[derive(Debug)]
pub struct ClaimedDir {
    path: PathBuf,
    kept: bool,
}

impl ClaimedDir {
    /// Claims `path` (creating its parents); `None` when it exists already.
    pub fn claim(path: &Path) -> Result<Option<ClaimedDir>, PathError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            at(std::fs::create_dir_all(parent), parent)?;
        }
        match std::fs::create_dir(path) {
            Ok(()) => Ok(Some(ClaimedDir {
                path: path.to_path_buf(),
                kept: false,
            })),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(PathError {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    /// The work succeeded: the folder stays.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for ClaimedDir {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_a_folder_appears_only_when_published() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.json");
        write_file(&file, "old").unwrap();
        write_file(&file, "new").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        assert!(!tmp.path().join("a.json.tmp").exists());

        let out = tmp.path().join("sub/report");
        let staged = StagedDir::create(&out, "partial").unwrap();
        std::fs::write(staged.path().join("x"), "1").unwrap();
        assert!(
            !out.exists(),
            "nothing at the destination before publishing"
        );
        // A second writer starting over removes the leftover staging folder.
        let staged = StagedDir::create(&out, "partial").unwrap();
        assert!(!staged.path().join("x").exists());
        std::fs::write(staged.path().join("y"), "2").unwrap();
        assert_eq!(staged.publish().unwrap(), out);
        assert!(out.join("y").exists() && !tmp.path().join("sub/report.partial").exists());
        // A claim is exclusive, published into in one rename, and released when the work fails.
        let claimed = tmp.path().join("claimed");
        let claim = ClaimedDir::claim(&claimed).unwrap().expect("new");
        assert!(
            ClaimedDir::claim(&claimed).unwrap().is_none(),
            "claimed once"
        );
        let staged = StagedDir::create(&claimed, "partial").unwrap();
        std::fs::write(staged.path().join("r"), "3").unwrap();
        staged.publish().unwrap();
        claim.keep();
        assert!(claimed.join("r").exists());
        let failed = tmp.path().join("failed");
        drop(ClaimedDir::claim(&failed).unwrap());
        assert!(!failed.exists(), "released");
        let err = write_file(&tmp.path().join("missing/dir/f"), "x").unwrap_err();
        assert!(err.to_string().contains("missing/dir/f.tmp"), "{err}");
    }
}
