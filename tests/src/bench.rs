//! The benchmark tables of the docs, generated from the JSON files `scripts/bench.sh` writes
//! (`docs/bench/<name>.json`), so no table can disagree with the figures it claims.
//!
//! A file holds one benchmark run: `benchmark` (which renderer), `command`, `commit`, `dirty`,
//! `date`, `machine`, `threads`, `mkl_vendor_check`, `settings` and the implementations' raw result lines in `rows`
//! (each with `impl`). A document carries a generated block between
//! `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`: NAME is a file's name (the full table, in
//! docs/performance.md) or `summary` (one row per file, in the README). `bench-tables` rewrites
//! the blocks; the `bench_tables` test fails when a block differs from what its JSON renders.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// The documents that carry generated blocks, relative to the repository root.
pub const DOCUMENTS: [&str; 2] = ["docs/performance.md", "README.md"];

/// Every benchmark file under `root/docs/bench`, by name (sorted).
pub fn files(root: &Path) -> Result<Vec<(String, Value)>, String> {
    let dir = root.join("docs/bench");
    let mut out = Vec::new();
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push((name, v));
    }
    Ok(out)
}

/// The block NAME renders to: a file's table, or the summary of all files.
pub fn block(name: &str, all: &[(String, Value)]) -> Result<String, String> {
    if name == "summary" {
        return Ok(summary(all)?.trim_end().to_string());
    }
    let (_, doc) = all
        .iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| format!("no docs/bench/{name}.json"))?;
    Ok(format!("{}\n{}", table(doc)?.trim_end(), provenance(doc)))
}

/// `text` with every generated block rendered anew; errors name unknown blocks.
pub fn regenerate(text: &str, all: &[(String, Value)]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!-- bench:") {
        let open_end = rest[start..]
            .find("-->")
            .map(|i| start + i + 3)
            .ok_or("an unclosed `<!-- bench:` marker")?;
        let name = rest[start + 11..open_end - 3].trim().to_string();
        let close = format!("<!-- /bench:{name} -->");
        let close_at = rest[open_end..]
            .find(&close)
            .map(|i| open_end + i)
            .ok_or_else(|| format!("`<!-- bench:{name} -->` has no `{close}`"))?;
        out.push_str(&rest[..open_end]);
        out.push('\n');
        out.push_str(&block(&name, all)?);
        out.push('\n');
        out.push_str(&close);
        rest = &rest[close_at + close.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(x) => x.to_string(),
        None => "?".into(),
    }
}

fn rows(doc: &Value) -> &[Value] {
    doc.get("rows")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The row of implementation `imp` (and `response_tokens` = `len` when given).
fn row<'a>(doc: &'a Value, imp: &str, len: Option<f64>) -> Option<&'a Value> {
    rows(doc).iter().find(|r| {
        r.get("impl").and_then(Value::as_str) == Some(imp)
            && len.is_none_or(|l| num(r, "response_tokens") == Some(l))
    })
}

/// `key` of a row that ran (no `failed`), else None.
fn ran(r: Option<&Value>, key: &str) -> Option<f64> {
    r.filter(|r| r.get("failed").is_none())
        .and_then(|r| num(r, key))
}

fn cell(x: Option<f64>, scale: f64, digits: usize) -> String {
    x.map_or("failed".into(), |x| format!("{:.*}", digits, x / scale))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

/// Where the figures come from, one line under each table.
fn provenance(doc: &Value) -> String {
    let m = doc.get("machine").cloned().unwrap_or(Value::Null);
    let dirty = if doc.get("dirty").and_then(Value::as_bool) == Some(true) {
        " (with uncommitted changes)"
    } else {
        ""
    };
    // Files recorded before rlvr answered MKL's vendor check have no field: MKL's own answer.
    let mkl = match doc.get("mkl_vendor_check").and_then(Value::as_str) {
        Some("answered") => "; MKL's vendor check answered in rlvr and the baselines",
        _ => "",
    };
    format!(
        "\n`{}` at commit `{}`{dirty}, {}; {} ({} cores, {} GiB), {} threads{mkl}.",
        text(doc, "command"),
        text(doc, "commit"),
        text(doc, "date"),
        text(&m, "cpu"),
        text(&m, "cores"),
        text(&m, "memory_gib"),
        text(doc, "threads"),
    )
}

fn table(doc: &Value) -> Result<String, String> {
    match doc.get("benchmark").and_then(Value::as_str) {
        Some("update") => Ok(update_table(doc)),
        Some("rollout") => Ok(rollout_table(doc)),
        Some("grpo") => Ok(grpo_table(doc)),
        Some("update-path") => Ok(update_path_table(doc)),
        Some("gpu") => Ok(gpu_table(doc)),
        other => Err(format!("unknown benchmark {other:?}")),
    }
}

/// Response lengths of an update run, ascending.
fn lengths(doc: &Value) -> Vec<f64> {
    let mut l: Vec<f64> = rows(doc)
        .iter()
        .filter_map(|r| num(r, "response_tokens"))
        .collect();
    l.sort_by(f64::total_cmp);
    l.dedup();
    l
}

const GIB: f64 = 1024.0;

/// The strong PyTorch baselines of an update run: eager, and with `torch.compile`d decoder layers
/// (absent from records made before it existed).
const STRONG: [&str; 2] = ["pytorch-strong", "pytorch-strong-compiled"];

/// The smallest `key` among the strong baselines that ran at length `l`: the ratios' reference
/// (the faster, the smaller peak), so a bar holds against whichever is better.
fn best_strong(doc: &Value, key: &str, l: f64) -> Option<f64> {
    STRONG
        .iter()
        .filter_map(|imp| ran(row(doc, imp, Some(l)), key))
        .min_by(f64::total_cmp)
}

/// A cell of an implementation at a length: its figure, "failed", or "—" when it did not run.
fn cell_of(doc: &Value, imp: &str, l: f64, key: &str, scale: f64, digits: usize) -> String {
    match row(doc, imp, Some(l)) {
        None => "—".into(),
        r => cell(ran(r, key), scale, digits),
    }
}

fn update_table(doc: &Value) -> String {
    let mut t = String::from(
        "| response tokens | rlvr s | PyTorch strong s | strong compiled s | PyTorch plain s \
         | time rlvr / best strong | rlvr peak GiB | strong peak GiB | strong compiled peak GiB \
         | plain peak GiB | memory rlvr / best strong |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let batch = rows(doc)
        .iter()
        .find_map(|r| num(r, "batch"))
        .unwrap_or(2.0);
    for l in lengths(doc) {
        let secs = |imp| cell_of(doc, imp, l, "seconds", 1.0, 1);
        let mem = |imp| cell_of(doc, imp, l, "peak_rss_mib", GIB, 2);
        let rlvr = |key| ran(row(doc, "rlvr", Some(l)), key);
        t.push_str(&format!(
            "| {batch} × {l} | {} | {} | {} | {} | **{}** | {} | {} | {} | {} | **{}** |\n",
            secs("rlvr"),
            secs(STRONG[0]),
            secs(STRONG[1]),
            secs("pytorch"),
            ratio(rlvr("seconds"), best_strong(doc, "seconds", l)),
            mem("rlvr"),
            mem(STRONG[0]),
            mem(STRONG[1]),
            mem("pytorch"),
            ratio(rlvr("peak_rss_mib"), best_strong(doc, "peak_rss_mib", l)),
        ));
    }
    t
}

/// Implementations of a rollout run, in the order they ran.
fn impls(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows(doc) {
        let i = text(r, "impl");
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

fn rollout_table(doc: &Value) -> String {
    let mut t = String::from(
        "| implementation | tokens/s | generated tokens | seconds | rlvr ÷ it |\n|---|---|---|---|---|\n",
    );
    let rlvr = ran(row(doc, "rlvr", None), "tokens_per_s");
    for i in impls(doc) {
        let r = row(doc, &i, None);
        let tps = ran(r, "tokens_per_s");
        t.push_str(&format!(
            "| {i} | {} | {} | {} | {} |\n",
            cell(tps, 1.0, 1),
            cell(ran(r, "generated_tokens"), 1.0, 0),
            cell(ran(r, "seconds"), 1.0, 1),
            if i == "rlvr" {
                "—".into()
            } else {
                format!("**{}**", ratio(rlvr, tps))
            },
        ));
    }
    t
}

/// The median of a row's step times after the first (the first step includes warm-up), or of
/// all of them when there is only one.
fn median_step(r: Option<&Value>) -> Option<f64> {
    let steps: Vec<f64> = r
        .filter(|r| r.get("failed").is_none())?
        .get("step_seconds")?
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let later: Vec<f64> = steps.iter().skip(1).copied().collect();
    median(if later.is_empty() { steps } else { later })
}

fn grpo_table(doc: &Value) -> String {
    let mut t = String::from(
        "| implementation | seconds per step | median after the first | rlvr ÷ it | peak RSS (MiB) |\n|---|---|---|---|---|\n",
    );
    let rlvr = median_step(row(doc, "rlvr", None));
    for i in impls(doc) {
        let r = row(doc, &i, None);
        let each: Vec<String> = r
            .and_then(|r| r.get("step_seconds"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_f64)
                    .map(|x| format!("{x:.1}"))
                    .collect()
            })
            .unwrap_or_default();
        let each = if each.is_empty() {
            "failed".to_string()
        } else {
            each.join(" / ")
        };
        t.push_str(&format!(
            "| {i} | {each} | {} | {} | {} |\n",
            cell(median_step(r), 1.0, 1),
            if i == "rlvr" {
                "—".into()
            } else {
                format!("**{}**", ratio(rlvr, median_step(r)))
            },
            r.and_then(|r| num(r, "peak_rss_mib"))
                .map_or("—".into(), |x| format!("{x:.0}")),
        ));
    }
    t
}

fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// Sizes of an update-path run (`BxTxV`), in the order they ran.
fn sizes(doc: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows(doc) {
        let s = text(r, "size");
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// One implementation's criterion medians (ms) at one update-path size, run by run.
fn path_runs(doc: &Value, imp: &str, size: &str) -> Vec<f64> {
    rows(doc)
        .iter()
        .filter(|r| text(r, "impl") == imp && text(r, "size") == size)
        .filter_map(|r| num(r, "ms"))
        .collect()
}

/// SimKO's median over GRPO's at one update-path size.
fn path_ratio(doc: &Value, size: &str) -> String {
    ratio(
        median(path_runs(doc, "simko", size)),
        median(path_runs(doc, "grpo", size)),
    )
}

fn update_path_table(doc: &Value) -> String {
    let mut t = String::from(
        "| size (responses × tokens × vocabulary) | GRPO ms per run | SimKO ms per run \
         | GRPO median | SimKO median | SimKO / GRPO |\n|---|---|---|---|---|---|\n",
    );
    let list = |xs: &[f64]| {
        xs.iter()
            .map(|x| format!("{x:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    for size in sizes(doc) {
        let (g, s) = (
            path_runs(doc, "grpo", &size),
            path_runs(doc, "simko", &size),
        );
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | **{}** |\n",
            size.replace('x', " × "),
            list(&g),
            list(&s),
            cell(median(g.clone()), 1.0, 1),
            cell(median(s.clone()), 1.0, 1),
            path_ratio(doc, &size),
        ));
    }
    t
}

/// The GPU checks' rows (`scripts/gpu-check.sh`): one line each, its measurement and its
/// numeric figures as written.
fn gpu_table(doc: &Value) -> String {
    let mut t = String::from("| measurement | figures |\n|---|---|\n");
    for r in rows(doc) {
        let figures: Vec<String> = r
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| v.is_number() && k.as_str() != "threads")
            .map(|(k, v)| match v.as_f64() {
                Some(x) if x.fract() != 0.0 => format!("{k} {x:.4}"),
                _ => format!("{k} {v}"),
            })
            .collect();
        let what = match r.get("check") {
            Some(_) => text(r, "check"),
            None => text(r, "impl"),
        };
        t.push_str(&format!("| {what} | {} |\n", figures.join(", ")));
    }
    t
}

/// One README row per benchmark file: what, command, headline figures.
fn summary(all: &[(String, Value)]) -> Result<String, String> {
    let mut t = String::from("| benchmark | command | result | commit |\n|---|---|---|---|\n");
    for (name, doc) in all {
        let settings = doc
            .get("settings")
            .and_then(|s| s.get("what"))
            .and_then(Value::as_str)
            .unwrap_or(name);
        let result = match doc.get("benchmark").and_then(Value::as_str) {
            Some("update") => {
                let ls = lengths(doc);
                let per = |f: &dyn Fn(f64) -> String| {
                    ls.iter().map(|&l| f(l)).collect::<Vec<_>>().join(" / ")
                };
                let r = |imp: &str, key: &str, l: f64| ran(row(doc, imp, Some(l)), key);
                format!(
                    "rlvr / the best strong PyTorch update (eager or compiled) at {} response \
                     tokens: time **{}**, peak memory **{}** ([table](docs/performance.md))",
                    per(&|l| format!("{l}")),
                    per(&|l| ratio(r("rlvr", "seconds", l), best_strong(doc, "seconds", l))),
                    per(&|l| ratio(
                        r("rlvr", "peak_rss_mib", l),
                        best_strong(doc, "peak_rss_mib", l)
                    )),
                )
            }
            Some("rollout") => {
                let rlvr = ran(row(doc, "rlvr", None), "tokens_per_s");
                let others: Vec<String> = impls(doc)
                    .into_iter()
                    .filter(|i| i != "rlvr")
                    .map(|i| {
                        let tps = ran(row(doc, &i, None), "tokens_per_s");
                        format!("**{}×** {i}", ratio(rlvr, tps))
                    })
                    .collect();
                format!(
                    "rlvr {} tokens/s: {} ([table](docs/performance.md))",
                    cell(rlvr, 1.0, 0),
                    others.join(", ")
                )
            }
            Some("grpo") => {
                let rlvr = median_step(row(doc, "rlvr", None));
                let trl = median_step(row(doc, "trl", None));
                let fastest = match row(doc, "trl-no-checkpointing", None) {
                    Some(r) => format!(
                        "; without checkpointing {} s: **{}×**",
                        cell(median_step(Some(r)), 1.0, 1),
                        ratio(rlvr, median_step(Some(r)))
                    ),
                    None => String::new(),
                };
                format!(
                    "rlvr {} s, TRL `GRPOTrainer` {} s per step: **{}×**{fastest} ([table](docs/performance.md))",
                    cell(rlvr, 1.0, 1),
                    cell(trl, 1.0, 1),
                    ratio(rlvr, trl)
                )
            }
            Some("update-path") => {
                let per: Vec<String> = sizes(doc)
                    .iter()
                    .map(|size| {
                        format!(
                            "**{}×** at {}",
                            path_ratio(doc, size),
                            size.replace('x', " × ")
                        )
                    })
                    .collect();
                format!(
                    "SimKO / GRPO time: {} ([table](docs/performance.md))",
                    per.join(", ")
                )
            }
            Some("gpu") => format!(
                "{} measurements on {} ([table](docs/performance.md))",
                rows(doc).len(),
                doc.get("settings")
                    .map(|s| text(s, "gpu"))
                    .unwrap_or_default()
            ),
            other => {
                return Err(format!(
                    "docs/bench/{name}.json: unknown benchmark {other:?}"
                ))
            }
        };
        t.push_str(&format!(
            "| {settings} | `{}` | {result} | `{}` |\n",
            text(doc, "command"),
            text(doc, "commit")
        ));
    }
    Ok(t)
}
