//! Link-time registries: every preset, estimator, loss, gate, verifier, task and model registers a
//! name, a one-line summary and a default config (whose `build` is the constructor) with
//! [`inventory`]. Registrations in a crate that the final binary never references are dropped by
//! the linker, so binaries name the crates they want (`use rlvr_algos as _;`).

use crate::advantage::AdvantageConfig;
use crate::algo::AlgoConfig;
use crate::error::{CoreError, Result};
use crate::gate::GateConfig;
use crate::loss::LossConfig;
use crate::policy::ModelConfig;
use crate::reward::VerifierConfig;
use crate::task::TaskConfig;

/// What a registration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComponentKind {
    /// A named, complete algorithm configuration.
    Preset,
    /// An advantage estimator.
    Advantage,
    /// A policy loss.
    Loss,
    /// A token gate.
    Gate,
    /// A reward shaping (scores before advantages).
    Shaping,
    /// A filter of prompt groups (dynamic sampling).
    Filter,
    /// A rollout–trainer mismatch correction (TIS, MIS).
    Correction,
    /// A verifier.
    Verifier,
    /// A task.
    Task,
    /// A model.
    Model,
}

impl ComponentKind {
    /// Every kind, in display order.
    pub const ALL: [ComponentKind; 10] = [
        ComponentKind::Preset,
        ComponentKind::Advantage,
        ComponentKind::Loss,
        ComponentKind::Gate,
        ComponentKind::Shaping,
        ComponentKind::Filter,
        ComponentKind::Correction,
        ComponentKind::Verifier,
        ComponentKind::Task,
        ComponentKind::Model,
    ];

    /// Plural heading used by `rlvr list`.
    pub fn plural(self) -> &'static str {
        match self {
            ComponentKind::Preset => "presets",
            ComponentKind::Advantage => "advantage estimators",
            ComponentKind::Loss => "losses",
            ComponentKind::Gate => "gates",
            ComponentKind::Shaping => "reward shapings",
            ComponentKind::Filter => "group filters",
            ComponentKind::Correction => "rollout corrections",
            ComponentKind::Verifier => "verifiers",
            ComponentKind::Task => "tasks",
            ComponentKind::Model => "models",
        }
    }

    /// Lower-case name used in messages and in `rlvr list`.
    pub fn label(self) -> &'static str {
        match self {
            ComponentKind::Preset => "preset",
            ComponentKind::Advantage => "advantage",
            ComponentKind::Loss => "loss",
            ComponentKind::Gate => "gate",
            ComponentKind::Shaping => "shaping",
            ComponentKind::Filter => "filter",
            ComponentKind::Correction => "correction",
            ComponentKind::Verifier => "verifier",
            ComponentKind::Task => "task",
            ComponentKind::Model => "model",
        }
    }
}

/// Builds the default configuration of a registration.
#[derive(Clone, Copy)]
pub enum Factory {
    /// A preset's complete algorithm configuration.
    Preset(fn() -> AlgoConfig),
    /// An estimator's default configuration.
    Advantage(fn() -> Box<dyn AdvantageConfig>),
    /// A loss's default configuration.
    Loss(fn() -> Box<dyn LossConfig>),
    /// A gate's default configuration.
    Gate(fn() -> Box<dyn GateConfig>),
    /// A reward shaping's default configuration.
    Shaping(fn() -> Box<dyn crate::ShapingConfig>),
    /// A group filter's default configuration.
    Filter(fn() -> Box<dyn crate::FilterConfig>),
    /// A rollout correction's default configuration.
    Correction(fn() -> Box<dyn crate::CorrectionConfig>),
    /// A verifier's default configuration.
    Verifier(fn() -> Box<dyn VerifierConfig>),
    /// A task's default configuration.
    Task(fn() -> Box<dyn TaskConfig>),
    /// A model's default configuration.
    Model(fn() -> Box<dyn ModelConfig>),
}

impl Factory {
    /// The kind this factory makes.
    pub fn kind(&self) -> ComponentKind {
        match self {
            Factory::Preset(_) => ComponentKind::Preset,
            Factory::Advantage(_) => ComponentKind::Advantage,
            Factory::Loss(_) => ComponentKind::Loss,
            Factory::Gate(_) => ComponentKind::Gate,
            Factory::Shaping(_) => ComponentKind::Shaping,
            Factory::Filter(_) => ComponentKind::Filter,
            Factory::Correction(_) => ComponentKind::Correction,
            Factory::Verifier(_) => ComponentKind::Verifier,
            Factory::Task(_) => ComponentKind::Task,
            Factory::Model(_) => ComponentKind::Model,
        }
    }

    /// The default configuration as a TOML value (tagged with `type` for non-presets).
    pub fn default_toml(&self) -> Result<toml::Value> {
        let value = match self {
            Factory::Preset(f) => toml::Value::try_from(f()),
            Factory::Advantage(f) => toml::Value::try_from(f()),
            Factory::Loss(f) => toml::Value::try_from(f()),
            Factory::Gate(f) => toml::Value::try_from(f()),
            Factory::Shaping(f) => toml::Value::try_from(f()),
            Factory::Filter(f) => toml::Value::try_from(f()),
            Factory::Correction(f) => toml::Value::try_from(f()),
            Factory::Verifier(f) => toml::Value::try_from(f()),
            Factory::Task(f) => toml::Value::try_from(f()),
            Factory::Model(f) => toml::Value::try_from(f()),
        };
        value.map_err(|e| CoreError::config("<default>", e))
    }

    /// The doc comment of a field of the default configuration.
    pub fn field_doc(&self, field: &str) -> Option<&'static str> {
        use crate::describe::Describe;
        match self {
            Factory::Preset(f) => f().field_doc(field),
            Factory::Advantage(f) => f().field_doc(field),
            Factory::Loss(f) => f().field_doc(field),
            Factory::Gate(f) => f().field_doc(field),
            Factory::Shaping(f) => f().field_doc(field),
            Factory::Filter(f) => f().field_doc(field),
            Factory::Correction(f) => f().field_doc(field),
            Factory::Verifier(f) => f().field_doc(field),
            Factory::Task(f) => f().field_doc(field),
            Factory::Model(f) => f().field_doc(field),
        }
    }
}

/// One registered thing.
pub struct Registration {
    /// Unique name within its kind; equals the `type` tag of its config.
    pub name: &'static str,
    /// One line saying what it is and where it comes from.
    pub summary: &'static str,
    /// Default configuration; its `build` is the constructor.
    pub factory: Factory,
}

impl Registration {
    /// The kind of this registration.
    pub fn kind(&self) -> ComponentKind {
        self.factory.kind()
    }
}

inventory::collect!(Registration);

/// All registrations linked into this binary, sorted by kind then name.
pub fn all() -> Vec<&'static Registration> {
    let mut v: Vec<&'static Registration> = inventory::iter::<Registration>.into_iter().collect();
    v.sort_by(|a, b| (a.kind(), a.name).cmp(&(b.kind(), b.name)));
    v
}

/// Sorted names of one kind.
pub fn names(kind: ComponentKind) -> Vec<&'static str> {
    all()
        .into_iter()
        .filter(|r| r.kind() == kind)
        .map(|r| r.name)
        .collect()
}

/// The registration of `name` in `kind`, or an error listing the valid names.
pub fn find(kind: ComponentKind, name: &str) -> Result<&'static Registration> {
    all()
        .into_iter()
        .find(|r| r.kind() == kind && r.name == name)
        .ok_or_else(|| CoreError::UnknownName {
            kind: kind.label(),
            name: name.to_string(),
            valid: names(kind).join(", "),
        })
}

/// Registers a configuration type under a name:
/// `rlvr_core::register!(loss, "simko", "SimKO (arXiv 2510.14807)", SimkoConfig);`.
/// Kinds: `preset` (with a `fn() -> AlgoConfig`), `advantage`, `loss`, `gate`, `shaping`, `filter`,
/// `verifier`, `task`,
/// `model` (with a type implementing `Default` and the kind's config trait).
#[macro_export]
macro_rules! register {
    (preset, $name:expr, $summary:expr, $f:expr) => {
        $crate::inventory::submit! {
            $crate::registry::Registration { name: $name, summary: $summary, factory: $crate::registry::Factory::Preset($f) }
        }
    };
    (advantage, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Advantage, $name, $summary, $ty);
    };
    (loss, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Loss, $name, $summary, $ty);
    };
    (gate, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Gate, $name, $summary, $ty);
    };
    (shaping, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Shaping, $name, $summary, $ty);
    };
    (filter, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Filter, $name, $summary, $ty);
    };
    (correction, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Correction, $name, $summary, $ty);
    };
    (verifier, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Verifier, $name, $summary, $ty);
    };
    (task, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Task, $name, $summary, $ty);
    };
    (model, $name:expr, $summary:expr, $ty:ty) => {
        $crate::register!(@boxed Model, $name, $summary, $ty);
    };
    (@boxed $variant:ident, $name:expr, $summary:expr, $ty:ty) => {
        $crate::inventory::submit! {
            $crate::registry::Registration {
                name: $name,
                summary: $summary,
                factory: $crate::registry::Factory::$variant(|| Box::new(<$ty as ::core::default::Default>::default())),
            }
        }
    };
}
