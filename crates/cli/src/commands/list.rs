//! `rlvr list [KIND]`: everything registered at link time, by kind.

use crate::usage_error;
use anyhow::Result;
use rlvr_core::registry::{self, ComponentKind};

/// Flags of `rlvr list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this kind (preset, advantage, loss, gate, shaping, filter, verifier, task, model).
    pub kind: Option<String>,
}

/// Runs `rlvr list`.
pub fn exec(args: ListArgs) -> Result<()> {
    let kinds: Vec<ComponentKind> = match args.kind.as_deref() {
        None => ComponentKind::ALL.to_vec(),
        Some(k) => {
            let found = ComponentKind::ALL.iter().find(|x| x.label() == k).copied();
            let valid: Vec<&str> = ComponentKind::ALL.iter().map(|x| x.label()).collect();
            vec![found.ok_or_else(|| {
                usage_error(format!(
                    "unknown kind `{k}`; valid kinds: {}",
                    valid.join(", ")
                ))
            })?]
        }
    };
    for kind in kinds {
        let regs: Vec<_> = registry::all()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect();
        println!("{}:", kind.plural());
        if regs.is_empty() {
            println!("  (none registered)");
        }
        let width = regs.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in regs {
            println!("  {:width$}  {}", r.name, r.summary);
        }
    }
    Ok(())
}
