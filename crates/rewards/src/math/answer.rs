//! Structured answers and their equivalence: expressions (numeric or symbolic), tuples and
//! intervals, sets and unordered lists, matrices, unions, relations (`x = 5`, `x < 1`), and text.

use super::expr::{equivalent, parse, Expr};

/// A parsed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An expression.
    Expr(Expr),
    /// `(a, b)`, `[a, b)`, ...: a tuple or an interval, with its brackets.
    Seq(char, Vec<Answer>, char),
    /// `\{a, b\}` or a bare list `a, b`: order does not matter.
    Set(Vec<Answer>),
    /// Rows of a matrix.
    Matrix(Vec<Vec<Answer>>),
    /// A union of intervals.
    Union(Vec<Answer>),
    /// `lhs op rhs` with op one of = < > ≤ ≥ ≠.
    Rel(Expr, char, Box<Answer>),
    /// Anything else, compared as normalised text.
    Text(String),
}

/// Splits at top-level occurrences of `sep` (outside (), [], {}).
fn split_top(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut prev = ' ';
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 && prev != '\\' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
        prev = c;
    }
    parts.push(cur);
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

/// Whether the outer brackets of `s` (first and last char) enclose the whole string.
fn wrapped(s: &str) -> bool {
    let mut depth = 0i32;
    let n = s.chars().count();
    for (i, c) in s.chars().enumerate() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && i + 1 < n {
            return false;
        }
    }
    depth == 0
}

fn parse_matrix(s: &str) -> Option<Answer> {
    let begin = s.find("\\begin{")?;
    let env_end = s[begin..].find('}')? + begin;
    let body_start = env_end + 1;
    let end = s.rfind("\\end{")?;
    let body = s.get(body_start..end)?;
    let rows: Vec<Vec<Answer>> = body
        .split("\\\\")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.split('&').map(|c| parse_answer(c.trim())).collect())
        .collect();
    (!rows.is_empty()).then_some(Answer::Matrix(rows))
}

/// Parses normalised answer text.
pub fn parse_answer(s: &str) -> Answer {
    let s = s.trim();
    if s.contains("\\begin{") && s.contains("matrix") {
        if let Some(m) = parse_matrix(s) {
            return m;
        }
    }
    let union = split_top(s, '∪');
    if union.len() > 1 {
        return Answer::Union(union.iter().map(|p| parse_answer(p)).collect());
    }
    if let Some(inner) = s.strip_prefix("\\{").and_then(|r| r.strip_suffix("\\}")) {
        return Answer::Set(
            split_top(inner, ',')
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| parse_answer(p))
                .collect(),
        );
    }
    let items = split_top(s, ',');
    if items.len() > 1 {
        return Answer::Set(
            items
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| parse_answer(p))
                .collect(),
        );
    }
    let first = s.chars().next().unwrap_or(' ');
    let last = s.chars().last().unwrap_or(' ');
    if matches!(first, '(' | '[') && matches!(last, ')' | ']') && wrapped(s) {
        let inner: String = s
            .chars()
            .skip(1)
            .take(s.chars().count().saturating_sub(2))
            .collect();
        let parts = split_top(&inner, ',');
        if parts.len() > 1 {
            return Answer::Seq(first, parts.iter().map(|p| parse_answer(p)).collect(), last);
        }
    }
    // An approximation ends the answer: x = 1/3 ≈ 0.33 is x = 1/3.
    if let Some((exact, approx)) = s.split_once('≈') {
        // x ≈ 11 is 11; x = 1/3 ≈ 0.33 is x = 1/3.
        let bare = parse(exact.trim()).is_some_and(|e| is_symbol(&e));
        if bare {
            return parse_answer(approx);
        }
        if !exact.trim().is_empty() {
            return parse_answer(exact);
        }
    }
    // x ∈ S is S.
    if let Some((_, set)) = s.split_once('∈') {
        return parse_answer(set);
    }
    // a ≤ x ≤ b (or <) is the interval from a to b.
    let lows: Vec<(usize, char)> = s
        .char_indices()
        .filter(|(_, c)| matches!(c, '<' | '≤'))
        .collect();
    if lows.len() == 2 && !s.contains(['>', '≥', '=']) {
        let ((i, o1), (j, o2)) = (lows[0], lows[1]);
        let (a, b) = (&s[..i], &s[j + o2.len_utf8()..]);
        if parse(a.trim()).is_some() && parse(b.trim()).is_some() {
            let open = if o1 == '<' { '(' } else { '[' };
            let close = if o2 == '<' { ')' } else { ']' };
            return Answer::Seq(open, vec![parse_answer(a), parse_answer(b)], close);
        }
    }
    for op in ['=', '≤', '≥', '<', '>', '≠'] {
        let sides = split_top(s, op);
        if sides.len() >= 2 {
            // A chain a = b = c keeps the last value; the left side may be any text (AB, f(x)).
            let lhs = parse(&sides[0]).unwrap_or(Expr::Sym(sides[0].clone()));
            let rhs = sides.last().map(String::as_str).unwrap_or("");
            return Answer::Rel(lhs, op, Box::new(parse_answer(rhs)));
        }
    }
    match parse(s) {
        Some(e) => Answer::Expr(e),
        None => Answer::Text(
            s.to_lowercase()
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        ),
    }
}

fn is_symbol(e: &Expr) -> bool {
    matches!(e, Expr::Sym(_))
}

/// A left side that names the answer rather than computing it: x, AB, f(x), x_1.
fn is_name(e: &Expr) -> bool {
    match e {
        Expr::Sym(_) => true,
        Expr::Mul(a, b) => is_name(a) && is_name(b),
        _ => false,
    }
}

fn flip(op: char) -> char {
    match op {
        '<' => '>',
        '>' => '<',
        '≤' => '≥',
        '≥' => '≤',
        o => o,
    }
}

fn rel_expr(lhs: &Expr, rhs: &Answer) -> Option<Expr> {
    match rhs {
        Answer::Expr(r) => Some(Expr::Sub(Box::new(lhs.clone()), Box::new(r.clone()))),
        _ => None,
    }
}

fn unordered(a: &[Answer], b: &[Answer], rel: f64) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let hit = b
            .iter()
            .enumerate()
            .find(|(j, y)| !used[*j] && equal(x, y, rel));
        match hit {
            Some((j, _)) => {
                used[j] = true;
                true
            }
            None => false,
        }
    })
}

/// Whether a gold and a predicted answer are equivalent.
pub fn equal(gold: &Answer, pred: &Answer, rel: f64) -> bool {
    use Answer::*;
    match (gold, pred) {
        (Expr(a), Expr(b)) => equivalent(a, b, rel),
        // `x = 5` vs `5` (either side).
        (Rel(l, '=', r), other) if is_name(l) && !matches!(other, Rel(..)) => equal(r, other, rel),
        (other, Rel(l, '=', r)) if is_name(l) && !matches!(other, Rel(..)) => equal(other, r, rel),
        (Rel(l1, o1, r1), Rel(l2, o2, r2)) => {
            if is_symbol(l1) && is_symbol(l2) && o1 == o2 && l1 == l2 && equal(r1, r2, rel) {
                return true;
            }
            let (Some(d1), Some(d2)) = (rel_expr(l1, r1), rel_expr(l2, r2)) else {
                return o1 == o2 && equal(r1, r2, rel);
            };
            let neg2 = super::expr::Expr::Neg(Box::new(d2.clone()));
            if o1 == o2
                && (equivalent(&d1, &d2, rel)
                    || ((*o1 == '=' || *o1 == '≠') && equivalent(&d1, &neg2, rel)))
            {
                return true;
            }
            // Equations equal up to a constant factor: x²/4 + y²/3 = 1 and x²/16 + y²/12 = 1/4.
            if *o1 == '=' && *o2 == '=' && super::expr::proportional(&d1, &d2, rel) {
                return true;
            }
            *o1 == flip(*o2) && *o1 != *o2 && equivalent(&d1, &neg2, rel)
        }
        (Seq(o1, a, c1), Seq(o2, b, c2)) => {
            o1 == o2
                && c1 == c2
                && a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| equal(x, y, rel))
        }
        (Set(a), Set(b)) | (Union(a), Union(b)) => unordered(a, b, rel),
        (Set(a), Seq('(', b, ')')) | (Seq('(', b, ')'), Set(a)) if a.len() == 1 => {
            a.len() == b.len() && equal(&a[0], &Seq('(', b.clone(), ')'), rel)
        }
        (Set(a), other) | (other, Set(a)) if a.len() == 1 => equal(&a[0], other, rel),
        (Matrix(a), Matrix(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(r, s)| {
                    r.len() == s.len() && r.iter().zip(s).all(|(x, y)| equal(x, y, rel))
                })
        }
        (Text(a), Text(b)) => a == b,
        (Text(a), Expr(e)) | (Expr(e), Text(a)) => {
            crate::math::expr::parse(a).is_some_and(|x| equivalent(&x, e, rel))
        }
        _ => false,
    }
}
