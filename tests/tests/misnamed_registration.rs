//! `check_registrations` reports a registration whose typetag name differs from its registry name
//! (its own test binary: registrations are global to a binary, so this one must not be linked into
//! the consistency test).

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
