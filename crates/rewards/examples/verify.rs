//! Shows each stage of the math verifier on one pair: the extracted answer, the normalised gold
//! and prediction, their parses and the outcome.
//!
//! `cargo run -p rlvr-rewards --example verify -- GOLD RESPONSE`

use rlvr_core::Verifier;
use rlvr_rewards::math::{answer::parse_answer, extract, normalize::normalize, MathVerifier};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [gold, response] = args.as_slice() else {
        eprintln!("usage: verify GOLD RESPONSE");
        std::process::exit(2);
    };
    let gold_answer = extract::last_boxed(gold).unwrap_or_else(|| gold.clone());
    let pred = extract::extract(response);
    println!("extracted: {pred:?}");
    let (g, p) = (
        normalize(&gold_answer),
        normalize(pred.as_deref().unwrap_or("")),
    );
    println!("normalised gold: {g:?}\nnormalised pred: {p:?}");
    println!(
        "parsed gold: {:?}\nparsed pred: {:?}",
        parse_answer(&g),
        parse_answer(&p)
    );
    println!(
        "{:?}",
        MathVerifier::default().verify(response, gold).outcome
    );
}
