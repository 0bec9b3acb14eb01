//! A small parser and evaluator for answer expressions written in LaTeX or plain text: numbers
//! (decimals, scientific notation), + − × ÷ ^, `\frac`, `\sqrt[n]{}`, π, e, i, implicit
//! multiplication, functions (sin, cos, tan, ln, log, exp, abs, ...), factorials, percentages and
//! free variables. Values are complex numbers, so `i` and roots of negatives evaluate.
//!
//! Bounded by construction: inputs longer than [`MAX_LEN`] or nested deeper than [`MAX_DEPTH`] are
//! rejected, and evaluation is linear in the size of the tree.

use std::collections::BTreeSet;

/// Longest expression text that is parsed.
pub const MAX_LEN: usize = 4000;
/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// A complex number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct C {
    /// Real part.
    pub re: f64,
    /// Imaginary part.
    pub im: f64,
}

impl C {
    /// A real number.
    pub fn real(re: f64) -> C {
        C { re, im: 0.0 }
    }
    fn add(self, o: C) -> C {
        C {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn sub(self, o: C) -> C {
        C {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        C {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn is_real(self) -> bool {
        self.im.abs() <= 1e-12 * self.re.abs().max(1.0)
    }
    fn ln(self) -> C {
        C {
            re: self.abs().ln(),
            im: self.im.atan2(self.re),
        }
    }
    fn exp(self) -> C {
        let m = self.re.exp();
        C {
            re: m * self.im.cos(),
            im: m * self.im.sin(),
        }
    }
    fn pow(self, e: C) -> C {
        if self.is_real() && e.is_real() {
            let (b, x) = (self.re, e.re);
            if b >= 0.0 || x.fract() == 0.0 {
                return C::real(b.powf(x));
            }
        }
        if self.re == 0.0 && self.im == 0.0 {
            return C::real(if e.re > 0.0 { 0.0 } else { f64::INFINITY });
        }
        e.mul(self.ln()).exp()
    }
    /// Whether this is finite.
    pub fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number written without a decimal point (an exact value).
    Num(f64),
    /// A number written with a decimal point or an exponent (`0.33`, `1e-5`): an approximation,
    /// compared after rounding (see [`equivalent`]).
    Dec(f64),
    /// A named constant or variable (π, e and i are constants).
    Sym(String),
    /// −x.
    Neg(Box<Expr>),
    /// a + b.
    Add(Box<Expr>, Box<Expr>),
    /// a − b.
    Sub(Box<Expr>, Box<Expr>),
    /// a × b.
    Mul(Box<Expr>, Box<Expr>),
    /// a ÷ b.
    Div(Box<Expr>, Box<Expr>),
    /// a ^ b.
    Pow(Box<Expr>, Box<Expr>),
    /// n-th root (real root of negatives for odd n).
    Root(Box<Expr>, Box<Expr>),
    /// A function call.
    Func(String, Box<Expr>),
    /// n!.
    Fact(Box<Expr>),
}

const FUNCS: [&str; 17] = [
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "sin", "cos", "tan", "sec", "csc", "cot",
    "ln", "log", "exp", "abs", "sqrt",
];
const GREEK: [&str; 24] = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "varepsilon",
    "zeta",
    "eta",
    "theta",
    "vartheta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "varphi",
    "chi",
    "omega",
];

/// Whether `name` is a function or a constant this parser knows (`sin`, `sqrt`, `pi`, `alpha`):
/// such a word after a number is part of the expression, not a unit.
pub fn is_named_function_or_constant(name: &str) -> bool {
    FUNCS.contains(&name) || GREEK.contains(&name) || matches!(name, "pi" | "infty")
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Dec(f64),
    Ident(String),
    Func(String),
    Op(char),
    Open(char),
    Close(char),
    Frac,
    Sqrt,
    Bang,
}

/// Splits text into tokens; `None` on anything it does not understand.
fn lex(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Digits right after \frac or \sqrt without braces are single-digit arguments: \frac12.
    let mut single_digits = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if single_digits > 0 && c.is_ascii_digit() {
            out.push(Tok::Num(f64::from(c.to_digit(10)?)));
            single_digits -= 1;
            i += 1;
            continue;
        }
        single_digits = 0;
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            // Scientific notation: 1e-5, 2.5E3 (only directly after digits).
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len()
                    && chars[j].is_ascii_digit()
                    && !chars.get(i + 1).is_some_and(|c| c.is_alphabetic())
                {
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            let text: String = chars[start..i].iter().collect();
            let value = text.parse().ok()?;
            out.push(if text.contains(['.', 'e', 'E']) {
                Tok::Dec(value)
            } else {
                Tok::Num(value)
            });
            continue;
        }
        if c == '\\' {
            let start = i + 1;
            let mut j = start;
            while j < chars.len() && chars[j].is_ascii_alphabetic() {
                j += 1;
            }
            let name: String = chars[start..j].iter().collect();
            i = j;
            match name.as_str() {
                "" => {
                    // \{ \} \, etc.
                    match chars.get(i) {
                        Some('{') => out.push(Tok::Open('(')),
                        Some('}') => out.push(Tok::Close(')')),
                        _ => {}
                    }
                    i += 1;
                }
                "frac" | "dfrac" | "tfrac" | "cfrac" => {
                    out.push(Tok::Frac);
                    single_digits = 2;
                }
                "sqrt" => {
                    out.push(Tok::Sqrt);
                    single_digits = 1;
                }
                "cdot" | "times" | "ast" => out.push(Tok::Op('*')),
                "div" => out.push(Tok::Op('/')),
                "pi" => out.push(Tok::Ident("pi".into())),
                "infty" => out.push(Tok::Num(f64::INFINITY)),
                "left" | "right" | "displaystyle" | "quad" | "qquad" | "mathrm" | "mathbf"
                | "mathit" | "text" | "textbf" | "operatorname" | "big" | "Big" => {}
                n if FUNCS.contains(&n) => out.push(Tok::Func(n.to_string())),
                n if GREEK.contains(&n) => out.push(Tok::Ident(n.to_string())),
                _ => return None,
            }
            continue;
        }
        if c == 'π' {
            out.push(Tok::Ident("pi".into()));
            i += 1;
            continue;
        }
        if c.is_alphabetic() {
            let start = i;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut rest = word.as_str();
            // Split a run of letters into known functions and single-letter symbols.
            while !rest.is_empty() {
                if let Some(f) = FUNCS.iter().find(|f| rest.starts_with(**f)) {
                    out.push(Tok::Func(f.to_string()));
                    rest = &rest[f.len()..];
                } else if rest.starts_with("pi") {
                    out.push(Tok::Ident("pi".into()));
                    rest = &rest[2..];
                } else {
                    let ch = rest.chars().next()?;
                    out.push(Tok::Ident(ch.to_string()));
                    rest = &rest[ch.len_utf8()..];
                }
            }
            continue;
        }
        match c {
            '+' | '-' | '*' | '/' | '^' | '·' | '×' | '÷' | '−' => {
                out.push(Tok::Op(match c {
                    '·' | '×' => '*',
                    '÷' => '/',
                    '−' => '-',
                    o => o,
                }))
            }
            '(' | '[' | '{' => out.push(Tok::Open(c)),
            ')' | ']' | '}' => out.push(Tok::Close(c)),
            '!' => out.push(Tok::Bang),
            'π' => out.push(Tok::Ident("pi".into())),
            '∞' => out.push(Tok::Num(f64::INFINITY)),
            '_' => {
                // Subscripts name a variable: x_1, a_{37}.
                let sub = read_group_text(&chars, &mut i)?;
                if let Some(Tok::Ident(name)) = out.last_mut() {
                    name.push('_');
                    name.push_str(&sub);
                } else {
                    return None;
                }
                continue;
            }
            _ => return None,
        }
        i += 1;
    }
    Some(out)
}

/// Reads `_x` or `_{...}` starting at the underscore; returns the subscript text.
fn read_group_text(chars: &[char], i: &mut usize) -> Option<String> {
    *i += 1;
    match chars.get(*i)? {
        '{' => {
            let start = *i + 1;
            let mut depth = 0;
            while *i < chars.len() {
                match chars[*i] {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            let s: String = chars[start..*i].iter().collect();
                            *i += 1;
                            return Some(s);
                        }
                    }
                    _ => {}
                }
                *i += 1;
            }
            None
        }
        c => {
            *i += 1;
            Some(c.to_string())
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn expr(&mut self) -> Option<Expr> {
        self.enter()?;
        let mut lhs = self.term()?;
        while let Some(Tok::Op(o @ ('+' | '-'))) = self.peek().cloned() {
            self.pos += 1;
            let rhs = self.term()?;
            lhs = if o == '+' {
                Expr::Add(Box::new(lhs), Box::new(rhs))
            } else {
                Expr::Sub(Box::new(lhs), Box::new(rhs))
            };
        }
        self.depth -= 1;
        Some(lhs)
    }

    fn starts_factor(t: &Tok) -> bool {
        matches!(
            t,
            Tok::Num(_)
                | Tok::Dec(_)
                | Tok::Ident(_)
                | Tok::Func(_)
                | Tok::Open(_)
                | Tok::Frac
                | Tok::Sqrt
        )
    }

    fn term(&mut self) -> Option<Expr> {
        let mut lhs = self.unary()?;
        loop {
            match self.peek().cloned() {
                Some(Tok::Op(o @ ('*' | '/'))) => {
                    self.pos += 1;
                    let rhs = self.unary()?;
                    lhs = if o == '*' {
                        Expr::Mul(Box::new(lhs), Box::new(rhs))
                    } else {
                        Expr::Div(Box::new(lhs), Box::new(rhs))
                    };
                }
                Some(t) if Self::starts_factor(&t) => {
                    let rhs = self.power()?;
                    lhs = Expr::Mul(Box::new(lhs), Box::new(rhs));
                }
                _ => return Some(lhs),
            }
        }
    }

    fn unary(&mut self) -> Option<Expr> {
        match self.peek() {
            Some(Tok::Op('-')) => {
                self.pos += 1;
                self.enter()?;
                let e = Expr::Neg(Box::new(self.unary()?));
                self.depth -= 1;
                Some(e)
            }
            Some(Tok::Op('+')) => {
                self.pos += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<Expr> {
        let mut base = self.postfix()?;
        if let Some(Tok::Op('^')) = self.peek() {
            self.pos += 1;
            self.enter()?;
            let exp = self.unary()?;
            self.depth -= 1;
            base = Expr::Pow(Box::new(base), Box::new(exp));
        }
        Some(base)
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut e = self.atom()?;
        while let Some(Tok::Bang) = self.peek() {
            self.pos += 1;
            e = Expr::Fact(Box::new(e));
        }
        Some(e)
    }

    /// A braced group `{...}` or a single token argument (`\frac12`, `\sqrt2`).
    fn arg(&mut self) -> Option<Expr> {
        match self.peek()? {
            Tok::Open(_) => self.atom(),
            Tok::Num(n) => {
                let n = *n;
                self.pos += 1;
                Some(Expr::Num(n))
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Option<Expr> {
        self.enter()?;
        let e = match self.next()? {
            Tok::Num(n) => Expr::Num(n),
            Tok::Dec(n) => Expr::Dec(n),
            Tok::Ident(name) => Expr::Sym(name),
            Tok::Open(_) => {
                let inner = self.expr()?;
                match self.next()? {
                    Tok::Close(_) => inner,
                    _ => return None,
                }
            }
            Tok::Frac => {
                let num = self.arg()?;
                let den = self.arg()?;
                Expr::Div(Box::new(num), Box::new(den))
            }
            Tok::Sqrt => {
                if let Some(Tok::Open('[')) = self.peek() {
                    self.pos += 1;
                    let n = self.expr()?;
                    match self.next()? {
                        Tok::Close(_) => {}
                        _ => return None,
                    }
                    let x = self.arg()?;
                    Expr::Root(Box::new(n), Box::new(x))
                } else {
                    Expr::Root(Box::new(Expr::Num(2.0)), Box::new(self.arg()?))
                }
            }
            Tok::Func(name) => {
                // sin^2 x, sin(x), sin x
                let mut power = None;
                if let Some(Tok::Op('^')) = self.peek() {
                    self.pos += 1;
                    power = Some(self.atom()?);
                }
                let arg = if let Some(Tok::Open(_)) = self.peek() {
                    self.atom()?
                } else {
                    self.power()?
                };
                let f = Expr::Func(name, Box::new(arg));
                match power {
                    Some(p) => Expr::Pow(Box::new(f), Box::new(p)),
                    None => f,
                }
            }
            _ => return None,
        };
        self.depth -= 1;
        Some(e)
    }
}

/// Parses an expression; `None` if it is not one.
pub fn parse(text: &str) -> Option<Expr> {
    if text.len() > MAX_LEN {
        return None;
    }
    let toks = lex(text)?;
    if toks.is_empty() {
        return None;
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.expr()?;
    (p.pos == p.toks.len()).then_some(e)
}

impl Expr {
    /// Free variables (every symbol but π, e and i).
    pub fn vars(&self, out: &mut BTreeSet<String>) {
        match self {
            Expr::Num(_) | Expr::Dec(_) => {}
            Expr::Sym(s) => {
                if !matches!(s.as_str(), "pi" | "e" | "i") {
                    out.insert(s.clone());
                }
            }
            Expr::Neg(a) | Expr::Func(_, a) | Expr::Fact(a) => a.vars(out),
            Expr::Add(a, b)
            | Expr::Sub(a, b)
            | Expr::Mul(a, b)
            | Expr::Div(a, b)
            | Expr::Pow(a, b)
            | Expr::Root(a, b) => {
                a.vars(out);
                b.vars(out);
            }
        }
    }

    /// Evaluates with variables bound by `env`.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<f64>) -> C {
        match self {
            Expr::Num(n) | Expr::Dec(n) => C::real(*n),
            Expr::Sym(s) => match s.as_str() {
                "pi" => C::real(std::f64::consts::PI),
                "e" => C::real(std::f64::consts::E),
                "i" => C { re: 0.0, im: 1.0 },
                v => C::real(env(v).unwrap_or(f64::NAN)),
            },
            Expr::Neg(a) => C::real(0.0).sub(a.eval(env)),
            Expr::Add(a, b) => a.eval(env).add(b.eval(env)),
            Expr::Sub(a, b) => a.eval(env).sub(b.eval(env)),
            Expr::Mul(a, b) => a.eval(env).mul(b.eval(env)),
            Expr::Div(a, b) => a.eval(env).div(b.eval(env)),
            Expr::Pow(a, b) => a.eval(env).pow(b.eval(env)),
            Expr::Root(n, x) => {
                let (n, x) = (n.eval(env), x.eval(env));
                if n.is_real()
                    && x.is_real()
                    && x.re < 0.0
                    && n.re.fract() == 0.0
                    && (n.re as i64) % 2 == 1
                {
                    C::real(-(-x.re).powf(1.0 / n.re))
                } else {
                    x.pow(C::real(1.0).div(n))
                }
            }
            Expr::Fact(a) => {
                let v = a.eval(env);
                if v.is_real() && v.re >= 0.0 && v.re.fract() == 0.0 {
                    if v.re > 170.0 {
                        C::real(f64::INFINITY)
                    } else {
                        C::real((1..=v.re as u64).map(|k| k as f64).product())
                    }
                } else {
                    C::real(f64::NAN)
                }
            }
            Expr::Func(f, a) => {
                let x = a.eval(env);
                if !x.is_real() {
                    return match f.as_str() {
                        "exp" => x.exp(),
                        "ln" | "log" => x.ln(),
                        "sqrt" => x.pow(C::real(0.5)),
                        "abs" => C::real(x.abs()),
                        _ => C::real(f64::NAN),
                    };
                }
                let r = x.re;
                C::real(match f.as_str() {
                    "sin" => r.sin(),
                    "cos" => r.cos(),
                    "tan" => r.tan(),
                    "sec" => 1.0 / r.cos(),
                    "csc" => 1.0 / r.sin(),
                    "cot" => 1.0 / r.tan(),
                    "arcsin" => r.asin(),
                    "arccos" => r.acos(),
                    "arctan" => r.atan(),
                    "sinh" => r.sinh(),
                    "cosh" => r.cosh(),
                    "tanh" => r.tanh(),
                    "ln" => {
                        if r < 0.0 {
                            return x.ln();
                        }
                        r.ln()
                    }
                    "log" => {
                        if r < 0.0 {
                            return x.ln();
                        }
                        r.log10()
                    }
                    "exp" => r.exp(),
                    "abs" => r.abs(),
                    "sqrt" => {
                        if r < 0.0 {
                            return x.pow(C::real(0.5));
                        }
                        r.sqrt()
                    }
                    _ => f64::NAN,
                })
            }
        }
    }
}

/// Sample points for the free variables of identity tests (arbitrary, away from special values).
const POINTS: [f64; 5] = [0.731, 1.618, 2.2361, 0.4142, 2.9173];

/// Whether two values agree: relative tolerance `rel` (absolute `rel` near zero).
pub fn close(a: C, b: C, rel: f64) -> bool {
    if a.re.is_infinite() || b.re.is_infinite() {
        return a.re == b.re && (a.im - b.im).abs() <= rel;
    }
    let scale = a.abs().max(b.abs()).max(1.0);
    (a.re - b.re).abs() <= rel * scale && (a.im - b.im).abs() <= rel * scale
}

/// Decimal places to which a decimal answer is rounded before it is compared (Math-Verify's
/// `float_rounding` default: `1/3` equals `0.333333` but not `0.33`).
pub const FLOAT_ROUNDING: i32 = 6;

/// Whether `e` is a decimal literal, possibly negated: `0.33`, `-1.5e3`.
pub fn is_decimal(e: &Expr) -> bool {
    match e {
        Expr::Dec(_) => true,
        Expr::Neg(a) => is_decimal(a),
        _ => false,
    }
}

/// Whether two real values agree when both are rounded to `places` decimal places (ties to
/// even, as sympy's `round`); values too large for that to mean anything in f64 compare
/// relatively at 1e-15.
pub fn round_equal(a: f64, b: f64, places: i32) -> bool {
    let scale = 10f64.powi(places);
    if a.abs().max(b.abs()) * scale > 2f64.powi(52) {
        return close(C::real(a), C::real(b), 1e-15);
    }
    (a * scale).round_ties_even() == (b * scale).round_ties_even()
}

/// Whether two expressions are equal. When either one is a decimal literal and both are real
/// constants, after rounding both to [`FLOAT_ROUNDING`] places (Math-Verify's rule for floats);
/// other constants numerically at relative tolerance `rel`; expressions with free variables at
/// several points (probabilistic identity testing).
pub fn equivalent(a: &Expr, b: &Expr, rel: f64) -> bool {
    let mut vars = BTreeSet::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    let vars: Vec<String> = vars.into_iter().collect();
    if vars.len() > 8 {
        return false;
    }
    if vars.is_empty() && (is_decimal(a) || is_decimal(b)) {
        let (x, y) = (a.eval(&|_| None), b.eval(&|_| None));
        if x.is_real() && y.is_real() && x.re.is_finite() && y.re.is_finite() {
            return round_equal(x.re, y.re, FLOAT_ROUNDING);
        }
    }
    let mut compared = 0;
    for (k, base) in POINTS.iter().enumerate() {
        let env = |name: &str| {
            vars.iter()
                .position(|v| v == name)
                .map(|j| base + 0.377 * j as f64 + 0.05 * k as f64)
        };
        let (x, y) = (a.eval(&env), b.eval(&env));
        let (fx, fy) = (
            x.is_finite() || x.re.is_infinite(),
            y.is_finite() || y.re.is_infinite(),
        );
        if x.re.is_nan() && y.re.is_nan() {
            continue;
        }
        if !fx || !fy || !close(x, y, rel) {
            return false;
        }
        compared += 1;
        if vars.is_empty() {
            break;
        }
    }
    compared > 0
}

/// Whether `a = c·b` for a nonzero constant c, tested at several points of the free variables.
pub fn proportional(a: &Expr, b: &Expr, rel: f64) -> bool {
    let mut vars = BTreeSet::new();
    a.vars(&mut vars);
    b.vars(&mut vars);
    let vars: Vec<String> = vars.into_iter().collect();
    if vars.is_empty() || vars.len() > 8 {
        return false;
    }
    let mut ratio: Option<C> = None;
    for (k, base) in POINTS.iter().enumerate() {
        let env = |name: &str| {
            vars.iter()
                .position(|v| v == name)
                .map(|j| base + 0.377 * j as f64 + 0.05 * k as f64)
        };
        let (x, y) = (a.eval(&env), b.eval(&env));
        if !x.is_finite() || !y.is_finite() || y.abs() < 1e-12 {
            return false;
        }
        let r = x.div(y);
        match ratio {
            None => ratio = Some(r),
            Some(r0) if close(r0, r, rel) => {}
            _ => return false,
        }
    }
    ratio.is_some_and(|r| r.abs() > 1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(a: &str, b: &str) -> bool {
        equivalent(
            &parse(a).unwrap_or_else(|| panic!("parse {a}")),
            &parse(b).unwrap_or_else(|| panic!("parse {b}")),
            1e-6,
        )
    }

    #[test]
    fn arithmetic_and_latex() {
        assert!(eq("\\frac{1}{2}", "0.5"));
        assert!(eq("\\frac12", "1/2"));
        assert!(eq("3\\sqrt{2}", "\\sqrt{18}"));
        assert!(eq("\\sqrt[3]{-8}", "-2"));
        assert!(eq("2^{10}", "1024"));
        assert!(eq("i^5+i^{-25}+i^{45}", "i"));
        assert!(eq("\\frac{1}{3\\sqrt[3]{x}^2}", "\\frac{1}{3x^{2/3}}"));
        assert!(eq("2\\pi r", "2 r \\pi"));
        assert!(eq("10π", "10\\pi"));
        assert!(eq("(x+1)^2", "x^2+2x+1"));
        assert!(!eq("x+1", "x+2"));
        assert!(eq("5!", "120"));
        assert!(eq("1.5e3", "1500"));
        assert!(eq("-x^2", "-(x^2)"));
        assert!(eq("\\sin^2 x + \\cos^2 x", "1"));
    }

    #[test]
    fn rejects_garbage_and_deep_nesting() {
        assert!(parse("3 +").is_none());
        assert!(parse("#").is_none());
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep).is_none());
        assert!(parse(&"1+".repeat(3000)).is_none());
    }
}
