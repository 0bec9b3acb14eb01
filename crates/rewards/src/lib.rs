//! # rlvr-rewards
//!
//! Verifiers and tasks (docs/design.md §7): the math answer verifier ([`math`]), registered verifiers
//! and batch scoring ([`verifiers`]), reward programs and services ([`programs`]), dataset readers
//! ([`data`]) and built-in tasks ([`tasks`]).

pub mod data;
pub mod math;
pub mod programs;
pub mod tasks;
pub mod verifiers;

/// A symbol for binaries to reference so this crate's registrations are linked.
#[doc(hidden)]
pub fn link_anchor() {}
