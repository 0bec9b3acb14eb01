//! Algorithm configuration: an advantage estimator, a policy loss and an aggregation mode,
//! resolved from a preset plus overrides and validated once into an [`Algorithm`].
//!
//! ```toml
//! [algo]
//! preset = "simko"          # start from a registered preset ...
//! [algo.loss]
//! topk = 5                  # ... and override any field
//! ```
//! Tables carrying a `type` tag are deserialised through the registries ([`typetag`]), so a
//! plugin's types are configured exactly like built-in ones.

use crate::advantage::{AdvantageConfig, AdvantageEstimator};
use crate::error::{CoreError, Result};
use crate::loss::{Aggregation, LossConfig, PolicyLoss};
use crate::registry::{self, ComponentKind};
use documented::DocumentedFields;
use serde::{Deserialize, Serialize};

/// A complete algorithm: what `[algo]` in a config file holds.
#[derive(Serialize, Deserialize, DocumentedFields)]
pub struct AlgoConfig {
    /// Registered preset these settings started from (informational once resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// How per-token losses are reduced: token-mean | seq-mean-token-mean | seq-mean-token-sum | constant.
    #[serde(default)]
    pub aggregation: Aggregation,
    /// Divisor per response for aggregation = "constant" (Dr. GRPO uses the maximum response length).
    #[serde(default = "default_normalizer")]
    pub loss_normalizer: f64,
    /// Advantage estimator: turns verifier scores of each prompt's responses into advantages.
    pub advantage: Box<dyn AdvantageConfig>,
    /// Policy loss: per-token objective built from log-probs, advantages and token statistics.
    pub loss: Box<dyn LossConfig>,
    /// Optional reward shaping applied to the verifier scores before advantages (e.g. DAPO's
    /// overlong penalty, `type = "overlong"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shaping: Option<Box<dyn crate::ShapingConfig>>,
    /// Optional filter of prompt groups (e.g. DAPO's dynamic sampling,
    /// `type = "dynamic-sampling"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Box<dyn crate::FilterConfig>>,
    /// Optional rollout–trainer mismatch correction (truncated or masked importance sampling,
    /// `type = "tis"` | `"mis"`; docs/rollouts.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<Box<dyn crate::CorrectionConfig>>,
}

crate::describe_fields!(AlgoConfig);

fn default_normalizer() -> f64 {
    1024.0
}

/// A validated algorithm, ready for training.
pub struct Algorithm {
    /// The advantage estimator.
    pub advantage: Box<dyn AdvantageEstimator>,
    /// The policy loss.
    pub loss: Box<dyn PolicyLoss>,
    /// Reward shaping, if any.
    pub shaping: Option<Box<dyn crate::RewardShaping>>,
    /// Group filter, if any.
    pub filter: Option<Box<dyn crate::GroupFilter>>,
    /// Rollout correction, if any.
    pub correction: Option<Box<dyn crate::RolloutCorrection>>,
    /// The aggregation mode.
    pub aggregation: Aggregation,
    /// Normaliser for [`Aggregation::Constant`].
    pub loss_normalizer: f64,
}

impl AlgoConfig {
    /// Validates every hyperparameter and constructs the pieces.
    pub fn build(&self) -> Result<Algorithm> {
        if !(self.loss_normalizer.is_finite() && self.loss_normalizer > 0.0) {
            return Err(CoreError::invalid(
                "algo.loss_normalizer",
                self.loss_normalizer,
                "must be a finite number > 0",
            ));
        }
        Ok(Algorithm {
            advantage: self.advantage.build()?,
            loss: self.loss.build()?,
            shaping: self.shaping.as_ref().map(|s| s.build()).transpose()?,
            filter: self.filter.as_ref().map(|f| f.build()).transpose()?,
            correction: self.correction.as_ref().map(|c| c.build()).transpose()?,
            aggregation: self.aggregation,
            loss_normalizer: self.loss_normalizer,
        })
    }

    /// This configuration as a TOML table.
    pub fn to_table(&self) -> Result<toml::Table> {
        match toml::Value::try_from(self).map_err(|e| CoreError::config("algo", e))? {
            toml::Value::Table(t) => Ok(t),
            other => Err(CoreError::config(
                "algo",
                format!("expected a table, got {other}"),
            )),
        }
    }

    /// Parses a resolved `[algo]` table (no preset expansion). Keys that no field takes are
    /// errors naming the valid fields.
    pub fn from_table(table: &toml::Table) -> Result<AlgoConfig> {
        let value = toml::Value::Table(table.clone());
        let config: AlgoConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            CoreError::config(format!("algo.{path}"), e.into_inner())
        })?;
        check_known_fields("algo", table, &config.to_table()?)?;
        Ok(config)
    }

    /// Resolves an `[algo]` table: expands `preset = "..."` (its defaults, with the table's own
    /// entries merged over them), then parses. Unknown presets, types and fields are errors that
    /// list the valid names.
    pub fn resolve(table: &toml::Table) -> Result<AlgoConfig> {
        Self::from_table(&Self::expand(table)?)
    }

    /// Expands a preset reference into the full table without parsing it.
    pub fn expand(table: &toml::Table) -> Result<toml::Table> {
        let Some(preset) = table.get("preset") else {
            return Ok(table.clone());
        };
        let name = preset.as_str().ok_or_else(|| {
            CoreError::config(
                "algo.preset",
                format!("expected a preset name, got {preset}"),
            )
        })?;
        let reg = registry::find(ComponentKind::Preset, name)?;
        let mut base = match reg.factory.default_toml()? {
            toml::Value::Table(t) => t,
            _ => {
                return Err(CoreError::config(
                    "algo.preset",
                    "preset default is not a table",
                ))
            }
        };
        merge(&mut base, table);
        Ok(base)
    }
}

/// Merges `over` into `base`: tables merge key by key, anything else replaces. A table whose
/// `type` tag differs from the one it overrides replaces it whole (fields of another type would
/// not apply).
pub fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                let retyped = o.get("type").is_some() && o.get("type") != b.get("type");
                if retyped {
                    base.insert(key.clone(), value.clone());
                } else {
                    merge(b, o);
                }
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Fails on the first key of `given` that the parsed configuration (`parsed`, serialised back)
/// does not have: such a key was ignored by deserialisation, i.e. it names no field. This works
/// through `#[serde(flatten)]` and tagged trait objects, where `deny_unknown_fields` cannot.
pub fn check_known_fields(path: &str, given: &toml::Table, parsed: &toml::Table) -> Result<()> {
    for (key, value) in given {
        let here = format!("{path}.{key}");
        match (value, parsed.get(key)) {
            (_, None) => {
                let valid: Vec<&str> = parsed
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k != "type")
                    .collect();
                let owner = parsed
                    .get("type")
                    .and_then(|t| t.as_str())
                    .map(|t| format!(" of `{t}`"))
                    .unwrap_or_default();
                return Err(CoreError::config(
                    here,
                    format!(
                        "unknown field `{key}`{owner}; valid fields: {}",
                        valid.join(", ")
                    ),
                ));
            }
            (toml::Value::Table(g), Some(toml::Value::Table(p))) => {
                check_known_fields(&here, g, p)?
            }
            _ => {}
        }
    }
    Ok(())
}

/// Sets `path` (dotted, e.g. `algo.loss.topk`) in `table` to `raw`, parsed as a TOML value
/// (`5`, `0.1`, `true`, `"text"`, `[1, 2]`); text that is not valid TOML is taken as a string.
pub fn set_path(table: &mut toml::Table, path: &str, raw: &str) -> Result<()> {
    set_value(table, path, parse_value(raw))
}

/// Sets `path` (dotted) in `table` to `value`, creating intermediate tables; an intermediate
/// that holds a non-table value is an error naming it.
pub fn set_value(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(CoreError::config(path, "empty key in dotted path"));
    }
    let mut cur = table;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert(part.to_string(), value);
            return Ok(());
        }
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            other => {
                return Err(CoreError::config(
                    parts[..=i].join("."),
                    format!("is the value {other}, not a table"),
                ))
            }
        };
    }
    Ok(())
}

/// Parses one TOML value from text, falling back to a string.
pub fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Every leaf of a table as (dotted path, value), skipping `type` tags.
pub fn leaves(table: &toml::Table) -> Vec<(String, toml::Value)> {
    fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(sub) => walk(&path, sub, out),
                _ if k == "type" => {}
                _ => out.push((path, v.clone())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

/// The doc comment of `field` in a table tagged `type = tag`, looked up in the registries.
pub fn doc_for_tagged(tag: &str, field: &str) -> Option<&'static str> {
    registry::all()
        .into_iter()
        .filter(|r| r.kind() != ComponentKind::Preset && r.name == tag)
        .find_map(|r| r.factory.field_doc(field))
}
