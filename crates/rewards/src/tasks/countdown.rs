//! Countdown arithmetic, a small reasoning task with several valid answers per problem that a
//! character-level transformer can learn on a CPU: given numbers and a target, write an
//! expression with + − × that uses each number exactly once and equals the target.
//! Prompt `3 5 7=22:`, answer e.g. `3*5+7`. Problems, splits and solutions come from a seed.

use documented::DocumentedFields;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rlvr_core::{CoreError, Outcome, Problem, Split, Task, TaskConfig, Verdict, Verifier};
use serde::{Deserialize, Serialize};

/// Configuration of the `countdown` task.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct CountdownConfig {
    /// How many numbers per problem (2 to 4).
    pub numbers: usize,
    /// Largest number (numbers are drawn from 1..=max_number).
    pub max_number: i64,
    /// Problems in the training split.
    pub train_size: usize,
    /// Problems in the held-out test split.
    pub test_size: usize,
    /// Seed of problem generation.
    pub seed: u64,
}

impl Default for CountdownConfig {
    fn default() -> Self {
        CountdownConfig {
            numbers: 3,
            max_number: 9,
            train_size: 1000,
            test_size: 200,
            seed: 0,
        }
    }
}

rlvr_core::describe_fields!(CountdownConfig);
rlvr_core::register!(
    task,
    "countdown",
    "countdown arithmetic: reach a target with each number once (several answers per problem)",
    CountdownConfig
);

/// All expressions over `nums` (each used once, any order) with + − ×, paired with their values
/// under the usual precedence (× before + and −).
pub fn expressions(nums: &[i64]) -> Vec<(String, i64)> {
    fn rec(used: &mut Vec<bool>, nums: &[i64], expr: String, out: &mut Vec<(String, i64)>) {
        if used.iter().all(|u| *u) {
            if let Some((v, _)) = eval(&expr) {
                out.push((expr, v));
            }
            return;
        }
        for i in 0..nums.len() {
            if used[i] {
                continue;
            }
            used[i] = true;
            for op in ['+', '-', '*'] {
                rec(used, nums, format!("{expr}{op}{}", nums[i]), out);
            }
            used[i] = false;
        }
    }
    let mut out = Vec::new();
    for i in 0..nums.len() {
        let mut used = vec![false; nums.len()];
        used[i] = true;
        rec(&mut used, nums, nums[i].to_string(), &mut out);
    }
    out
}

/// Evaluates a sum of products of non-negative integers (`3*5+7-2`); returns the value and the
/// numbers used, or `None` if malformed or overflowing.
pub fn eval(expr: &str) -> Option<(i64, Vec<i64>)> {
    let expr: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    if expr.is_empty() || expr.len() > 64 {
        return None;
    }
    let mut nums = Vec::new();
    let mut total: i64 = 0;
    let mut sign = 1i64;
    let mut term: Option<i64> = None;
    let mut cur = String::new();
    let flush_num = |cur: &mut String, term: &mut Option<i64>, nums: &mut Vec<i64>| -> Option<()> {
        let n: i64 = cur.parse().ok()?;
        nums.push(n);
        *term = Some(match term.take() {
            None => n,
            Some(t) => t.checked_mul(n)?,
        });
        cur.clear();
        Some(())
    };
    for c in expr.chars() {
        match c {
            '0'..='9' => cur.push(c),
            '*' => flush_num(&mut cur, &mut term, &mut nums)?,
            '+' | '-' => {
                flush_num(&mut cur, &mut term, &mut nums)?;
                total = total.checked_add(sign.checked_mul(term.take()?)?)?;
                sign = if c == '+' { 1 } else { -1 };
            }
            _ => return None,
        }
    }
    flush_num(&mut cur, &mut term, &mut nums)?;
    total = total.checked_add(sign.checked_mul(term?)?)?;
    Some((total, nums))
}

/// Ground truth text: `numbers|target`, e.g. `3 5 7|22`.
fn encode(nums: &[i64], target: i64) -> String {
    format!(
        "{}|{target}",
        nums.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn decode(gt: &str) -> Option<(Vec<i64>, i64)> {
    let (nums, target) = gt.split_once('|')?;
    let nums: Option<Vec<i64>> = nums.split_whitespace().map(|n| n.parse().ok()).collect();
    Some((nums?, target.trim().parse().ok()?))
}

/// Scores `expr` against `numbers|target`: correct if it uses exactly those numbers and equals
/// the target.
#[derive(Debug, Clone, Default)]
pub struct CountdownVerifier;

impl Verifier for CountdownVerifier {
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let Some((mut want, target)) = decode(ground_truth) else {
            return Verdict::new(Outcome::GoldUnparseable, None);
        };
        let answer = response
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        let answer: String = answer.chars().take(64).collect();
        let Some((value, mut used)) = eval(&answer) else {
            return Verdict::new(
                if answer.is_empty() {
                    Outcome::NoAnswer
                } else {
                    Outcome::Incorrect
                },
                Some(answer),
            );
        };
        want.sort_unstable();
        used.sort_unstable();
        let ok = value == target && used == want;
        Verdict::new(
            if ok {
                Outcome::Correct
            } else {
                Outcome::Incorrect
            },
            Some(answer),
        )
    }
}

/// The generated task.
#[derive(Debug, Clone)]
pub struct Countdown {
    train: Vec<Problem>,
    test: Vec<Problem>,
}

impl Countdown {
    /// Generates the problems of `cfg` (distinct number multisets and targets).
    pub fn new(cfg: &CountdownConfig) -> rlvr_core::Result<Countdown> {
        if !(2..=4).contains(&cfg.numbers) || !(2..=99).contains(&cfg.max_number) {
            return Err(CoreError::invalid(
                "task.numbers/max_number",
                format!("{}/{}", cfg.numbers, cfg.max_number),
                "need 2..=4 numbers and max_number in 2..=99",
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let want = cfg.train_size + cfg.test_size;
        let mut seen = std::collections::BTreeSet::new();
        let mut problems = Vec::new();
        let mut attempts = 0;
        while problems.len() < want && attempts < want * 50 {
            attempts += 1;
            let mut nums: Vec<i64> = (0..cfg.numbers)
                .map(|_| rand::Rng::random_range(&mut rng, 1..=cfg.max_number))
                .collect();
            nums.sort_unstable();
            let exprs = expressions(&nums);
            let (_, target) = exprs[rand::Rng::random_range(&mut rng, 0..exprs.len())].clone();
            if target < 0 || !seen.insert((nums.clone(), target)) {
                continue;
            }
            let id = format!("cd-{}", problems.len());
            let prompt = format!(
                "{}={target}:",
                nums.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            problems.push(Problem {
                id,
                prompt,
                ground_truth: encode(&nums, target),
                data_source: "countdown".into(),
                messages: Vec::new(),
                extra_info: None,
            });
        }
        if problems.len() < want {
            return Err(CoreError::invalid(
                "task.train_size+test_size",
                want,
                format!(
                    "only {} distinct problems exist for these settings",
                    problems.len()
                ),
            ));
        }
        problems.shuffle(&mut rng);
        let test = problems.split_off(cfg.train_size);
        Ok(Countdown {
            train: problems,
            test,
        })
    }
}

impl Task for Countdown {
    fn problems(&self, split: Split) -> rlvr_core::Result<Vec<Problem>> {
        Ok(match split {
            Split::Train => self.train.clone(),
            Split::Test => self.test.clone(),
        })
    }

    fn verifier(&self) -> Box<dyn Verifier> {
        Box::new(CountdownVerifier)
    }

    /// A valid answer drawn uniformly from all valid ones.
    fn solution(&self, problem: &Problem, seed: u64) -> Option<String> {
        let (nums, target) = decode(&problem.ground_truth)?;
        let valid: Vec<String> = expressions(&nums)
            .into_iter()
            .filter(|(_, v)| *v == target)
            .map(|(e, _)| e)
            .collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        valid.choose(&mut rng).cloned()
    }
}

#[typetag::serde(name = "countdown")]
impl TaskConfig for CountdownConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Task>> {
        Ok(Box::new(Countdown::new(self)?))
    }
}

/// Configuration of the `countdown` verifier.
#[derive(Debug, Clone, Default, Serialize, Deserialize, DocumentedFields)]
#[serde(default)]
pub struct CountdownVerifierConfig {}

rlvr_core::describe_fields!(CountdownVerifierConfig);
rlvr_core::register!(
    verifier,
    "countdown",
    "countdown: the expression uses exactly the given numbers and equals the target",
    CountdownVerifierConfig
);

#[typetag::serde(name = "countdown")]
impl rlvr_core::VerifierConfig for CountdownVerifierConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        Ok(Box::new(CountdownVerifier))
    }
}
