//! Whole-system checks of the registries: unique names, tags equal to names, and every default
//! configuration deserialising back and building (`rlvr_core::testing::check_registrations`).

use rlvr_core::registry::{self, Kind};

#[test]
fn every_registration_is_consistent() {
    rlvr_cli::link_builtins();
    let problems = rlvr_core::testing::check_registrations();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(registry::names(Kind::Preset).len() >= 15);
    for kind in Kind::ALL {
        assert!(
            !registry::names(kind).is_empty(),
            "some {} registered",
            kind.label()
        );
    }
}

#[test]
fn a_mismatched_typetag_name_is_reported() {
    // A loss registered under a name that differs from its typetag name.
    #[derive(serde::Serialize, serde::Deserialize, Default, documented::DocumentedFields)]
    struct Misnamed {
        /// Unused.
        x: u8,
    }
    rlvr_core::describe_fields!(Misnamed);
    #[typetag::serde(name = "misnamed-tag")]
    impl rlvr_core::LossConfig for Misnamed {
        fn build(&self) -> rlvr_core::Result<Box<dyn rlvr_core::PolicyLoss>> {
            Err(rlvr_core::CoreError::config("misnamed", "not buildable"))
        }
    }
    rlvr_core::register!(loss, "misnamed-registry", "test only", Misnamed);
    let problems = rlvr_core::testing::check_registrations();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("misnamed-registry") && p.contains("typetag name")),
        "{problems:#?}"
    );
}
