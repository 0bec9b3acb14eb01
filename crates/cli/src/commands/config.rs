//! `rlvr config`: the fully resolved run configuration as commented TOML, every section
//! (`[algo]`, `[model]`, `[task]` or `[data]` with `[reward]`, `[train]`) with each field's
//! meaning. It parses back to the same configuration (`rlvr train --config`).

use crate::args::{AlgoArgs, TargetArgs};
use crate::document::{build, RunFlags};
use anyhow::Result;
use documented::DocumentedFields;
use rlvr_core::algo::doc_for_tagged;
use rlvr_core::{AlgoConfig, Describe};
use rlvr_train::config::{DataConfig, RunConfig, TrainConfig};

/// Flags of `rlvr config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Model, task or dataset, device.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The algorithm.
    #[command(flatten)]
    pub algo: AlgoArgs,
}

/// Runs `rlvr config`.
pub fn exec(args: ConfigArgs) -> Result<()> {
    let flags = RunFlags {
        algo: args.algo,
        target: args.target,
        ..RunFlags::default()
    };
    let named = flags.algo.algo.is_some() || flags.algo.config.is_some();
    let cfg = RunConfig::from_document(build(&flags)?)?;
    // The run this prints could not start without its data files.
    for file in rlvr_train::fingerprint::data_files(&cfg) {
        if !std::path::Path::new(&file).is_file() {
            crate::usage_bail!("data file {file}: no such file");
        }
    }
    if !named {
        println!(
            "# No --algo or --config: the built-in default run ({}).",
            cfg.algo.preset.as_deref().unwrap_or("simko")
        );
    }
    print!("{}", render_run(&cfg)?);
    Ok(())
}

/// The whole run as commented TOML.
pub fn render_run(cfg: &RunConfig) -> Result<String> {
    let mut out = render_algo(&cfg.algo)?;
    let tagged_docs = |path: &[String], t: &toml::Table, field: &str| -> Option<&'static str> {
        let _ = path;
        t.get("type")
            .and_then(|v| v.as_str())
            .and_then(|tag| doc_for_tagged(tag, field))
    };
    let section = |out: &mut String,
                   name: &str,
                   value: toml::Value,
                   docs: &rlvr_core::toml_doc::FieldDocs<'_>| {
        if let toml::Value::Table(t) = value {
            out.push('\n');
            out.push_str(&rlvr_core::toml_doc::render(name, &t, docs));
        }
    };
    section(
        &mut out,
        "model",
        toml::Value::try_from(&cfg.model)?,
        &tagged_docs,
    );
    match &cfg.data {
        Some(data) => {
            let docs = |path: &[String], t: &toml::Table, field: &str| {
                let _ = (path, t);
                DataConfig::get_field_docs(field).ok()
            };
            section(&mut out, "data", toml::Value::try_from(data)?, &docs);
        }
        None => section(
            &mut out,
            "task",
            toml::Value::try_from(&cfg.task)?,
            &tagged_docs,
        ),
    }
    if let Some(reward) = &cfg.reward {
        let mut table = toml::Table::new();
        if let Some(d) = &reward.default {
            table.insert("default".into(), toml::Value::try_from(d)?);
        }
        let mut sources = toml::Table::new();
        for (name, v) in &reward.sources {
            sources.insert(name.clone(), toml::Value::try_from(v)?);
        }
        if !sources.is_empty() {
            table.insert("sources".into(), toml::Value::Table(sources));
        }
        section(&mut out, "reward", toml::Value::Table(table), &tagged_docs);
    }
    let docs = |path: &[String], t: &toml::Table, field: &str| {
        let _ = (path, t);
        TrainConfig::get_field_docs(field).ok()
    };
    section(&mut out, "train", toml::Value::try_from(&cfg.train)?, &docs);
    let rollout_docs = |_: &[String], _: &toml::Table, field: &str| {
        rlvr_train::engine::RolloutConfig::get_field_docs(field).ok()
    };
    section(
        &mut out,
        "rollout",
        toml::Value::try_from(&cfg.rollout)?,
        &rollout_docs,
    );
    Ok(out)
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
