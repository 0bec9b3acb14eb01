//! Checks for plugin crates' tests: [`check_registrations`] verifies that every registration
//! linked into the test binary is consistent — its config's `type` tag equals its registry name,
//! its default configuration deserialises back through typetag and builds.

use crate::registry::{self, ComponentKind, Factory};
use crate::{AdvantageConfig, AlgoConfig, GateConfig, LossConfig, VerifierConfig};

/// Checks every registration linked into this binary; returns one line per problem found
/// (empty when all agree). Call it from a plugin's test after naming the plugin crate so its
/// registrations are linked:
///
/// ```ignore
/// let problems = rlvr_core::testing::check_registrations();
/// assert!(problems.is_empty(), "{problems:#?}");
/// ```
pub fn check_registrations() -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in registry::all() {
        if !seen.insert((r.kind(), r.name)) {
            problems.push(format!(
                "{} `{}` is registered twice",
                r.kind().label(),
                r.name
            ));
        }
        if r.summary.is_empty() {
            problems.push(format!("{} `{}` has no summary", r.kind().label(), r.name));
        }
        let value = match r.factory.default_toml() {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!(
                    "{} `{}`: default config: {e}",
                    r.kind().label(),
                    r.name
                ));
                continue;
            }
        };
        if let Err(e) = check_one(r.name, &r.factory, value) {
            problems.push(format!("{} `{}`: {e}", r.kind().label(), r.name));
        }
    }
    problems
}

fn check_one(name: &str, factory: &Factory, value: toml::Value) -> Result<(), String> {
    let Some(table) = value.as_table().cloned() else {
        return Err("default config is not a table".into());
    };
    if let Factory::Preset(_) = factory {
        let cfg = AlgoConfig::from_table(&table).map_err(|e| e.to_string())?;
        cfg.build().map_err(|e| e.to_string())?;
        if cfg.preset.as_deref() != Some(name) {
            return Err(format!("preset field is {:?}", cfg.preset));
        }
        return Ok(());
    }
    let tag = table.get("type").and_then(|t| t.as_str());
    if tag != Some(name) {
        return Err(format!(
            "typetag name {tag:?} differs from the registry name (use the same string in \
             #[typetag::serde(name = ...)] and register!)"
        ));
    }
    match factory.kind() {
        ComponentKind::Advantage => built(back::<dyn AdvantageConfig>(value)?.build()),
        ComponentKind::Loss => built(back::<dyn LossConfig>(value)?.build()),
        ComponentKind::Gate => built(back::<dyn GateConfig>(value)?.build()),
        ComponentKind::Shaping => built(back::<dyn crate::ShapingConfig>(value)?.build()),
        ComponentKind::Filter => built(back::<dyn crate::FilterConfig>(value)?.build()),
        ComponentKind::Correction => built(back::<dyn crate::CorrectionConfig>(value)?.build()),
        // A verifier that calls out (a reward program, a URL) has no buildable default: it
        // needs the program or URL; the default must still round-trip.
        ComponentKind::Verifier => back::<dyn VerifierConfig>(value).map(drop),
        ComponentKind::Task => back::<dyn crate::TaskConfig>(value).map(drop),
        ComponentKind::Model => back::<dyn crate::ModelConfig>(value).map(drop),
        ComponentKind::Preset => Ok(()),
    }
}

/// Deserialises a default configuration back through its typetag registry.
fn back<C: ?Sized>(value: toml::Value) -> Result<Box<C>, String>
where
    Box<C>: serde::de::DeserializeOwned,
{
    value
        .try_into()
        .map_err(|e| format!("default config does not deserialise back: {e}"))
}

/// Whether a configuration built.
fn built<T>(result: crate::Result<T>) -> Result<(), String> {
    result.map(drop).map_err(|e| e.to_string())
}
