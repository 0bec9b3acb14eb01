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

/// Normalised answer text.
pub fn normalize(raw: &str) -> String {
    let mut s = crate::math::extract::undouble_backslashes(raw.trim())
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
        ("\\%", ""),
        ("%", ""),
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
    ] {
        s = s.replace(a, b);
    }
    let mut s = s.trim().trim_end_matches(['.', ',']).trim().to_string();
    // A lone outer brace group: {A,D} -> A,D.
    if s.starts_with('{') && s.ends_with('}') && !s.starts_with("{,") && balanced_outer(&s) {
        s = s[1..s.len() - 1].trim().to_string();
    }
    // Units written as {cm}^2 or cm^2 after a number: 440{cm}^2 -> 440.
    if let Some(pos) = s.find(|c: char| c == '{' || c.is_ascii_alphabetic()) {
        let (num, unit) = s.split_at(pos);
        let unit_ok = unit
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphabetic() || *c == ' ')
            .count()
            > 0
            && unit
                .chars()
                .all(|c| c.is_ascii_alphabetic() || "{}^ 0123456789".contains(c))
            && unit.contains('^');
        if unit_ok
            && !num.trim().is_empty()
            && crate::math::expr::parse(num.trim()).is_some()
            && !num.contains('\\')
        {
            s = num.trim().to_string();
        }
    }
    // Words after a number are units or "percent": "35 cm", "28 percentage", "5 meters".
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.len() >= 2
        && crate::math::expr::parse(words[0]).is_some()
        && words[1..]
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_alphabetic() || c == '.'))
    {
        s = words[0].to_string();
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
    // "a and b", "a or b" list several answers.
    for word in [" and ", " or "] {
        if s.contains(word) {
            s = s.replace(word, ", ");
        }
    }
    s
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
        assert_eq!(normalize("50\\%"), "50");
        assert_eq!(normalize("\\$1,000.99"), "1000.99");
        assert_eq!(normalize("35 cm"), "35");
        assert_eq!(normalize("28 percent"), "28");
        assert_eq!(normalize("\\left( 1, 2 \\right)"), "( 1, 2 )");
        assert_eq!(normalize("(1,000)"), "(1,000)");
        assert_eq!(normalize("x \\geq 5"), "x ≥ 5");
    }
}
