//! `bench-tables [--check]`: rewrites the generated benchmark blocks of docs/performance.md and
//! the README from `docs/bench/*.json` (`scripts/bench.sh` runs it after a benchmark); with
//! `--check`, only says which documents are stale (exit 1). `bench-tables --print FILE.json…`
//! prints the tables of benchmark files kept elsewhere (a `--quick` run's).

use rlvr_tests::bench::{block, files, regenerate, DOCUMENTS};
use std::path::Path;

/// Prints the table of each benchmark file named.
fn print(paths: &[String]) -> Result<(), String> {
    for p in paths {
        let path = Path::new(p);
        let text = std::fs::read_to_string(path).map_err(|e| format!("{p}: {e}"))?;
        let v = serde_json::from_str(&text).map_err(|e| format!("{p}: {e}"))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        println!("{}\n", block(&name, &[(name.clone(), v)])?);
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--print") {
        if let Err(e) = print(&args[1..]) {
            eprintln!("bench-tables: {e}");
            std::process::exit(1);
        }
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let check = std::env::args().any(|a| a == "--check");
    let all = match files(&root) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-tables: {e}");
            std::process::exit(1);
        }
    };
    let mut stale = false;
    for doc in DOCUMENTS {
        let path = root.join(doc);
        let result = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|old| regenerate(&old, &all).map(|new| (old, new)));
        match result {
            Ok((old, new)) if old != new => {
                stale = true;
                if check {
                    eprintln!("bench-tables: {doc} is stale");
                } else if let Err(e) = std::fs::write(&path, new) {
                    eprintln!("bench-tables: {doc}: {e}");
                    std::process::exit(1);
                } else {
                    eprintln!("bench-tables: {doc} regenerated");
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("bench-tables: {doc}: {e}");
                std::process::exit(1);
            }
        }
    }
    if check && stale {
        std::process::exit(1);
    }
}
