//! Fingerprints of a run's data files (size and SHA-256), recorded in `data-files.json` when the
//! run is created and compared on `--resume`: a resumed run trains on the data it started with,
//! or the user says explicitly that it may not (`--allow-changed-data`, recorded in
//! `history.jsonl`).

use crate::config::RunConfig;
use crate::config_bail;
use crate::error::{fs::write_atomic, IoResultExt, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The file in a run folder that holds the fingerprints.
pub const FILE: &str = "data-files.json";

/// One data file as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The path as the configuration gives it.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its contents, hex.
    pub sha256: String,
}

/// The data files of a run: `data.train`, `data.test` and `data.eval_data` (none for a built-in
/// task).
pub fn data_files(cfg: &RunConfig) -> Vec<String> {
    let Some(d) = &cfg.data else {
        return Vec::new();
    };
    let mut files = vec![d.train.clone()];
    if !d.test.is_empty() {
        files.push(d.test.clone());
    }
    files.extend(d.eval_data.iter().cloned());
    files
}

/// Fingerprints `path`.
pub fn fingerprint(path: &str) -> Result<Fingerprint> {
    let p = Path::new(path);
    let mut file = std::fs::File::open(p).at(p)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).at(p)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Fingerprint {
        path: path.to_string(),
        bytes,
        sha256,
    })
}

/// Writes the fingerprints of the run's data files into `dir`.
pub fn record(dir: &Path, cfg: &RunConfig) -> Result<()> {
    let prints = data_files(cfg)
        .iter()
        .map(|f| fingerprint(f))
        .collect::<Result<Vec<_>>>()?;
    write_atomic(&dir.join(FILE), &serde_json::to_string_pretty(&prints)?)
}

/// The data files that differ from the run's record, each with what changed. Fails (a usage
/// error naming them) unless `allow_changed`. A run without a record (made before records were
/// kept) has nothing to compare.
pub fn check(dir: &Path, allow_changed: bool) -> Result<Vec<String>> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let recorded: Vec<Fingerprint> =
        serde_json::from_str(&crate::error::fs::read_to_string(&path)?)?;
    let mut changed = Vec::new();
    for r in &recorded {
        let now = match fingerprint(&r.path) {
            Ok(now) => now,
            Err(_) => {
                changed.push(format!("{} is gone", r.path));
                continue;
            }
        };
        if now.bytes != r.bytes {
            changed.push(format!("{}: {} bytes, was {}", r.path, now.bytes, r.bytes));
        } else if now.sha256 != r.sha256 {
            changed.push(format!(
                "{}: same size, other contents (SHA-256 {}…, was {}…)",
                r.path,
                &now.sha256[..12],
                &r.sha256[..12]
            ));
        }
    }
    if !changed.is_empty() && !allow_changed {
        config_bail!(
            "the run's data changed since it started: {}; resuming would train on other data. \
             Restore the files, start a new run, or pass --allow-changed-data to resume anyway \
             (recorded in history.jsonl)",
            changed.join("; ")
        );
    }
    Ok(changed)
}
