//! Rewards computed outside rlvr, without recompiling: the `command` verifier (a long-lived
//! subprocess speaking JSON lines, like verl's custom `compute_score` but in any language) and the
//! `http` verifier (a POST per batch, OpenRLHF's remote reward model convention).
//!
//! Wire format, the same for both: a request is a JSON array with one object per response,
//! `{"prompt", "response", "ground_truth", "data_source", "extra": {"id"}}`; the answer is a JSON
//! array of the same length whose items are a number (the score) or an object
//! `{"score": number, "outcome"?: "correct" | "incorrect" | "no-answer" | "gold-unparseable" |
//! "timed-out", "info"?: any}`. Without `outcome`, a score ≥ 1 counts as correct. A command gets one
//! request per line on stdin and answers one line on stdout.
//!
//! Each batch has a timeout and a bounded number of retries (a command is restarted for each);
//! then the batch fails with [`CoreError::Reward`] naming the program or URL and the cause: never
//! a hang, never a silent zero.

use documented::DocumentedFields;
use rlvr_core::{CoreError, Outcome, RewardInput, Verdict, Verifier, VerifierConfig};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The request body of a batch.
fn request(items: &[RewardInput<'_>]) -> serde_json::Value {
    serde_json::Value::Array(
        items
            .iter()
            .map(|i| {
                serde_json::json!({
                    "prompt": i.prompt,
                    "response": i.response,
                    "ground_truth": i.ground_truth,
                    "data_source": i.data_source,
                    "extra": {"id": i.id},
                })
            })
            .collect(),
    )
}

/// At most `n` characters of `s`, for error messages.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn outcome(name: &str) -> Option<Outcome> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Reads the answer to a batch of `n` items; an error says what is wrong with it.
pub fn parse_answer(answer: &serde_json::Value, n: usize) -> Result<Vec<Verdict>, String> {
    let items = answer.as_array().ok_or_else(|| {
        format!(
            "expected a JSON array of {n} scores, got {}",
            clip(&answer.to_string(), 120)
        )
    })?;
    if items.len() != n {
        return Err(format!(
            "answered {} scores for a batch of {n}",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(k, item)| {
            let (score, named) = match item {
                serde_json::Value::Number(x) => (x.as_f64(), None),
                serde_json::Value::Object(o) => (
                    o.get("score").and_then(|s| s.as_f64()),
                    o.get("outcome").and_then(|s| s.as_str()),
                ),
                _ => (None, None),
            };
            let score = score.filter(|s| s.is_finite()).ok_or_else(|| {
                format!(
                    "item {k}: expected a finite number or {{\"score\": number, ...}}, got {}",
                    clip(&item.to_string(), 80)
                )
            })?;
            let outcome = match named {
                Some(name) => outcome(name).ok_or_else(|| {
                    format!(
                        "item {k}: unknown outcome {name:?}; valid: correct, incorrect, \
                         no-answer, gold-unparseable, timed-out"
                    )
                })?,
                None if score >= 1.0 => Outcome::Correct,
                None => Outcome::Incorrect,
            };
            Ok(Verdict {
                outcome,
                score,
                extracted: None,
            })
        })
        .collect()
}

fn check_limits(what: &str, timeout_s: f64, retries: u32) -> rlvr_core::Result<()> {
    if !(timeout_s.is_finite() && timeout_s > 0.0 && timeout_s <= 86_400.0) {
        return Err(CoreError::invalid(
            format!("{what}.timeout_s"),
            timeout_s,
            "must be in (0, 86400] seconds",
        ));
    }
    if retries > 10 {
        return Err(CoreError::invalid(
            format!("{what}.retries"),
            retries,
            "must be at most 10",
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// command

/// Configuration of the `command` verifier.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct CommandConfig {
    /// The program and its arguments, e.g. ["python3", "my_reward.py"]; started once, kept
    /// running, restarted after a failure.
    pub cmd: Vec<String>,
    /// Seconds to wait for the answer to one batch.
    pub timeout_s: f64,
    /// Further attempts after a failed batch (the program is restarted for each).
    pub retries: u32,
    /// Working directory of the program; "" = rlvr's.
    pub cwd: String,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            cmd: Vec::new(),
            timeout_s: 60.0,
            retries: 2,
            cwd: String::new(),
        }
    }
}

rlvr_core::describe_fields!(CommandConfig);
rlvr_core::register!(
    verifier,
    "command",
    "a reward program: a long-lived subprocess answering JSON-lines batches (any language)",
    CommandConfig
);

#[typetag::serde(name = "command")]
impl VerifierConfig for CommandConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        if self.cmd.is_empty() || self.cmd[0].trim().is_empty() {
            return Err(CoreError::invalid(
                "command.cmd",
                format!("{:?}", self.cmd),
                "must name a program, e.g. [\"python3\", \"my_reward.py\"]",
            ));
        }
        check_limits("command", self.timeout_s, self.retries)?;
        let verifier = CommandVerifier {
            cfg: self.clone(),
            session: Mutex::new(None),
        };
        // Start it now: a program that cannot start fails the run before any expensive work.
        let session = verifier.start()?;
        if let Ok(mut guard) = verifier.session.lock() {
            *guard = Some(session);
        }
        Ok(Box::new(verifier))
    }
}

/// A thread that writes each received line to the program's stdin, until either side closes.
fn spawn_writer(mut stdin: ChildStdin) -> mpsc::Sender<String> {
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in rx {
            let ok = stdin
                .write_all(line.as_bytes())
                .and_then(|_| stdin.write_all(b"\n"))
                .and_then(|_| stdin.flush());
            if ok.is_err() {
                break;
            }
        }
    });
    tx
}

/// A running reward program.
struct Session {
    child: Child,
    /// Lines for its stdin, written by a thread (a program that stops reading cannot block us).
    to_stdin: mpsc::Sender<String>,
    lines: Receiver<std::io::Result<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Session {
    fn stderr_tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends: {}", clip(&tail, 400))
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `command` verifier.
pub struct CommandVerifier {
    cfg: CommandConfig,
    session: Mutex<Option<Session>>,
}

impl CommandVerifier {
    fn name(&self) -> String {
        format!("command `{}`", self.cfg.cmd.join(" "))
    }

    fn error(&self, message: String) -> CoreError {
        CoreError::Reward {
            verifier: self.name(),
            message,
        }
    }

    fn start(&self) -> rlvr_core::Result<Session> {
        let mut command = Command::new(&self.cfg.cmd[0]);
        command
            .args(&self.cfg.cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.cfg.cwd.is_empty() {
            command.current_dir(&self.cfg.cwd);
        }
        let mut child = command
            .spawn()
            .map_err(|e| self.error(format!("cannot start: {e}")))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            return Err(self.error("cannot open its stdin/stdout/stderr".into()));
        };
        let to_stdin = spawn_writer(stdin);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tracing::debug!(target: "rlvr::reward", "{line}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == 8 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
        Ok(Session {
            child,
            to_stdin,
            lines,
            stderr_tail,
        })
    }

    /// One attempt: send the batch, wait for its answer. Errors describe the failure.
    fn attempt(&self, session: &mut Session, line: &str, n: usize) -> Result<Vec<Verdict>, String> {
        if session.to_stdin.send(line.to_string()).is_err() {
            return Err(self.exit_message(session, "stopped reading its input"));
        }
        let timeout = Duration::from_secs_f64(self.cfg.timeout_s);
        match session.lines.recv_timeout(timeout) {
            Ok(Ok(answer)) => {
                let value: serde_json::Value = serde_json::from_str(&answer).map_err(|e| {
                    format!(
                        "answered malformed JSON ({e}): {:?}{}",
                        clip(&answer, 200),
                        session.stderr_tail()
                    )
                })?;
                parse_answer(&value, n)
            }
            Ok(Err(e)) => Err(format!("cannot read its answer ({e})")),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "did not answer a batch of {n} within {} s{}",
                self.cfg.timeout_s,
                session.stderr_tail()
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.exit_message(session, "closed its output"))
            }
        }
    }

    fn exit_message(&self, session: &mut Session, what: &str) -> String {
        // Give a dying program a moment to be reaped, so its exit status can be reported.
        let mut status = None;
        for _ in 0..20 {
            if let Ok(Some(s)) = session.child.try_wait() {
                status = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let status = status.map_or("it is still running".to_string(), |s| format!("it {s}"));
        format!("{what}: {status}{}", session.stderr_tail())
    }
}

impl Verifier for CommandVerifier {
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let item = RewardInput {
            prompt: "",
            response,
            ground_truth,
            data_source: "",
            id: "",
        };
        match self.verify_batch(&[item]) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            result => {
                tracing::error!("{}: {:?}", self.name(), result.err());
                Verdict::new(Outcome::TimedOut, None)
            }
        }
    }

    fn verify_batch(&self, items: &[RewardInput<'_>]) -> rlvr_core::Result<Vec<Verdict>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let line = request(items).to_string();
        let mut guard = self
            .session
            .lock()
            .map_err(|_| self.error("a previous batch panicked".into()))?;
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            if guard.is_none() {
                match self.start() {
                    Ok(s) => *guard = Some(s),
                    Err(e) => {
                        last = e.to_string();
                        continue;
                    }
                }
            }
            let Some(session) = guard.as_mut() else {
                continue;
            };
            match self.attempt(session, &line, items.len()) {
                Ok(verdicts) => return Ok(verdicts),
                Err(e) => {
                    tracing::warn!(
                        "{}: attempt {} of {}: {e}",
                        self.name(),
                        attempt + 1,
                        self.cfg.retries + 1
                    );
                    last = e;
                    // The program may be out of step with us: start afresh.
                    *guard = None;
                }
            }
        }
        Err(self.error(format!(
            "{last} (gave up after {} attempt{})",
            self.cfg.retries + 1,
            if self.cfg.retries == 0 { "" } else { "s" }
        )))
    }
}

// ------------------------------------------------------------------------------------------------
// http

/// Configuration of the `http` verifier.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// URL that each batch is POSTed to as JSON (http only), e.g. "http://127.0.0.1:8000/score".
    pub url: String,
    /// Seconds to wait for the answer to one batch.
    pub timeout_s: f64,
    /// Further attempts after a failed request.
    pub retries: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            url: String::new(),
            timeout_s: 60.0,
            retries: 2,
        }
    }
}

rlvr_core::describe_fields!(HttpConfig);
rlvr_core::register!(
    verifier,
    "http",
    "a reward service: each batch is POSTed as JSON to a URL (remote reward model convention)",
    HttpConfig
);

#[typetag::serde(name = "http")]
impl VerifierConfig for HttpConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        if !self.url.starts_with("http://") {
            return Err(CoreError::invalid(
                "http.url",
                format!("{:?}", self.url),
                "must be an http:// URL (https is not built in: put a local proxy in front)",
            ));
        }
        check_limits("http", self.timeout_s, self.retries)?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs_f64(self.timeout_s))
            .build();
        Ok(Box::new(HttpVerifier {
            cfg: self.clone(),
            agent,
        }))
    }
}

/// The `http` verifier.
pub struct HttpVerifier {
    cfg: HttpConfig,
    agent: ureq::Agent,
}

impl HttpVerifier {
    fn attempt(&self, body: &serde_json::Value, n: usize) -> Result<Vec<Verdict>, String> {
        let answer = match self.agent.post(&self.cfg.url).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(format!("answered HTTP {code}: {}", clip(&text, 200)));
            }
            Err(e) => return Err(format!("request failed: {e}")),
        };
        let text = answer
            .into_string()
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("answered malformed JSON ({e}): {:?}", clip(&text, 200)))?;
        parse_answer(&value, n)
    }
}

impl Verifier for HttpVerifier {
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let item = RewardInput {
            prompt: "",
            response,
            ground_truth,
            data_source: "",
            id: "",
        };
        match self.verify_batch(&[item]) {
            Ok(mut v) if v.len() == 1 => v.remove(0),
            result => {
                tracing::error!("http {}: {:?}", self.cfg.url, result.err());
                Verdict::new(Outcome::TimedOut, None)
            }
        }
    }

    fn verify_batch(&self, items: &[RewardInput<'_>]) -> rlvr_core::Result<Vec<Verdict>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let body = request(items);
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            match self.attempt(&body, items.len()) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!(
                        "http {}: attempt {} of {}: {e}",
                        self.cfg.url,
                        attempt + 1,
                        self.cfg.retries + 1
                    );
                    last = e;
                }
            }
        }
        Err(CoreError::Reward {
            verifier: format!("http {}", self.cfg.url),
            message: format!("{last} (gave up after {} attempts)", self.cfg.retries + 1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        let ok = parse_answer(
            &serde_json::json!([1, {"score": 0.5}, {"score": 0, "outcome": "no-answer"}]),
            3,
        );
        let v = ok.expect("valid answer");
        assert_eq!(v[0].outcome, Outcome::Correct);
        assert_eq!(v[1].score, 0.5);
        assert_eq!(v[1].outcome, Outcome::Incorrect);
        assert_eq!(v[2].outcome, Outcome::NoAnswer);
        assert!(parse_answer(&serde_json::json!([1, 2]), 3)
            .unwrap_err()
            .contains("answered 2 scores for a batch of 3"));
        assert!(parse_answer(&serde_json::json!({"scores": [1]}), 1)
            .unwrap_err()
            .contains("expected a JSON array"));
        assert!(parse_answer(&serde_json::json!(["x"]), 1)
            .unwrap_err()
            .contains("item 0"));
        assert!(
            parse_answer(&serde_json::json!([{"score": 1, "outcome": "maybe"}]), 1)
                .unwrap_err()
                .contains("unknown outcome")
        );
    }
}
