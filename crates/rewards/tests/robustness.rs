//! The verifier never panics on arbitrary or pathological input (property test). Its time bound
//! is measured by `cargo bench -p rlvr-rewards --bench verifier_fuzz` (10^5 inputs).

use proptest::prelude::*;
use rlvr_core::Verifier;
use rlvr_rewards::math::MathVerifier;

fn latexish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(rlvr_tests::fuzz::LATEX_ATOMS.to_vec());
    prop::collection::vec(atoms, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn never_panics_on_latexish_input(resp in latexish(), gold in latexish()) {
        let _ = MathVerifier::default().verify(&resp, &gold);
    }

    #[test]
    fn never_panics_on_arbitrary_unicode(resp in ".{0,200}", gold in ".{0,50}") {
        let _ = MathVerifier::default().verify(&resp, &gold);
    }
}

#[test]
fn pathological_inputs_return() {
    let v = MathVerifier::default();
    let deep = format!("\\boxed{{{}1{}}}", "(".repeat(10_000), ")".repeat(10_000));
    let _ = v.verify(&deep, "1");
    let huge_exp = "\\boxed{10^{10^{10^{10^{10}}}}}";
    let _ = v.verify(huge_exp, "10^{10^{10^{10^{10}}}}");
    let fact = "\\boxed{100000000!}";
    let _ = v.verify(fact, "1");
    let mega = "1+".repeat(500_000) + "1";
    let _ = v.verify(&mega, &mega);
    let braces = "{".repeat(100_000);
    let _ = v.verify(&braces, &braces);
}
