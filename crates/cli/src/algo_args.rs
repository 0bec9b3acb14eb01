//! Algorithm parameters as command-line flags, derived from the resolved configuration's fields:
//! every leaf of `[algo]` is a flag by its dotted path (`--loss.gate.tau 0.1`) and, when its last
//! name is unique, by that name alone (`--tau 0.1`). A plugin's fields therefore become flags too.

use crate::usage_bail;
use anyhow::Result;
use rlvr_core::algo::{leaves, set_path};
use std::collections::BTreeMap;

/// Flag name (without dashes, `_` for `-`) → dotted path inside `[algo]`.
pub fn flag_map(algo: &toml::Table) -> BTreeMap<String, String> {
    let paths: Vec<String> = leaves(algo)
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p != "preset")
        .collect();
    let mut last_count: BTreeMap<String, usize> = BTreeMap::new();
    for p in &paths {
        *last_count.entry(last(p).to_string()).or_default() += 1;
    }
    let mut map = BTreeMap::new();
    for p in &paths {
        map.insert(p.clone(), p.clone());
        if last_count.get(last(p)) == Some(&1) {
            map.insert(last(p).to_string(), p.clone());
        }
    }
    map
}

fn last(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Applies `--name value` / `--name=value` pairs to the expanded `[algo]` table. Unknown flags
/// fail with the list of valid ones.
pub fn apply(algo: &mut toml::Table, args: &[String]) -> Result<()> {
    let map = flag_map(algo);
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let Some(flag) = arg.strip_prefix("--") else {
            usage_bail!(
                "unexpected argument `{arg}`; algorithm parameters are given as --NAME VALUE"
            );
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let Some(v) = args.get(i + 1) else {
                    usage_bail!("flag --{flag} needs a value");
                };
                i += 1;
                (flag.to_string(), v.clone())
            }
        };
        let key = name.replace('-', "_");
        let Some(path) = map.get(&key) else {
            if let Some(hint) = rlvr_train::config::foreign_name_hint(&key) {
                usage_bail!("--{name} is not an algorithm parameter; {hint}");
            }
            if let Some(section) = setting_section(&key) {
                usage_bail!(
                    "--{name} is not an algorithm parameter; it is a [{section}] setting: \
                     --set {section}.{key}={value}"
                );
            }
            let valid: Vec<String> = map
                .keys()
                .filter(|k| !k.contains('.'))
                .map(|k| format!("--{}", k.replace('_', "-")))
                .collect();
            usage_bail!("unknown algorithm parameter --{name}; valid: {} (or any dotted path, e.g. --loss.clip_low)", valid.join(", "));
        };
        set_path(algo, path, &value)?;
        i += 1;
    }
    Ok(())
}

/// The section (`train`, `model`) whose settings include `key`, for a flag given as if it were
/// an algorithm parameter (`--lr 1e-5`).
fn setting_section(key: &str) -> Option<&'static str> {
    let train = toml::Value::try_from(rlvr_train::config::TrainConfig::default()).ok()?;
    if train.as_table()?.contains_key(key) {
        return Some("train");
    }
    let model = toml::Value::try_from(rlvr_models::policy::HfModelConfig::default()).ok()?;
    model.as_table()?.contains_key(key).then_some("model")
}
