//! Run configuration files: a TOML document whose `[algo]` table is an algorithm (preset plus
//! overrides), with `--set a.b=c` overrides applied on top.

use anyhow::{Context, Result};
use rlvr_core::algo::set_path;
use std::path::Path;

/// Reads a TOML configuration file into a table, naming the file in any error.
pub fn read(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

/// Applies `key=value` overrides (dotted keys from the document root, e.g. `algo.loss.topk=5`).
pub fn apply_sets(table: &mut toml::Table, sets: &[String]) -> Result<()> {
    for set in sets {
        let (key, value) = set
            .split_once('=')
            .with_context(|| format!("--set `{set}`: expected KEY=VALUE, e.g. algo.loss.topk=5"))?;
        set_path(table, key.trim(), value.trim())?;
    }
    Ok(())
}
