//! Whole-system checks of the registries: unique names, tags equal to names, and every default
//! configuration deserialising back and building.

use rlvr_core::registry::{self, Factory, Kind};
use rlvr_core::AlgoConfig;
use std::collections::HashSet;

fn linked() {
    rlvr_cli::link_builtins();
}

#[test]
fn names_are_unique_within_each_kind() {
    linked();
    let mut seen = HashSet::new();
    for r in registry::all() {
        assert!(
            seen.insert((r.kind(), r.name)),
            "duplicate {:?} `{}`",
            r.kind(),
            r.name
        );
        assert!(!r.summary.is_empty(), "{} has a summary", r.name);
    }
    assert!(registry::names(Kind::Preset).len() >= 15);
}

#[test]
fn every_registered_name_deserialises_and_builds() {
    linked();
    for r in registry::all() {
        let value = r
            .factory
            .default_toml()
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        let table = value.as_table().expect("a table").clone();
        match r.factory {
            Factory::Preset(_) => {
                let cfg = AlgoConfig::from_table(&table)
                    .unwrap_or_else(|e| panic!("preset {}: {e}", r.name));
                cfg.build()
                    .unwrap_or_else(|e| panic!("preset {}: {e}", r.name));
                assert_eq!(cfg.preset.as_deref(), Some(r.name));
            }
            _ => {
                assert_eq!(
                    table.get("type").and_then(|t| t.as_str()),
                    Some(r.name),
                    "typetag name equals registry name"
                );
                let mut wrapper = toml::Table::new();
                wrapper.insert("preset".into(), "grpo".into());
                let key = match r.kind() {
                    Kind::Advantage => "advantage",
                    Kind::Loss => "loss",
                    _ => continue,
                };
                wrapper.insert(key.into(), toml::Value::Table(table));
                let cfg = AlgoConfig::resolve(&wrapper)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", key, r.name));
                cfg.build()
                    .unwrap_or_else(|e| panic!("{} {}: {e}", key, r.name));
            }
        }
    }
}
