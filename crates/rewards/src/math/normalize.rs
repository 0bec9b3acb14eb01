//! LaTeX and plain-text normalisation of an extracted answer before it is parsed: delimiters,
//! spacing commands, `\left`/`\right`, `\dfrac`/`\tfrac`, `\text{}`-like wrappers, degrees, percent,
//! dollar signs, units after a number, thousands separators, relation symbols.

/// Replaces every `\cmd{content}` by `content` for the given commands (balanced braces).
fn unwrap_commands(s: &str, cmds: &[&str]) -> String {
    let mut out = s.to_string();
    for cmd in cmds {
        let pat = format!("\\{cmd}{{");
        let mut guard = 0;
        while let Some(pos) = out.find(&pat) {
            guard += 1;
            if guard > 1000 {
                break;
            }
            let start = pos + pat.len();
            let mut depth = 1;
            let mut end = None;
            for (i, c) in out[start..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(start + i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            match end {
                Some(e) => out = format!("{}{}{}", &out[..pos], &out[start..e], &out[e + 1..]),
                None => {
                    out.replace_range(pos..start, "");
                }
            }
        }
    }
    out
}

/// Replaces `from` by `to`; a command name (`\in`, `\le`) only where it ends, so that `\in`
/// does not eat the start of `\infty` nor `\le` that of `\left`.
fn replace_command(s: &str, from: &str, to: &str) -> String {
    let is_command = from.starts_with('\\') && from.ends_with(|c: char| c.is_ascii_alphabetic());
    if !is_command {
        return s.replace(from, to);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find(from) {
        let after = &rest[pos + from.len()..];
        out.push_str(&rest[..pos]);
        if after.starts_with(|c: char| c.is_ascii_alphabetic()) {
            out.push_str(from);
        } else {
            out.push_str(to);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Whether `s` is a number written with thousands separators (`1,000` or `12,345.5`).
fn is_grouped_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let int = s.split('.').next().unwrap_or("");
    let groups: Vec<&str> = int.split(',').collect();
    groups.len() > 1
        && !groups[0].is_empty()
        && groups[0].len() <= 3
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3)
        && s.split('.')
            .nth(1)
            .is_none_or(|f| f.chars().all(|c| c.is_ascii_digit()))
}

/// Stands for a matrix row separator `\\` while the spacing commands are removed.
const ROW: &str = "\u{1}";

/// Normalised answer text.
pub fn normalize(raw: &str) -> String {
    // Row separators `\\` of matrices are kept apart from spacing commands such as `\ `.
    // No-break, thin and narrow spaces are spaces (`1 000` with U+202F).
    let raw: String = raw
        .chars()
        .map(|c| match c {
            '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{2007}' => ' ',
            c => c,
        })
        .collect();
    let mut s = crate::math::extract::undouble_backslashes(raw.trim())
        .replace("\\\\", ROW)
        .replace(",\\! ", ",")
        .replace(",\\!", ",")
        .replace(", \\!", ",");
    for (a, b) in [
        ("\\$", ""),
        ("\\[", ""),
        ("\\]", ""),
        ("\\(", ""),
        ("\\)", ""),
        ("$", ""),
    ] {
        s = s.replace(a, b);
    }
    s = unwrap_commands(
        &s,
        &[
            "boxed",
            "text",
            "textnormal",
            "textbf",
            "textit",
            "mathrm",
            "mathbf",
            "mathit",
            "operatorname",
            "mbox",
            "fbox",
        ],
    );
    for (a, b) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\displaystyle", ""),
        ("\\limits", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("\\cfrac", "\\frac"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\circ", ""),
        ("°", ""),
        ("\\%", "%"),
        ("\\$", ""),
        ("{,}", ""),
        ("\\qquad", " "),
        ("\\quad", " "),
        ("\\!", ""),
        ("\\,", " "),
        ("\\;", " "),
        ("\\:", " "),
        ("\\ ", " "),
        ("~", " "),
        ("\\leqslant", "≤"),
        ("\\geqslant", "≥"),
        ("\\leq", "≤"),
        ("\\geq", "≥"),
        ("\\le", "≤"),
        ("\\ge", "≥"),
        ("<=", "≤"),
        (">=", "≥"),
        ("\\neq", "≠"),
        ("\\ne", "≠"),
        ("\\approx", "≈"),
        ("\\lt", "<"),
        ("\\gt", ">"),
        ("\\in", "∈"),
        ("\\cup", "∪"),
        ("\\to", "→"),
        ("\\mid", "|"),
        ("!=", "≠"),
    ] {
        s = replace_command(&s, a, b);
    }
    let s = s.replace(ROW, "\\\\");
    let mut s = s.trim().trim_end_matches(['.', ',']).trim().to_string();
    // A lone outer brace group: {A,D} -> A,D.
    if s.starts_with('{') && s.ends_with('}') && !s.starts_with("{,") && balanced_outer(&s) {
        s = s[1..s.len() - 1].trim().to_string();
    }
    // "a and b", "a or b" list several answers.
    for word in [" and ", " or "] {
        if s.contains(word) {
            s = s.replace(word, ", ");
        }
    }
    if let Some(value) = strip_units(&s) {
        s = value;
    }
    if is_grouped_number(&s) {
        s = s.replace(',', "");
    }
    // Thin-space thousands: 1 000 000.
    let groups: Vec<&str> = s.split(' ').collect();
    if groups.len() > 1
        && groups[0].len() <= 3
        && groups
            .iter()
            .all(|g| !g.is_empty() && g.chars().all(|c| c.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3)
    {
        s = groups.concat();
    }
    s
}

/// Whether `word` reads as a unit: letters (two or more, not a function or constant name), an
/// optional `/letters` and an optional power: `cm`, `meters`, `km/h`, `cm^2`, `{cm}^{3}`.
fn is_unit_word(word: &str) -> bool {
    let w: String = word.chars().filter(|c| !matches!(c, '{' | '}')).collect();
    let (base, power) = w.split_once('^').unwrap_or((&w, ""));
    let base = base.trim_end_matches('.');
    let letters = |p: &str| p.len() >= 2 && p.chars().all(|c| c.is_ascii_alphabetic());
    let (first, per) = base.split_once('/').unwrap_or((base, "ok"));
    letters(first)
        && letters(per)
        && !crate::math::expr::is_named_function_or_constant(first)
        && power.chars().all(|c| c.is_ascii_digit())
}

/// A constant followed by unit words is the constant: `35 cm`, `5 meters`, `440{cm}^2`,
/// `-\frac{1}{4} cm^2`, `28 percent`. `None` when `s` is not of that form.
fn strip_units(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        let boundary = b == b' ' || (b == b'{' && bytes[i - 1].is_ascii_digit());
        if !boundary {
            continue;
        }
        let (head, tail) = (s[..i].trim(), &s[i..]);
        // Units are a few short words; a bound keeps this linear in the answer's length.
        if tail.len() > 32 {
            continue;
        }
        let words: Vec<&str> = tail.split_whitespace().collect();
        if words.is_empty() || !words.iter().all(|w| is_unit_word(w)) {
            continue;
        }
        if is_grouped_number(head) {
            return Some(head.to_string());
        }
        let constant = crate::math::expr::parse(head).is_some_and(|e| {
            let mut vars = std::collections::BTreeSet::new();
            e.vars(&mut vars);
            vars.is_empty()
        });
        if constant {
            return Some(head.to_string());
        }
    }
    None
}

/// Whether the first `{` of `s` closes at its last character.
fn balanced_outer(s: &str) -> bool {
    let mut depth = 0i32;
    let n = s.len();
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 && i + 1 < n {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_common_forms() {
        assert_eq!(normalize("$\\dfrac{1}{2}$"), "\\frac{1}{2}");
        assert_eq!(normalize("\\text{(A)}"), "(A)");
        assert_eq!(normalize("90^\\circ"), "90");
        assert_eq!(normalize("50\\%"), "50%");
        assert_eq!(normalize("\\$1,000.99"), "1000.99");
        assert_eq!(normalize("35 cm"), "35");
        assert_eq!(normalize("28 percent"), "28");
        assert_eq!(normalize("\\left( 1, 2 \\right)"), "( 1, 2 )");
        assert_eq!(normalize("(1,000)"), "(1,000)");
        assert_eq!(normalize("x \\geq 5"), "x ≥ 5");
        assert_eq!(normalize("x \\in (-\\infty, 1]"), "x ∈ (-\\infty, 1]");
        assert_eq!(normalize("x != 2"), normalize("x \\neq 2"));
    }
}
