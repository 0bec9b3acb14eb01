//! The house rules of the code's shape (docs/design.md §1), checked on the sources: no function
//! in `rlvr-train` longer than 120 lines, no file of the CLI longer than 250 lines, and the
//! crates' dependencies pointing one way (cli → train → algos/models/rewards/eval/dist → core →
//! kernels).

use std::path::{Path, PathBuf};
use syn::visit::Visit;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    rlvr_tests::files_with_extension(dir, "rs")
}

/// Every function and method with the lines of its `fn` keyword and its closing brace (doc
/// comments and attributes not counted).
#[derive(Default)]
struct Functions(Vec<(String, usize, usize)>);

impl Functions {
    fn push(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        self.0.push((sig.ident.to_string(), start, end));
    }
}

impl<'a> Visit<'a> for Functions {
    fn visit_item_fn(&mut self, f: &'a syn::ItemFn) {
        self.push(&f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'a syn::ImplItemFn) {
        self.push(&f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }
}

#[test]
fn no_function_of_the_trainer_library_is_longer_than_120_lines() {
    let mut long = Vec::new();
    let files = rust_files(&repo().join("crates/train/src"));
    assert!(files.len() > 10, "found the trainer's sources");
    let mut seen = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut fns = Functions::default();
        fns.visit_file(&file);
        seen += fns.0.len();
        for (name, start, end) in fns.0 {
            let lines = end + 1 - start;
            if lines > 120 {
                long.push(format!(
                    "{}:{start} `{name}`: {lines} lines",
                    path.display()
                ));
            }
        }
    }
    assert!(seen > 100, "found the trainer's functions ({seen})");
    assert!(
        long.is_empty(),
        "functions over 120 lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn no_file_of_the_command_line_is_longer_than_250_lines() {
    let long: Vec<String> = rust_files(&repo().join("crates/cli/src"))
        .into_iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(&path).unwrap().lines().count();
            (lines > 250).then(|| format!("{}: {lines} lines", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over 250 lines:\n{}",
        long.join("\n")
    );
}

/// The floor of each crate: a crate may depend only on crates of lower floors.
const FLOORS: [(&str, u8); 10] = [
    ("rlvr-kernels", 0),
    ("rlvr-dist", 0),
    ("rlvr-core", 1),
    ("rlvr-algos", 2),
    ("rlvr-models", 2),
    ("rlvr-rewards", 2),
    ("rlvr-eval", 2),
    ("rlvr-train", 3),
    ("rlvr-serve", 3),
    ("rlvr-cli", 4),
];

#[test]
fn crate_dependencies_point_one_way() {
    let floor = |name: &str| FLOORS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f);
    let mut wrong = Vec::new();
    for (name, own) in FLOORS {
        let dir = name.trim_start_matches("rlvr-");
        let manifest = repo().join("crates").join(dir).join("Cargo.toml");
        let doc: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
        let deps = doc
            .get("dependencies")
            .and_then(|d| d.as_table())
            .cloned()
            .unwrap_or_default();
        for dep in deps.keys() {
            if let Some(f) = floor(dep) {
                if f >= own {
                    wrong.push(format!("{name} (floor {own}) depends on {dep} (floor {f})"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
