//! `rlvr config`: the fully resolved `[algo]` table as commented TOML.

use crate::args::AlgoArgs;
use crate::{algo_args, usage_bail};
use anyhow::{Context, Result};
use rlvr_core::algo::doc_for_tagged;
use rlvr_core::registry::{self, Kind};
use rlvr_core::{AlgoConfig, Describe};
use rlvr_train::config::{apply_sets, read_document};

/// Flags of `rlvr config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// The algorithm.
    #[command(flatten)]
    pub algo: AlgoArgs,
}

/// Runs `rlvr config`.
pub fn exec(args: ConfigArgs) -> Result<()> {
    let (config, _) = resolve_algo(&args.algo)?;
    print!("{}", render_algo(&config)?);
    Ok(())
}

/// Builds the `[algo]` table from --config, --algo, --set and parameter flags, resolves presets,
/// and validates it (building every piece) before anything else happens.
pub fn resolve_algo(args: &AlgoArgs) -> Result<(AlgoConfig, toml::Table)> {
    let mut doc = match &args.config {
        Some(path) => read_document(path)?,
        None => toml::Table::new(),
    };
    if let Some(name) = &args.algo {
        registry::find(Kind::Preset, name)?;
        let algo = doc
            .entry("algo")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(algo) = algo.as_table_mut() else {
            usage_bail!("`algo` in the config must be a table");
        };
        algo.insert("preset".into(), toml::Value::String(name.clone()));
    }
    apply_sets(&mut doc, &args.sets)?;
    let algo = match doc.get("algo") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => usage_bail!("`algo` in the config must be a table"),
        None => usage_bail!(
            "no algorithm given: pass --algo NAME or a --config file with an [algo] table; presets: {}",
            registry::names(Kind::Preset).join(", ")
        ),
    };
    let mut expanded = AlgoConfig::expand(&algo)?;
    algo_args::apply(&mut expanded, &args.params)?;
    let config = AlgoConfig::from_table(&expanded)?;
    config.build().context("invalid algorithm configuration")?;
    doc.insert("algo".into(), toml::Value::Table(config.to_table()?));
    Ok((config, doc))
}

/// The `[algo]` table as commented TOML.
pub fn render_algo(config: &AlgoConfig) -> Result<String> {
    let table = config.to_table()?;
    let docs = |path: &[String], t: &toml::Table, field: &str| -> Option<&'static str> {
        if path.len() == 1 {
            return config.field_doc(field);
        }
        t.get("type")
            .and_then(|v| v.as_str())
            .and_then(|tag| doc_for_tagged(tag, field))
    };
    Ok(rlvr_core::toml_doc::render("algo", &table, &docs))
}
