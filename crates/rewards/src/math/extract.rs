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
                rest.split_whitespace()
                    .next()
                    .map(|s| s.trim_end_matches(['$', '.']).to_string())
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
    let dollars: Vec<usize> = text
        .match_indices('$')
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text.as_bytes()[i - 1] != b'\\')
        .collect();
    if dollars.len() >= 2 {
        let end = dollars[dollars.len() - 1];
        let mut start = dollars[dollars.len() - 2];
        let mut inner_end = end;
        // $$...$$
        if start + 1 == end && dollars.len() >= 4 {
            start = dollars[dollars.len() - 3];
            inner_end = dollars[dollars.len() - 2];
        }
        if let Some(inner) = text.get(start + 1..inner_end) {
            let s = inner.trim_matches('$').to_string();
            if best.as_ref().is_none_or(|(p, _)| end > *p) {
                best = Some((end, s));
            }
        }
    }
    best.map(|(_, s)| s)
}

/// "the answer is X", "answer: X" (the last occurrence, up to the end of its sentence or line).
pub fn answer_phrase(text: &str) -> Option<String> {
    answer_phrase_at(text).map(|(_, s)| s)
}

/// [`answer_phrase`] with the byte position where the phrase starts.
fn answer_phrase_at(text: &str) -> Option<(usize, String)> {
    let lower = text.to_ascii_lowercase();
    let keys = [
        "final answer is",
        "the answer is",
        "answer is:",
        "answer:",
        "answer is",
    ];
    let (pos, key) = keys
        .iter()
        .filter_map(|k| lower.rfind(k).map(|p| (p, *k)))
        .max_by_key(|(p, _)| *p)?;
    let rest = text.get(pos + key.len()..)?.trim_start_matches([':', ' ']);
    let line = rest.lines().next().unwrap_or("");
    // The phrase ends with its sentence or at a chat token: "is 19. I hope it is correct".
    let end = [". ", "<|", "</s>"]
        .iter()
        .filter_map(|stop| line.find(stop))
        .min()
        .unwrap_or(line.len());
    let line = line[..end].trim();
    let line = line.strip_suffix('.').unwrap_or(line);
    (!line.is_empty()).then(|| (pos, line.to_string()))
}

/// The answer stated by an answer phrase: its box; its last math span or number (whichever is
/// later) when it has math spans; the whole phrase when it reads as math (`\frac{5}{54} dollars`,
/// `x = 3`); else its last number.
fn phrase_answer(a: &str) -> String {
    if let Some(b) = last_boxed(a) {
        return b;
    }
    if last_math_span(a).is_some() {
        if let Some(t) = tail_answer(a) {
            return t;
        }
    }
    if a.len() <= super::MAX_ANSWER_LEN
        && super::answer::is_math(&super::answer::parse_answer(&super::normalize::normalize(
            a,
        )))
    {
        return a.to_string();
    }
    tail_answer(a).unwrap_or_else(|| a.to_string())
}

/// The last `$…$` spans of `text` joined into one list answer when only a list connective
/// separates them ("$x=2$ and $x=3$", "$1$, $2$ or $3$") and they are alike: values, or
/// equations of the same left side (Math-Verify reads such a sentence as one answer). `None`
/// when the last span stands alone.
fn joined_math_spans(text: &str) -> Option<String> {
    let dollars: Vec<usize> = text
        .match_indices('$')
        .map(|(i, _)| i)
        .filter(|&i| i == 0 || text.as_bytes()[i - 1] != b'\\')
        .collect();
    if dollars.len() < 4 || !dollars.len().is_multiple_of(2) {
        return None;
    }
    let spans: Vec<(usize, usize)> = dollars.chunks(2).map(|c| (c[0], c[1])).collect();
    // Spans of `$$…$$` (empty between adjacent dollars) are not list items.
    if spans.iter().any(|(a, b)| b - a <= 1) {
        return None;
    }
    let lhs = |s: &str| -> Option<String> {
        let mut parts = s.split('=');
        let (l, _r, rest) = (parts.next()?, parts.next(), parts.next());
        match (_r, rest) {
            (Some(_), None) => Some(l.trim().to_string()),
            _ => None,
        }
    };
    let connective = |gap: &str| {
        let g = gap.trim().trim_start_matches(',').trim().to_lowercase();
        g.is_empty() || g == "and" || g == "or"
    };
    let content = |(a, b): (usize, usize)| text[a + 1..b].trim().to_string();
    let last = *spans.last()?;
    let mut items = vec![content(last)];
    let kind = lhs(&items[0]);
    for w in spans.windows(2).rev() {
        let (prev, next) = (w[0], w[1]);
        let gap = &text[prev.1 + 1..next.0];
        let item = content(prev);
        if !connective(gap) || lhs(&item) != kind {
            break;
        }
        items.push(item);
    }
    if items.len() < 2 {
        return None;
    }
    items.reverse();
    Some(items.join(", "))
}

/// The later of the last math span and the last plain-text number of `text`.
fn tail_answer(text: &str) -> Option<String> {
    let math = last_math_span(text).map(|m| {
        let end = text
            .rfind('$')
            .or_else(|| text.rfind("\\]"))
            .or_else(|| text.rfind("\\)"))
            .unwrap_or(0);
        (end, m)
    });
    let number = last_plain_number(text)
        .filter(|(end, _)| math.as_ref().is_none_or(|(m_end, _)| *end > *m_end));
    match (math, number) {
        (_, Some((_, n))) => Some(n),
        (Some((_, m)), None) => Some(joined_math_spans(text).unwrap_or(m)),
        _ => None,
    }
}

/// The text after the last `####` (GSM8K).
pub fn hashes(text: &str) -> Option<String> {
    let pos = text.rfind("####")?;
    let s = text[pos + 4..]
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

/// `\\frac` written with a doubled backslash (over-escaped JSON) becomes `\frac`.
pub fn undouble_backslashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\'
            && chars.get(i + 1) == Some(&'\\')
            && chars.get(i + 2).is_some_and(|c| c.is_ascii_alphabetic())
        {
            i += 1;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Every `\boxed{}` of the text with its span.
fn all_boxed(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = text[from..].find("\\boxed") {
        let pos = from + rel;
        let after = pos + "\\boxed".len();
        let rest = &text[after..];
        let trimmed = rest.trim_start();
        let skip = rest.len() - trimmed.len();
        match trimmed.strip_prefix('{').and_then(balanced) {
            Some(c) => {
                let end = after + skip + 1 + c.len() + 1;
                out.push((pos, end, c));
                from = end.min(text.len());
            }
            None => from = after,
        }
        if out.len() > 10_000 {
            break;
        }
    }
    out
}

/// Whether the text between two boxed answers only connects them ("and", commas, spacing, at
/// most four short words): then both are parts of one answer.
fn connective(gap: &str) -> bool {
    let mut g = gap.to_string();
    for cmd in [
        "\\quad", "\\qquad", "\\text", "\\mathrm", "\\,", "\\;", "$", "{", "}", "\\(", "\\)",
        "\\[", "\\]",
    ] {
        g = g.replace(cmd, " ");
    }
    let words: Vec<&str> = g
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    words.len() <= 4 && words.iter().all(|w| w.chars().count() <= 8)
}

/// The last boxed answer, joined with the boxed answers just before it when only connective text
/// separates them (`\boxed{1} and \boxed{2}` → `1, 2`).
pub fn boxed_answer(text: &str) -> Option<String> {
    let boxes = all_boxed(text);
    let (_, _, last) = boxes.last()?;
    let mut parts = vec![last.clone()];
    for w in boxes.windows(2).rev() {
        let (prev, next) = (&w[0], &w[1]);
        if connective(&text[prev.1.min(next.0)..next.0]) {
            parts.push(prev.2.clone());
        } else {
            break;
        }
    }
    parts.reverse();
    Some(parts.join(", "))
}

/// Where a number ending at `end` starts when it is written with spaces between thousands
/// groups (`1 000 000`); `start` when it is not.
fn spaced_thousands_start(b: &[u8], start: usize, end: usize) -> usize {
    if end - start != 3 || !b[start..end].iter().all(u8::is_ascii_digit) {
        return start;
    }
    let mut s = start;
    while s >= 2 && b[s - 1] == b' ' {
        let mut g = s - 1;
        while g > 0 && b[g - 1].is_ascii_digit() {
            g -= 1;
        }
        let width = s - 1 - g;
        if width == 0 || width > 3 || (g > 0 && matches!(b[g - 1], b'.' | b',')) {
            break;
        }
        s = g;
        if width < 3 {
            break;
        }
    }
    s
}

/// The last number written in plain text (`1,000.99`, `2.5`, `100%`), with its end position.
fn last_plain_number(text: &str) -> Option<(usize, String)> {
    let b = text.as_bytes();
    let mut i = b.len();
    while i > 0 {
        i -= 1;
        if b[i].is_ascii_digit() {
            let end = i + 1;
            let mut start = i;
            while start > 0
                && (b[start - 1].is_ascii_digit()
                    || ((b[start - 1] == b'.' || b[start - 1] == b',')
                        && start >= 2
                        && b[start - 2].is_ascii_digit()))
            {
                start -= 1;
            }
            start = spaced_thousands_start(b, start, end);
            // A leading-dot decimal: `.5`, `-.25` (not the full stop of `x.5`).
            if start >= 1
                && b[start - 1] == b'.'
                && (start == 1 || !b[start - 2].is_ascii_alphanumeric())
            {
                start -= 1;
            }
            if start > 0 && b[start - 1] == b'-' {
                start -= 1;
            }
            let mut number = text[start..end].to_string();
            // A single comma not followed by exactly three digits is a decimal comma (2,74; 0,111).
            if let Some((l, r)) = number.split_once(',') {
                if !r.contains(',')
                    && !r.contains('.')
                    && (r.len() != 3 || l.trim_start_matches('-') == "0")
                {
                    number = format!("{l}.{r}");
                }
            }
            return Some((end, number));
        }
    }
    None
}

/// The final answer of a response, by the priority above.
pub fn extract(text: &str) -> Option<String> {
    let owned = undouble_backslashes(text);
    let text = owned.as_str();
    let phrase = answer_phrase_at(text);
    let last_box = text.rfind("\\boxed").or_else(|| text.rfind("\\fbox"));
    // A "final answer" phrase after the last box wins over it.
    if let Some((pos, a)) = &phrase {
        if last_box.is_none_or(|b| *pos > b) {
            return Some(phrase_answer(a));
        }
    }
    if let Some(b) = boxed_answer(text) {
        return Some(b);
    }
    if let Some(b) = last_boxed(text) {
        return Some(b);
    }
    if let Some(h) = hashes(text) {
        return Some(h);
    }
    if let Some(a) = tail_answer(text) {
        return Some(a);
    }
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    (last.chars().count() <= 64).then(|| last.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(
            extract("so \\boxed{\\frac{1}{2}} done").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(
            extract("\\boxed{1} is wrong, so we try again and find \\boxed{{2}}").as_deref(),
            Some("{2}")
        );
        assert_eq!(
            extract("\\boxed{1} and \\boxed{2}").as_deref(),
            Some("1, 2")
        );
        assert_eq!(extract("The answer is $5$.").as_deref(), Some("5"));
        assert_eq!(
            extract("So the answer is 19. I hope it is correct.<|im_end|>").as_deref(),
            Some("19")
        );
        assert_eq!(
            extract("The answer is \\frac{5}{54} dollars.").as_deref(),
            Some("\\frac{5}{54} dollars")
        );
        assert_eq!(extract("The answer is -.25.").as_deref(), Some("-.25"));
        assert_eq!(extract("1 000").as_deref(), Some("1 000"));
        assert_eq!(
            extract("it costs 12 345 678").as_deref(),
            Some("12 345 678")
        );
        assert_eq!(extract("blah\n#### 1,234").as_deref(), Some("1,234"));
        assert_eq!(
            extract("We get $x=2$ and so $y = 3$").as_deref(),
            Some("y = 3")
        );
        assert_eq!(extract("\\[ \\boxed{32349} \\]").as_deref(), Some("32349"));
        // Alike spans joined by a list connective are one answer; others are not.
        assert_eq!(
            extract("The solutions are $x=2$ and $x=-3$.").as_deref(),
            Some("x=2, x=-3")
        );
        assert_eq!(extract("So $1$, $2$ or $3$.").as_deref(), Some("1, 2, 3"));
        assert_eq!(extract("We have $y=1$ and $x=3$.").as_deref(), Some("x=3"));
        assert_eq!(
            extract("\\boxed{unclosed").as_deref(),
            Some("\\boxed{unclosed")
        );
    }
}
