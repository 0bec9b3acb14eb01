//! Whole-system checks of the registries: unique names, tags equal to names, and every default
//! configuration deserialising back and building (`rlvr_core::testing::check_registrations`).

use rlvr_core::registry::{self, ComponentKind};

#[test]
fn every_registration_is_consistent() {
    rlvr_cli::link_builtins();
    let problems = rlvr_core::testing::check_registrations();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(registry::names(ComponentKind::Preset).len() >= 15);
    for kind in ComponentKind::ALL {
        assert!(
            !registry::names(kind).is_empty(),
            "some {} registered",
            kind.label()
        );
    }
}
