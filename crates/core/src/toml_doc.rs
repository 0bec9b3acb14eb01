//! Prints a TOML table with each field's doc comment above it, so `rlvr config` output explains
//! itself and still parses back to the same configuration.

/// Looks up the comment of a field: (path of the table, the table, field name) → doc.
pub type FieldDocs<'a> = dyn Fn(&[String], &toml::Table, &str) -> Option<&'static str> + 'a;

/// A table-header key, quoted unless it is a bare TOML key (`openai/gsm8k` → `"openai/gsm8k"`).
fn header_key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// Renders `table` under header `root` (e.g. "algo"). `docs(table, field)` gives the comment for a
/// field of a (sub)table; tagged tables are documented from the registries by the caller.
pub fn render(root: &str, table: &toml::Table, docs: &FieldDocs<'_>) -> String {
    let mut out = String::new();
    let path = if root.is_empty() {
        vec![]
    } else {
        vec![root.to_string()]
    };
    render_table(&path, None, table, docs, &mut out);
    out
}

fn render_table(
    path: &[String],
    header_doc: Option<&str>,
    table: &toml::Table,
    docs: &FieldDocs<'_>,
    out: &mut String,
) {
    if !path.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        for line in header_doc.unwrap_or("").trim().lines() {
            out.push_str(&format!("# {}\n", line.trim()));
        }
        let keys: Vec<String> = path.iter().map(|k| header_key(k)).collect();
        out.push_str(&format!("[{}]\n", keys.join(".")));
    }
    // `type` first, then scalars, then sub-tables (TOML requires sub-tables last).
    if let Some(tag) = table.get("type") {
        out.push_str(&format!("type = {tag}\n"));
    }
    for (key, value) in table {
        if key == "type" || value.is_table() {
            continue;
        }
        if let Some(doc) = docs(path, table, key) {
            for line in doc.trim().lines() {
                out.push_str(&format!("# {}\n", line.trim()));
            }
        }
        out.push_str(&format!("{key} = {value}\n"));
    }
    for (key, value) in table {
        if let toml::Value::Table(sub) = value {
            let mut sub_path = path.to_vec();
            sub_path.push(key.clone());
            render_table(&sub_path, docs(path, table, key), sub, docs, out);
        }
    }
}
