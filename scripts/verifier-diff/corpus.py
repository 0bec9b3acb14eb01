"""Seeded generator of the verifier's differential corpus, labelled by Math-Verify.

Development only (run through scripts/verifier-diff.sh): it reads the MATH *train* answers
(`reward_model.ground_truth.target` of a verl parquet file), writes for each sampled answer a few
predictions of one kind (an equivalent rewriting, a near miss, a chain-of-thought-like response),
labels every (gold, prediction) pair with Math-Verify, and stores the labelled pairs as compact
JSON: {"provenance": {...}, "categories": {...}, "cases": [[category, gold, prediction, label]]}.

Math-Verify is called the way verl's math_verify reward calls it: the gold answer is wrapped in
`\\boxed{}` and both sides go through `math_verify.parse` with its default extraction
configuration, then `math_verify.verify(gold, prediction)` with its default precision
(float_rounding=6). Golds that Math-Verify cannot parse at all are skipped (their label would
say nothing about the prediction).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from fractions import Fraction

CATEGORIES = {
    "boxed_sentence": "the gold answer boxed or stated inside a sentence",
    "frac_forms": "\\dfrac, \\tfrac, a/b and brace-less \\frac12 spellings of fractions",
    "decimal_fraction": "decimal spellings of fractions and fraction spellings of decimals, "
    "at and below Math-Verify's default precision",
    "leading_dot": "decimals written without the leading zero (.5, -.25)",
    "sets_lists": "reordered answer lists, joined by commas, `or`, `and`, `;` or set braces, "
    "as x = a or x = b",
    "intervals": "intervals and unions with \\left/\\right, spacing, reordered unions",
    "relations": "x = value, labelled answers (ratio = value), \\neq against !=",
    "units_percent_degrees": "a value with units, percent signs, degree marks",
    "radicals_pi": "equal radical and pi forms (\\sqrt{12} = 2\\sqrt3, 3\\pi = \\pi\\cdot 3), "
    "decimal approximations",
    "matrices": "pmatrix, bmatrix and \\left[\\begin{array}...\\right] spellings, changed entries",
    "near_miss": "wrong answers close to the gold: off by one, sign, swapped fraction, bracket "
    "type, a dropped element, another variable",
    "chain_of_thought": "reasoning text with intermediate numbers, several boxes, trailing chat "
    "tokens, unboxed final answers, digits inside words",
    "numeric": "countdown/gsm8k-style integer answers: ####, thousands separators, dollars, "
    "trailing zeros, off by one",
    "tuple_sets": "several tuples in any order, with or without set braces, one tuple changed",
    "joined_answers": "answers joined by `or` / `and` in a box or in text ($x=a$ and $x=b$)",
    "interval_endpoints": "interval endpoints as decimals against fractions, a changed bracket",
    "inequality_intervals": "inequality chains and one-sided inequalities against intervals "
    "(--deliberate only)",
    "labelled_equations": "a value given as a labelled equation (\\frac{NO}{BO} = v, AB = v, f(3) = v)",
    "strict_variables": "an expression in another variable (f(y) against f(x))",
    "trailing_check": "the answer stated, then a sanity check with other numbers (--deliberate "
    "only)",
    "unit_words": "values with units as words or \\text{}, dollars, square units",
}

INT = re.compile(r"^-?\d+$")
DEC = re.compile(r"^-?\d*\.\d+$")
FRAC = re.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(\d+)\}$")
SQRT = re.compile(r"^(\d*)\\sqrt\{(\d+)\}$")
PI = re.compile(r"^(\d*)\\pi$")
FRAC_PI = re.compile(r"^\\frac\{(\d*)\\pi\}\{(\d+)\}$")
CHAT_TOKENS = ["<|im_end|>", "</s>", "<|endoftext|>", "<|eot_id|>"]


def split_top(s: str, sep: str = ",") -> list[str]:
    """Splits at top-level separators (outside (), [], {})."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


def value(g: str) -> Fraction | None:
    """The exact value of an integer, decimal or plain fraction gold."""
    g = g.replace("{,}", "").replace(",", "") if re.fullmatch(r"-?\d{1,3}(\{?,\}?\d{3})+", g) else g
    if INT.match(g) or DEC.match(g):
        return Fraction(g)
    m = FRAC.match(g)
    if m and int(m.group(3)) != 0:
        v = Fraction(int(m.group(2)), int(m.group(3)))
        return -v if m.group(1) else v
    return None


def decimal(v: Fraction, digits: int) -> str:
    s = f"{float(v):.{digits}f}"
    return s


def frac_tex(v: Fraction, cmd: str = "\\frac") -> str:
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v.denominator == 1:
        return f"{sign}{v.numerator}"
    return f"{sign}{cmd}{{{v.numerator}}}{{{v.denominator}}}"


GROUPED = re.compile(r"^-?\d{1,3}(\{?,\}?\d{3})+(\.\d+)?$")


def is_list(g: str) -> bool:
    return (
        len(split_top(g)) > 1
        and not g.startswith(("(", "["))
        and "matrix" not in g
        and not GROUPED.match(g)
    )


def is_bracketed(g: str) -> bool:
    return len(g) > 2 and g[0] in "([" and g[-1] in ")]" and len(split_top(g[1:-1])) > 1


def sentence(rng: random.Random, ans: str) -> str:
    return rng.choice(
        [
            f"The final answer is $\\boxed{{{ans}}}$.",
            f"Therefore, the answer is $\\boxed{{{ans}}}$.",
            f"Thus the answer is \\boxed{{{ans}}}",
            f"So we get \\[\\boxed{{{ans}}}\\]",
            f"**Answer:** $\\boxed{{{ans}}}$",
            f"$\\boxed{{{ans}}}$",
            f"The answer is: $\\boxed{{ {ans} }}$",
        ]
    )


# ---------------------------------------------------------------------------------------------
# One function per category: gold -> list of predictions (empty when the gold does not fit).


def boxed_sentence(rng, g):
    return [sentence(rng, g), rng.choice([f"The answer is ${g}$.", f"Final answer: ${g}$"])]


def frac_forms(rng, g):
    if "\\frac" not in g:
        return []
    out = [g.replace("\\frac", rng.choice(["\\dfrac", "\\tfrac"]))]
    m = FRAC.match(g)
    if m:
        sign, a, b = m.groups()
        out.append(f"{sign}{a}/{b}")
        if len(a) == 1 and len(b) == 1 and not a.startswith("-"):
            out.append(f"{sign}\\frac{a}{b}")
        if sign:
            out.append(f"\\frac{{-{a}}}{{{b}}}")
    return [sentence(rng, p) for p in out]


def decimal_fraction(rng, g):
    v = value(g)
    if v is None or v.denominator == 1:
        return []
    if DEC.match(g):
        return [sentence(rng, frac_tex(v)), sentence(rng, frac_tex(v, "\\dfrac"))]
    return [
        sentence(rng, decimal(v, 6)),
        sentence(rng, decimal(v, rng.choice([8, 10]))),
        sentence(rng, decimal(v, rng.choice([2, 3]))),
        sentence(rng, decimal(v, 5)),
    ]


def leading_dot(rng, g):
    v = value(g)
    if v is None or v.denominator == 1 or abs(v) >= 1:
        return []
    short = decimal(v, 6).rstrip("0")
    dotted = short.replace("0.", ".", 1)
    out = [sentence(rng, dotted), f"The answer is {dotted}."]
    if v.denominator in (2, 4, 5, 8, 10, 20, 25, 50, 100):
        out.append(f"$x = {dotted}$")
    return out


def sets_lists(rng, g):
    if not is_list(g):
        return []
    items = split_top(g)
    shuffled = items[:]
    while shuffled == items and len(set(items)) > 1:
        rng.shuffle(shuffled)
    joins = [
        ", ".join(shuffled),
        " \\text{ or } ".join(shuffled),
        " \\text{ and } ".join(shuffled),
        "; ".join(shuffled),
        "\\{" + ", ".join(shuffled) + "\\}",
        " \\text{ or } ".join(f"x = {i}" for i in shuffled),
        ", ".join(f"x={i}" for i in shuffled),
    ]
    return [sentence(rng, j) for j in rng.sample(joins, 4)]


def intervals(rng, g):
    if not (is_bracketed(g) or "\\cup" in g):
        return []
    out = [
        "\\left" + g[0] + g[1:-1] + "\\right" + g[-1] if is_bracketed(g) else g,
        g.replace(",", ", "),
        g.replace("\\infty", "\\infty "),
    ]
    if "\\cup" in g:
        parts = [p.strip() for p in g.split("\\cup")]
        out.append(" \\cup ".join(reversed(parts)))
    return [sentence(rng, p) for p in out]


def relations(rng, g):
    v = value(g)
    out = []
    var = rng.choice(["x", "y", "n", "k", "a"])
    out.append(sentence(rng, f"{var} = {g}"))
    if v is not None:
        label = rng.choice(["\\text{ratio}", "\\text{area}", "P", "AB", "m+n", "f(3)"])
        out.append(sentence(rng, f"{label} = {g}"))
        out.append(f"We find that ${label} = {g}$.")
        out.append(sentence(rng, f"{var} \\neq {g}"))
    if "\\neq" in g:
        out.append(sentence(rng, g.replace("\\neq", "!=")))
    return out


def units_percent_degrees(rng, g):
    v = value(g)
    if v is None:
        return []
    unit = rng.choice(["cm", "meters", "\\text{ cm}^2", "\\mbox{ inches}", "\\text{ dollars}"])
    out = [
        sentence(rng, f"{g} {unit}"),
        f"The answer is {g} {rng.choice(['cm', 'meters', 'dollars', 'square units'])}.",
        sentence(rng, f"{g}^\\circ"),
        sentence(rng, f"{g}^{{\\circ}}"),
        sentence(rng, f"{g}\\%"),
    ]
    if v.denominator == 1:
        out.append(f"The angle measures ${g}°$.")
    return rng.sample(out, 4)


def radicals_pi(rng, g):
    out = []
    m = SQRT.match(g)
    if m:
        k = int(m.group(1) or 1)
        n = int(m.group(2))
        out += [
            f"\\sqrt{{{k * k * n}}}",
            f"{k if k > 1 else ''}\\sqrt {n}".strip(),
            f"\\sqrt{{{n}}} \\cdot {k}",
            f"{(k * k * n) ** 0.5:.6f}",
            f"{(k * k * n) ** 0.5:.2f}",
        ]
    m = PI.match(g)
    if m:
        k = int(m.group(1) or 1)
        out += [f"\\pi \\cdot {k}", f"{k} \\pi", f"{k}π", f"{k * 3.141592653589793:.6f}",
                f"{k * 3.14:.2f}"]
    m = FRAC_PI.match(g)
    if m:
        k, d = int(m.group(1) or 1), int(m.group(2))
        out += [f"\\frac{{{k}}}{{{d}}}\\pi", f"{k}\\pi/{d}", f"{k * 3.141592653589793 / d:.6f}"]
    if not out and ("\\sqrt" in g or "\\pi" in g):
        out += [g.replace("\\sqrt{", "\\sqrt {"), g.replace("\\pi", "\\pi ")]
        if re.fullmatch(r"\\sqrt\{\d+\}", g):
            out.append(g.replace("\\sqrt{", "").replace("}", "") + "^{1/2}")
    return [sentence(rng, p) for p in rng.sample(out, min(3, len(out)))]


def fix_matrix(g: str) -> str:
    """MATH's preprocessing turned row separators `\\\\` into `\\`: restore them."""
    return re.sub(r"\\(?=[-\d\\ ]|frac|sqrt|dfrac)(?!\\)", r"\\\\", g) if "\\\\" not in g else g


def matrices(rng, g):
    if "\\begin{pmatrix}" not in g:
        return []
    body = g.split("\\begin{pmatrix}", 1)[1].split("\\end{pmatrix}", 1)[0]
    rows = [[c.strip() for c in r.split("&")] for r in body.split("\\\\") if r.strip()]
    cols = max(len(r) for r in rows)

    def env(name, rs):
        return f"\\begin{{{name}}}" + " \\\\ ".join(" & ".join(r) for r in rs) + f"\\end{{{name}}}"

    changed = [r[:] for r in rows]
    i = rng.randrange(len(changed))
    j = rng.randrange(len(changed[i]))
    v = value(changed[i][j])
    changed[i][j] = str(v + 1) if v is not None and v.denominator == 1 else changed[i][j] + "+1"
    out = [
        env("bmatrix", rows),
        "\\left[" + f"\\begin{{array}}{{{'c' * cols}}}" + " \\\\ ".join(" & ".join(r) for r in rows)
        + "\\end{array}\\right]",
        env("pmatrix", [[c.replace("\\frac", "\\dfrac") for c in r] for r in rows]),
        env("pmatrix", changed),
    ]
    return [sentence(rng, p) for p in out]


def near_miss(rng, g):
    out = []
    v = value(g)
    if v is not None:
        if v.denominator == 1:
            out.append(str(v + rng.choice([1, -1])))
        if v != 0:
            out.append(frac_tex(-v) if not DEC.match(g) else decimal(-v, len(g.split(".")[1])))
        m = FRAC.match(g)
        if m and m.group(2) not in ("0", m.group(3)):
            sign, a, b = m.groups()
            out.append(f"{sign}\\frac{{{b}}}{{{a.lstrip('-')}}}")
    if is_bracketed(g):
        flip = {"(": "[", "[": "(", ")": "]", "]": ")"}
        out.append(flip[g[0]] + g[1:])
        out.append(g[:-1] + flip[g[-1]])
        items = split_top(g[1:-1])
        out.append(g[0] + ",".join(items[:-1]) + g[-1])
    if is_list(g):
        items = split_top(g)
        out.append(", ".join(items[:-1]))
    if re.search(r"(?<![a-z\\])x(?![a-z])", g):
        out.append(re.sub(r"(?<![a-z\\])x(?![a-z])", "y", g))
    if "\\sqrt" in g:
        out.append(g.replace("\\sqrt", "", 1))
    if "\\pi" in g:
        out.append(g.replace("\\pi", "", 1) or "1")
    return [sentence(rng, p) for p in out]


FILLERS = [
    "First, note that {a} + {b} = {c}.",
    "We have {a} apples and {b} oranges, so {c} pieces of fruit.",
    "Step 1: multiply {a} by {b} to get {p}.",
    "Substituting $x = {a}$ gives ${p}$.",
    "Checking with n = {b}: the sum is {c}.",
    "Let me double-check: {a} \\times {b} = {p}.",
]


def reasoning(rng, n=3):
    lines = []
    for _ in range(n):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        lines.append(rng.choice(FILLERS).format(a=a, b=b, c=a + b, p=a * b))
    return " ".join(lines)


def chain_of_thought(rng, g):
    wrong = str(rng.randint(2, 999))
    chat = rng.choice(CHAT_TOKENS)
    word = rng.choice(["abc123def", "v2ray", "x86", "mp3", "covid19"])
    out = [
        f"{reasoning(rng)}\n\nTherefore, the final answer is $\\boxed{{{g}}}$.{chat}",
        f"{reasoning(rng)} Initially I got $\\boxed{{{wrong}}}$, but that ignores a case. "
        f"{reasoning(rng, 1)} So the answer is $\\boxed{{{g}}}$.",
        f"{reasoning(rng)} So the answer is $\\boxed{{{g}}}$. {reasoning(rng, 1)} "
        f"Hmm, actually the answer is $\\boxed{{{wrong}}}$.",
        f"{reasoning(rng, 4)}\n\nThe answer is ${g}$.",
        f"{reasoning(rng)} The final answer is ${g}$. I hope it is correct.{chat}",
        f"{reasoning(rng)} Hence the result is $\\boxed{{{g}}}$ {word}",
        f"{reasoning(rng, 2)} The answer is {word}.",
    ]
    return rng.sample(out, 3)


def numeric(rng, _g):
    # GSM8K text writes dollars unescaped ("$1,234"). (Math-Verify 0.9.0 extracts nothing from a
    # LaTeX-escaped `\$1,234` in plain text; rlvr reads it as 1234: see CONFORMANCE.md.)
    n = rng.choice([rng.randint(0, 99), rng.randint(100, 9999), rng.randint(10_000, 2_000_000)])
    gold = str(n)
    grouped = f"{n:,}"
    forms = [
        f"{reasoning(rng, 2)}\n#### {grouped}",
        f"{reasoning(rng, 2)}\n#### {n}",
        f"She earns ${grouped} in total. The answer is \\boxed{{{grouped}}}.",
        f"The answer is ${grouped}.",
        f"The answer is {n}.00",
        f"{reasoning(rng, 1)} So she has {n} dollars left.",
        f"The answer is \\boxed{{{n + rng.choice([1, -1, 10])}}}.",
        f"{reasoning(rng, 1)}\n#### {n + 1}",
        f"$({rng.randint(1, 9)} + {rng.randint(1, 9)}) \\times {rng.randint(1, 9)} = {n}$",
    ]
    return [(gold, p) for p in rng.sample(forms, 3)]


GENERATORS = [
    boxed_sentence,
    frac_forms,
    decimal_fraction,
    leading_dot,
    sets_lists,
    intervals,
    relations,
    units_percent_degrees,
    radicals_pi,
    matrices,
    near_miss,
    chain_of_thought,
]


# ---------------------------------------------------------------------------------------------
# Synthetic categories (golds made here, the MATH gold unused): answer classes outside MATH train.


def tuple_sets(rng, _g):
    pts = [(rng.randint(-9, 9), rng.randint(-9, 9)) for _ in range(rng.randint(2, 3))]
    if len(set(pts)) < len(pts):
        return []
    tup = lambda t: f"({t[0]},{t[1]})"
    gold = ", ".join(tup(t) for t in pts)
    shuffled = pts[:]
    rng.shuffle(shuffled)
    changed = shuffled[:]
    changed[0] = (changed[0][0] + 1, changed[0][1])
    forms = [
        f"\\boxed{{{', '.join(tup(t) for t in shuffled)}}}",
        f"\\boxed{{\\{{{', '.join(tup(t) for t in shuffled)}\\}}}}",
        f"The solutions are $\\boxed{{{'; '.join(tup(t) for t in shuffled)}}}$.",
        f"\\boxed{{{', '.join(tup(t) for t in changed)}}}",
    ]
    return [(gold, p) for p in rng.sample(forms, 3)]


def joined_answers(rng, _g):
    a, b = rng.sample(range(-20, 21), 2)
    gold = f"{a}, {b}"
    forms = [
        f"\\boxed{{{b} \\text{{ or }} {a}}}",
        f"\\boxed{{{a} \\text{{ and }} {b}}}",
        f"The solutions are $x={a}$ and $x={b}$.",
        f"So $x = {b}$ or $x = {a}$.",
        f"\\boxed{{x={a} \\text{{ or }} x={b}}}",
        f"The solutions are $x={a}$ and $x={b + 1}$.",
        f"\\boxed{{{a}}}",
    ]
    return [(gold, p) for p in rng.sample(forms, 3)]


def interval_endpoints(rng, _g):
    lo = Fraction(rng.randint(-12, 4), rng.choice([2, 4, 5, 8]))
    hi = lo + Fraction(rng.randint(1, 12), rng.choice([2, 4, 5]))
    left, right = rng.choice("(["), rng.choice(")]")
    ftex = lambda v: frac_tex(v) if v.denominator != 1 else str(v.numerator)
    gold = f"{left}{ftex(lo)}, {ftex(hi)}{right}"
    dec = lambda v: decimal(v, 6)
    other = "[" if left == "(" else "("
    forms = [
        f"\\boxed{{{left}{dec(lo)}, {dec(hi)}{right}}}",
        f"\\boxed{{\\left{left}{dec(lo)}, {ftex(hi)}\\right{right}}}",
        f"The interval is ${left}{dec(lo)},{dec(hi)}{right}$.",
        f"\\boxed{{{other}{dec(lo)}, {dec(hi)}{right}}}",
    ]
    return [(gold, p) for p in rng.sample(forms, 3)]


def inequality_intervals(rng, _g):
    a = rng.randint(-9, 5)
    b = a + rng.randint(1, 9)
    forms = [
        (f"({a},{b})", f"\\boxed{{{a} < x < {b}}}"),
        (f"[{a},{b}]", f"\\boxed{{{a} \\le x \\le {b}}}"),
        (f"(-\\infty,{b}]", f"\\boxed{{x \\le {b}}}"),
        (f"({a},\\infty)", f"\\boxed{{x > {a}}}"),
        (f"(-\\infty,{a}) \\cup ({b},\\infty)", f"\\boxed{{x < {a} \\text{{ or }} x > {b}}}"),
        (f"({a},{b})", f"\\boxed{{{a} \\le x < {b}}}"),
    ]
    return rng.sample(forms, 3)


def labelled_equations(rng, g):
    v = value(g)
    if v is None:
        return []
    labels = ["\\frac{NO}{BO}", "AB", "m+n", "f(3)", "\\frac{[ABC]}{[DEF]}", "BC^2"]
    other = g + "+1" if v.denominator == 1 else frac_tex(v + 1)
    return [
        f"So $\\boxed{{{rng.choice(labels)} = {g}}}$.",
        f"Therefore ${rng.choice(labels)} = {g}$.",
        f"\\boxed{{{rng.choice(labels)} = {other}}}",
    ]


def strict_variables(rng, _g):
    c, d = rng.randint(1, 9), rng.randint(1, 9)
    var, other = rng.sample(["x", "y", "t", "n"], 2)
    gold = f"{c}{var}^2 + {d}"
    forms = [
        f"\\boxed{{{c}{other}^2 + {d}}}",
        f"\\boxed{{{d} + {c}{var}^2}}",
        f"\\boxed{{f({other}) = {c}{other}^2 + {d}}}",
        f"\\boxed{{{c}{var}^2 + {d + 1}}}",
    ]
    return [(gold, p) for p in rng.sample(forms, 3)]


def trailing_check(rng, _g):
    v = rng.randint(2, 300)
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    gold = str(v)
    forms = [
        f"The answer is ${v}$. As a sanity check, ${a} \\cdot {b} = {a * b}$.",
        f"The answer is $\\boxed{{{v}}}$. As a sanity check, ${a} \\cdot {b} = {a * b}$.",
        f"Therefore the answer is {v}. Let's verify: {a} * {b} = {a * b}.",
        f"The answer is ${v + 1}$. Check: ${a} + {b} = {a + b}$.",
    ]
    return [(gold, p) for p in rng.sample(forms, 3)]


def unit_words(rng, _g):
    v = rng.randint(1, 500)
    gold = str(v)
    forms = [
        f"The answer is {v} meters.",
        f"\\boxed{{{v} \\text{{ cm}}^2}}",
        f"\\boxed{{{v}\\text{{ square units}}}}",
        f"The total is \\boxed{{\\${v}}}.",
        f"\\boxed{{{v} \\mbox{{ inches}}}}",
        f"The answer is {v + 1} meters.",
    ]
    return [(gold, p) for p in rng.sample(forms, 3)]


SYNTHETIC = [
    tuple_sets,
    joined_answers,
    interval_endpoints,
    labelled_equations,
    strict_variables,
    unit_words,
]
# Classes where Math-Verify 0.9.0 is wrong and rlvr deliberately differs (CONFORMANCE.md): an
# inequality chain is its interval, and a stated answer is not replaced by a later sanity check.
# Written only with --deliberate (to measure the difference), never into the agreement corpus.
DELIBERATE = [inequality_intervals, trailing_check]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True, help="verl parquet file with MATH train rows")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-category", type=int, default=480, help="pairs per category (at most)")
    ap.add_argument(
        "--deliberate",
        action="store_true",
        help="also the classes where rlvr deliberately differs from Math-Verify",
    )
    args = ap.parse_args()

    import math_verify
    import pyarrow.parquet as pq
    from importlib.metadata import version

    rows = pq.read_table(args.data, columns=["reward_model"]).to_pylist()
    golds = sorted({r["reward_model"]["ground_truth"]["target"].strip() for r in rows} - {""})
    rng = random.Random(args.seed)
    golds = [fix_matrix(g) if "matrix" in g else g for g in golds]
    rng.shuffle(golds)

    gold_cache: dict[str, list] = {}

    def parsed_gold(g: str):
        if g not in gold_cache:
            gold_cache[g] = math_verify.parse("\\boxed{" + g + "}")
        return gold_cache[g]

    cases, skipped = [], 0
    for gen in GENERATORS + [numeric] + SYNTHETIC + (DELIBERATE if args.deliberate else []):
        name = gen.__name__
        made = 0
        order = golds[:]
        rng.shuffle(order)
        limit = args.per_category // 2 if gen in SYNTHETIC + DELIBERATE else args.per_category
        for g in order:
            if made >= limit:
                break
            preds = gen(rng, g)
            for item in preds:
                gold, pred = item if isinstance(item, tuple) else (g, item)
                if not parsed_gold(gold):
                    skipped += 1
                    continue
                label = bool(math_verify.verify(parsed_gold(gold), math_verify.parse(pred)))
                cases.append([name, gold, pred, label])
                made += 1
        print(f"{name}: {made}", file=sys.stderr)

    doc = {
        "provenance": {
            "generator": "scripts/verifier-diff/corpus.py",
            "seed": args.seed,
            "source": "MATH train answers (reward_model.ground_truth.target of math_train.parquet, "
            "SimKO repository data/), matrix row separators restored",
            "labeller": f"math-verify {version('math-verify')} (latex2sympy2_extended "
            f"{version('latex2sympy2_extended')}, sympy {version('sympy')}): "
            "verify(parse('\\\\boxed{' + gold + '}'), parse(prediction)), default options",
            "skipped_unparseable_gold_pairs": skipped,
        },
        "categories": CATEGORIES,
        "cases": cases,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    pos = sum(c[3] for c in cases)
    print(f"{len(cases)} pairs ({pos} equal, {len(cases) - pos} not) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
