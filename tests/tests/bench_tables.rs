//! Every benchmark table in the docs is what its JSON (`docs/bench/*.json`, written by
//! `scripts/bench.sh`) renders to, and every JSON has its table; a table edited by hand, or a
//! JSON re-measured without regenerating the docs (`cargo run -p rlvr-tests --bin
//! bench-tables`), fails here.

use rlvr_tests::bench::{block, files, regenerate, DOCUMENTS};
use serde_json::json;
use std::path::Path;

#[test]
fn the_docs_benchmark_tables_are_what_their_json_renders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let all = files(&root).unwrap();
    let mut seen = Vec::new();
    for doc in DOCUMENTS {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        let fresh = regenerate(&text, &all).unwrap_or_else(|e| panic!("{doc}: {e}"));
        assert!(
            text == fresh,
            "{doc}: a benchmark table disagrees with docs/bench/*.json; run `cargo run -p \
             rlvr-tests --bin bench-tables`"
        );
        for (name, _) in &all {
            if text.contains(&format!("<!-- bench:{name} -->")) {
                seen.push(name.clone());
            }
        }
        if doc == "README.md" {
            assert!(
                text.contains("<!-- bench:summary -->"),
                "README: no summary"
            );
        }
    }
    for (name, _) in &all {
        assert!(seen.contains(name), "docs/bench/{name}.json has no table");
    }
}

#[test]
fn a_table_shows_the_figures_of_its_json() {
    // The renderer itself, on figures chosen here: ratios, failures, units.
    let doc = json!({"benchmark": "update", "command": "scripts/bench.sh update",
    "commit": "abc", "date": "2026-12-05", "threads": 2,
    "machine": {"cpu": "X", "cores": 2, "memory_gib": 23.4},
    "rows": [
        {"impl": "rlvr", "response_tokens": 512, "batch": 2, "seconds": 20.0, "peak_rss_mib": 8192.0},
        {"impl": "pytorch-strong", "response_tokens": 512, "seconds": 25.0, "peak_rss_mib": 10240.0},
        {"impl": "pytorch", "response_tokens": 512, "failed": "out of memory"},
        {"impl": "rlvr", "response_tokens": 1024, "batch": 2, "seconds": 40.0, "peak_rss_mib": 9216.0},
        {"impl": "pytorch-strong", "response_tokens": 1024, "seconds": 60.0, "peak_rss_mib": 10240.0},
        {"impl": "pytorch-strong-compiled", "response_tokens": 1024, "seconds": 50.0,
         "peak_rss_mib": 11264.0},
        {"impl": "pytorch", "response_tokens": 1024, "seconds": 70.0, "peak_rss_mib": 12288.0}
    ]});
    let all = vec![("update".to_string(), doc)];
    let t = block("update", &all).unwrap();
    // No compiled baseline at 512 (not run): the eager one is the reference.
    assert!(
        t.contains(
            "| 2 × 512 | 20.0 | 25.0 | — | failed | **0.80** | 8.00 | 10.00 | — | failed | **0.80** |"
        ),
        "{t}"
    );
    // At 1024 the compiled one is faster and the eager one smaller: each ratio takes the better.
    assert!(
        t.contains(
            "| 2 × 1024 | 40.0 | 60.0 | 50.0 | 70.0 | **0.80** | 9.00 | 10.00 | 11.00 | 12.00 | **0.90** |"
        ),
        "{t}"
    );
    assert!(
        t.contains("`scripts/bench.sh update` at commit `abc`"),
        "{t}"
    );
    let s = block("summary", &all).unwrap();
    assert!(
        s.contains("time **0.80 / 0.80**, peak memory **0.80 / 0.90**"),
        "{s}"
    );
    let text = "a\n<!-- bench:update -->\nold\n<!-- /bench:update -->\nb";
    let new = regenerate(text, &all).unwrap();
    assert!(new.starts_with("a\n<!-- bench:update -->\n| response tokens"));
    assert!(new.ends_with("<!-- /bench:update -->\nb"));
    assert!(regenerate("<!-- bench:nope -->\n<!-- /bench:nope -->", &all).is_err());
    // A whole-step benchmark: the median of the steps after the first.
    let grpo = json!({"benchmark": "grpo", "rows": [
        {"impl": "rlvr", "step_seconds": [50.0, 30.0, 34.0]},
        {"impl": "trl", "step_seconds": [70.0, 60.0, 68.0]}]});
    let all = vec![("grpo".to_string(), grpo)];
    let t = block("grpo", &all).unwrap();
    assert!(
        t.contains("| rlvr | 50.0 / 30.0 / 34.0 | 32.0 | — |"),
        "{t}"
    );
    assert!(
        t.contains("| trl | 70.0 / 60.0 / 68.0 | 64.0 | **0.50** |"),
        "{t}"
    );
    // The update path: medians over runs, SimKO over GRPO per size.
    let path = json!({"benchmark": "update-path", "rows": [
        {"impl": "grpo", "size": "4x1024x32768", "run": 1, "ms": 100.0},
        {"impl": "simko", "size": "4x1024x32768", "run": 1, "ms": 130.0},
        {"impl": "simko", "size": "4x1024x32768", "run": 2, "ms": 110.0},
        {"impl": "grpo", "size": "4x1024x32768", "run": 2, "ms": 100.0},
        {"impl": "simko", "size": "4x1024x32768", "run": 3, "ms": 120.0},
        {"impl": "grpo", "size": "4x1024x32768", "run": 3, "ms": 90.0}]});
    let all = vec![("update-path".to_string(), path)];
    let t = block("update-path", &all).unwrap();
    assert!(
        t.contains("| 4 × 1024 × 32768 | 100.0 / 100.0 / 90.0 | 130.0 / 110.0 / 120.0 | 100.0 | 120.0 | **1.20** |"),
        "{t}"
    );
    let s = block("summary", &all).unwrap();
    assert!(s.contains("**1.20×** at 4 × 1024 × 32768"), "{s}");
    // GPU checks: one line per row, its numeric figures.
    let gpu = json!({"benchmark": "gpu", "settings": {"gpu": "NVIDIA H100"}, "rows": [
        {"impl": "rlvr", "check": "update-1.5b", "response_tokens": 1024, "tokens_per_s": 2500.5},
        {"check": "serve", "tokens": 9000}]});
    let all = vec![("gpu".to_string(), gpu)];
    let t = block("gpu", &all).unwrap();
    assert!(
        t.contains("| update-1.5b | response_tokens 1024, tokens_per_s 2500.5000 |"),
        "{t}"
    );
    assert!(t.contains("| serve | tokens 9000 |"), "{t}");
    let s = block("summary", &all).unwrap();
    assert!(s.contains("2 measurements on NVIDIA H100"), "{s}");
}
