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
    /// `x%`: the value x/100, also read as x against a whole-number answer (see [`equal`]).
    Percent(Expr),
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

/// `6\3\0` → `6\\3\\0`: a backslash not followed by a letter becomes a row break.
fn lone_backslash_rows(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 8);
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\\' && !chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            out.push('\\');
        }
    }
    out
}

fn parse_matrix(s: &str) -> Option<Answer> {
    let begin = s.find("\\begin{")?;
    let env_end = s[begin..].find('}')? + begin;
    let mut body_start = env_end + 1;
    // `\begin{array}{cc}`: skip the column specification.
    if s[begin..env_end].ends_with("array") {
        if let Some(rest) = s[body_start..].strip_prefix('{') {
            body_start += rest.find('}')? + 2;
        }
    }
    let end = s.rfind("\\end{")?;
    let body = s.get(body_start..end)?;
    // Only brackets may wrap the environment: `\left[\begin{array}...\end{array}\right]`.
    let after = s[end..].find('}')? + end + 1;
    if !matches!(s[..begin].trim(), "" | "[" | "(") || !matches!(s[after..].trim(), "" | "]" | ")")
    {
        return None;
    }
    // MATH's preprocessing collapsed some row breaks `\\` to `\` (`6\3\0`): a lone backslash
    // before anything but a command name breaks a row too.
    let repaired;
    let body = if body.contains("\\\\") {
        body
    } else {
        repaired = lone_backslash_rows(body);
        &repaired
    };
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
    if s.contains("\\begin{") && (s.contains("matrix}") || s.contains("array}")) {
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
    // `;` separates answers more loosely than `,`: `1; 2` and `p=5,q=2; p=7,q=2` are lists.
    let items = split_top(s, ';');
    if items.len() > 1 && items.iter().all(|p| !p.is_empty()) {
        return Answer::Set(items.iter().map(|p| parse_answer(p)).collect());
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
    // A brace group around the whole answer only groups: `x = {A,B}` is `x = A,B`.
    if first == '{' && last == '}' && wrapped(s) {
        return parse_answer(&s[1..s.len() - 1]);
    }
    if matches!(first, '(' | '[') && matches!(last, ')' | ']') && wrapped(s) {
        let inner: String = s
            .chars()
            .skip(1)
            .take(s.chars().count().saturating_sub(2))
            .collect();
        let mut parts = split_top(&inner, ',');
        if parts.len() == 1 {
            parts = split_top(&inner, ';');
        }
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
            let middle = s[i + o1.len_utf8()..j].trim();
            // a ≤ |x| ≤ b with 0 ≤ a is the two intervals [−b, −a] ∪ [a, b].
            let absolute = middle.len() > 2 && middle.starts_with('|') && middle.ends_with('|');
            if absolute && !a.trim().starts_with('-') {
                let neg = |v: &str| parse_answer(&format!("-({})", v.trim()));
                return Answer::Union(vec![
                    Answer::Seq(mirror(close), vec![neg(b), neg(a)], mirror(open)),
                    Answer::Seq(open, vec![parse_answer(a), parse_answer(b)], close),
                ]);
            }
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
    if let Some(e) = s.strip_suffix('%').and_then(|x| parse(x.trim())) {
        return Answer::Percent(e);
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

/// The bracket on the other side of an interval that is the same kind (open or closed).
fn mirror(bracket: char) -> char {
    match bracket {
        '(' => ')',
        ')' => '(',
        '[' => ']',
        ']' => '[',
        other => other,
    }
}

/// The values of a list of assignments to distinct names (`p=5, q=2` → `[5, 2]`), if it is one.
fn assignments(items: &[Answer]) -> Option<Vec<&Answer>> {
    let mut names = Vec::new();
    let mut values = Vec::new();
    for item in items {
        match item {
            Answer::Rel(l, '=', r) if is_symbol(l) && !names.contains(&l) => {
                names.push(l);
                values.push(r.as_ref());
            }
            _ => return None,
        }
    }
    Some(values)
}

/// Whether an answer is made of mathematics only (no [`Answer::Text`] anywhere).
pub fn is_math(a: &Answer) -> bool {
    match a {
        Answer::Expr(_) | Answer::Percent(_) => true,
        Answer::Text(_) => false,
        Answer::Seq(_, xs, _) | Answer::Set(xs) | Answer::Union(xs) => xs.iter().all(is_math),
        Answer::Matrix(rows) => rows.iter().flatten().all(is_math),
        Answer::Rel(_, _, r) => is_math(r),
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
        // A gold assignment `x = 5` against `5`: the value (Math-Verify: gold assignment, pred
        // not an equation).
        (Rel(l, '=', r), other) if is_name(l) && !matches!(other, Rel(..)) => equal(r, other, rel),
        // A predicted equation against a gold that is not a relation: its right side is the
        // answer, whatever the left side (`m + n = 795`, `(2 + 4) \times 3 = 18`; Math-Verify
        // unwraps the last relation of a predicted equation the same way).
        (other, Rel(_, '=', r)) if !matches!(other, Rel(..)) => equal(other, r, rel),
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
            // The bracket at an infinite end of an interval says nothing: `[-∞, 1)` is `(-∞, 1)`.
            let infinite = |x: Option<&Answer>| matches!(x, Some(Expr(e)) if e.eval(&|_| None).re.is_infinite());
            let open_same = o1 == o2 || (infinite(a.first()) && infinite(b.first()));
            let close_same = c1 == c2 || (infinite(a.last()) && infinite(b.last()));
            open_same
                && close_same
                && a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| equal(x, y, rel))
        }
        (Set(a), Set(b)) | (Union(a), Union(b)) => unordered(a, b, rel),
        // Named values against a tuple: `p=5, q=2` is the solution `(5, 2)`.
        (Set(a), Seq('(', b, ')')) | (Seq('(', b, ')'), Set(a))
            if a.len() == b.len() && a.len() > 1 && assignments(a).is_some() =>
        {
            assignments(a).is_some_and(|values| values.iter().zip(b).all(|(x, y)| equal(x, y, rel)))
        }
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
        (Percent(a), Percent(b)) => equivalent(a, b, rel),
        // `25%` against `25` (a whole number asked "in percent") or against `0.25`; Math-Verify
        // reads a percent the same way.
        (Expr(g), Percent(x)) | (Percent(x), Expr(g)) => {
            let whole = |e: &super::expr::Expr| matches!(e, super::expr::Expr::Num(n) if *n >= 0.0 && n.fract() == 0.0);
            (whole(g) && whole(x) && g == x)
                || equivalent(
                    g,
                    &super::expr::Expr::Div(
                        Box::new(x.clone()),
                        Box::new(super::expr::Expr::Num(100.0)),
                    ),
                    rel,
                )
        }
        (Text(a), Text(b)) => a == b,
        (Text(a), Expr(e)) | (Expr(e), Text(a)) => {
            crate::math::expr::parse(a).is_some_and(|x| equivalent(&x, e, rel))
        }
        _ => false,
    }
}
