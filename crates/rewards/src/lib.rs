//! # rlvr-rewards
//!
//! Verifiers and tasks (DESIGN.md §7): the math answer verifier ([`math`]).

pub mod data;
pub mod math;

/// A symbol for binaries to reference so this crate's registrations are linked.
#[doc(hidden)]
pub fn link_anchor() {}
