//! Final-answer extraction from a response: the last `\boxed{}` / `\fbox{}`, then "the answer is
//! ...", then `#### ...` (GSM8K), then the last math span (`$...$`, `\[...\]`, `\(...\)`), then the
//! last line. Linear in the input length.

/// The content of the last `\boxed{...}` or `\fbox{...}` (balanced braces), if any.
pub fn last_boxed(text: &str) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for key in ["\\boxed", "\\fbox"] {
        if let Some(pos) = text.rfind(key) {
            let rest = &text[pos + key.len()..];
            let content = if let Some(stripped) = rest.trim_start().strip_prefix('{') {
                balanced(stripped)
            } else {
                // \boxed 5
                rest.trim_start().split_whitespace().next().map(|s| s.trim_end_matches(['$', '.']).to_string())
            };
            if let Some(c) = content {
                if best.as_ref().is_none_or(|(p, _)| pos > *p) {
                    best = Some((pos, c));
                }
            }
        }
    }
    best.map(|(_, c)| c)
}

/// Text up to the brace that closes an already-opened `{`.
fn balanced(s: &str) -> Option<String> {
    let mut depth = 1usize;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(s[..i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The last math span `$...$`, `$$...$$`, `\[...\]` or `\(...\)`.
pub fn last_math_span(text: &str) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for (open, close) in [("\\[", "\\]"), ("\\(", "\\)")] {
        if let Some(end) = text.rfind(close) {
            if let Some(start) = text[..end].rfind(open) {
                let s = text[start + open.len()..end].to_string();
                if best.as_ref().is_none_or(|(p, _)| end > *p) {
                    best = Some((end, s));
                }
            }
        }
    }
    let dollars: Vec<usize> = text.match_indices('$').map(|(i, _)| i).filter(|&i| i == 0 || &text[i - 1..i] != "\\").collect();
    if dollars.len() >= 2 {
        let end = dollars[dollars.len() - 1];
        let mut start = dollars[dollars.len() - 2];
        let mut inner_end = end;
        // $$...$$
        if start + 1 == end && dollars.len() >= 4 {
            start = dollars[dollars.len() - 4] + 1;
            inner_end = dollars[dollars.len() - 2];
        }
        let s = text[start + 1..inner_end].trim_matches('$').to_string();
        if best.as_ref().is_none_or(|(p, _)| end > *p) {
            best = Some((end, s));
        }
    }
    best.map(|(_, s)| s)
}

/// "the answer is X", "answer: X" (the last occurrence, up to the end of its sentence or line).
pub fn answer_phrase(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let keys = ["final answer is", "the answer is", "answer is:", "answer:", "answer is"];
    let (pos, key) = keys.iter().filter_map(|k| lower.rfind(k).map(|p| (p, *k))).max_by_key(|(p, _)| *p)?;
    let rest = text.get(pos + key.len()..)?.trim_start_matches([':', ' ']);
    let line = rest.lines().next().unwrap_or("").trim();
    let line = line.strip_suffix('.').unwrap_or(line);
    (!line.is_empty()).then(|| line.to_string())
}

/// The text after the last `####` (GSM8K).
pub fn hashes(text: &str) -> Option<String> {
    let pos = text.rfind("####")?;
    let s = text[pos + 4..].lines().next().unwrap_or("").trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// The final answer of a response, by the priority above.
pub fn extract(text: &str) -> Option<String> {
    if let Some(b) = last_boxed(text) {
        return Some(b);
    }
    if let Some(a) = answer_phrase(text) {
        return Some(last_boxed(&a).or_else(|| last_math_span(&a)).unwrap_or(a));
    }
    if let Some(h) = hashes(text) {
        return Some(h);
    }
    if let Some(m) = last_math_span(text) {
        return Some(m);
    }
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    (last.chars().count() <= 64).then(|| last.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(extract("so \\boxed{\\frac{1}{2}} done").as_deref(), Some("\\frac{1}{2}"));
        assert_eq!(extract("\\boxed{1} then \\boxed{{2}}").as_deref(), Some("{2}"));
        assert_eq!(extract("The answer is $5$.").as_deref(), Some("5"));
        assert_eq!(extract("blah\n#### 1,234").as_deref(), Some("1,234"));
        assert_eq!(extract("We get $x=2$ and so $y = 3$").as_deref(), Some("y = 3"));
        assert_eq!(extract("\\[ \\boxed{32349} \\]").as_deref(), Some("32349"));
        assert_eq!(extract("\\boxed{unclosed").as_deref(), Some("\\boxed{unclosed"));
    }
}
