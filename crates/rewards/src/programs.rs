//! Rewards computed outside rlvr, without recompiling: the `command` verifier (a long-lived
//! subprocess speaking JSON lines, like verl's custom `compute_score` but in any language) and the
//! `http` verifier (a POST per batch, OpenRLHF's remote reward model convention).
//!
//! Wire format, the same for both: a request is a JSON array with one object per response,
//! `{"prompt", "response", "ground_truth", "data_source", "extra": {"id", …the row's
//! `extra_info` fields}}`; the answer is a JSON
//! array of the same length whose items are a number (the score) or an object
//! `{"score": number, "outcome"?: "correct" | "incorrect" | "no-answer" | "gold-unparseable" |
//! "timed-out", "info"?: any, "id"?: the item's `extra.id`}`. Without `outcome`, a score ≥ 1 counts
//! as correct; a score must fit a 32-bit float; an item that carries an `id` must answer the item
//! of that id. A command gets one request per line on stdin and answers one line on stdout: stdout
//! is for answers only (blank lines are skipped), logs go to stderr. A line that answers no batch
//! (a log line after an answer, a second answer) is a protocol error that stops the run, never a
//! score for the next batch.
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

/// An item's `extra`: the row's `extra_info` (its fields, when it is an object; else under
/// `extra_info`) and the item's `id`.
fn extra(item: &RewardInput<'_>) -> serde_json::Value {
    let mut extra = match item.extra_info {
        Some(serde_json::Value::Object(o)) => o.clone(),
        Some(other) => [("extra_info".to_string(), other.clone())]
            .into_iter()
            .collect(),
        None => serde_json::Map::new(),
    };
    extra.insert("id".into(), item.id.into());
    serde_json::Value::Object(extra)
}

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
                    "extra": extra(i),
                    "extra_info": i.extra_info,
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

/// The last `n` characters of `s` (a log's end holds what matters: the exception line).
fn clip_start(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        format!("…{}", s.chars().skip(count - n).collect::<String>())
    }
}

fn outcome(name: &str) -> Option<Outcome> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Reads the answer to a batch of `n` items; an error says what is wrong with it. `ids`, when
/// given, are the items' `extra.id`s: an answer item that carries an `id` must carry its own.
pub fn parse_answer(
    answer: &serde_json::Value,
    n: usize,
    ids: Option<&[&str]>,
) -> Result<Vec<Verdict>, String> {
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
                serde_json::Value::Object(o) => {
                    check_id(k, o, ids)?;
                    (
                        o.get("score").and_then(|s| s.as_f64()),
                        o.get("outcome").and_then(|s| s.as_str()),
                    )
                }
                _ => (None, None),
            };
            let score = score.filter(|s| s.is_finite()).ok_or_else(|| {
                format!(
                    "item {k}: expected a finite number or {{\"score\": number, ...}}, got {}",
                    clip(&item.to_string(), 80)
                )
            })?;
            if score.abs() > f64::from(f32::MAX) {
                return Err(format!(
                    "item {k}: score {score:e} is out of range (at most {:e} in magnitude: scores \
                     are 32-bit floats)",
                    f32::MAX
                ));
            }
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

/// An answer item's `id` (or `extra.id`), when it carries one, must be the id of item `k`.
fn check_id(
    k: usize,
    item: &serde_json::Map<String, serde_json::Value>,
    ids: Option<&[&str]>,
) -> Result<(), String> {
    let given = item
        .get("id")
        .or_else(|| item.get("extra").and_then(|e| e.get("id")));
    let (Some(given), Some(ids)) = (given, ids) else {
        return Ok(());
    };
    let expected = ids.get(k).copied().unwrap_or_default();
    if given.as_str() != Some(expected) {
        return Err(format!(
            "item {k} answers id {given} but item {k} of the batch has id {expected:?}: answers \
             must come in the order of the request"
        ));
    }
    Ok(())
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
        start_command(self.clone(), format!("command `{}`", self.cmd.join(" ")))
    }
}

/// A started [`CommandVerifier`]: a program that cannot start fails the run before any
/// expensive work.
fn start_command(cfg: CommandConfig, label: String) -> rlvr_core::Result<Box<dyn Verifier>> {
    let verifier = CommandVerifier {
        cfg,
        session: Mutex::new(None),
        label,
    };
    let session = verifier.start()?;
    if let Ok(mut guard) = verifier.session.lock() {
        *guard = Some(session);
    }
    Ok(Box::new(verifier))
}

// python-function

/// The adapter that runs a verl reward file under the command protocol.
const VERL_ADAPTER: &str = include_str!("verl_adapter.py");

/// Configuration of the `python-function` verifier: a verl reward file used unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, DocumentedFields)]
#[serde(default, deny_unknown_fields)]
pub struct PythonFunctionConfig {
    /// The Python file defining the function (verl's `custom_reward_function.path`).
    pub path: String,
    /// The function, called as verl calls it: `f(data_source=, solution_str=, ground_truth=,
    /// extra_info=)` → a number, or a dict with "score" (verl's `custom_reward_function.name`).
    pub function: String,
    /// The Python interpreter.
    pub python: String,
    /// Seconds to wait for the answer to one batch.
    pub timeout_s: f64,
    /// Further attempts after a failed batch (the interpreter is restarted for each).
    pub retries: u32,
}

impl Default for PythonFunctionConfig {
    fn default() -> Self {
        PythonFunctionConfig {
            path: String::new(),
            function: "compute_score".into(),
            python: "python3".into(),
            timeout_s: 60.0,
            retries: 2,
        }
    }
}

rlvr_core::describe_fields!(PythonFunctionConfig);
rlvr_core::register!(
    verifier,
    "python-function",
    "a verl reward file unchanged: compute_score(data_source, solution_str, ground_truth, extra_info)",
    PythonFunctionConfig
);

#[typetag::serde(name = "python-function")]
impl VerifierConfig for PythonFunctionConfig {
    fn build(&self) -> rlvr_core::Result<Box<dyn Verifier>> {
        if !std::path::Path::new(&self.path).is_file() {
            return Err(CoreError::invalid(
                "python-function.path",
                format!("{:?}", self.path),
                "must name a Python file defining the reward function",
            ));
        }
        check_limits("python-function", self.timeout_s, self.retries)?;
        let cfg = CommandConfig {
            cmd: vec![
                self.python.clone(),
                "-c".into(),
                VERL_ADAPTER.into(),
                self.path.clone(),
                self.function.clone(),
            ],
            timeout_s: self.timeout_s,
            retries: self.retries,
            cwd: String::new(),
        };
        start_command(
            cfg,
            format!("python-function `{}:{}`", self.path, self.function),
        )
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
    /// The thread reading stderr (finished once the program's stderr is closed).
    stderr_reader: std::thread::JoinHandle<()>,
}

impl Session {
    /// Waits (at most a second) until the program's stderr has been read to its end, so a
    /// program that just exited is reported with its last words (a traceback's exception line
    /// comes last).
    fn drain_stderr(&self) {
        let start = std::time::Instant::now();
        while !self.stderr_reader.is_finished() && start.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr_tail(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends: {}", clip_start(&tail, 600))
        }
    }
}

impl Drop for Session {
    /// Ends the program and everything it started (its process group), so no child of a reward
    /// program outlives the run.
    fn drop(&mut self) {
        if let Ok(pgid) = i32::try_from(self.child.id()) {
            // SAFETY: signalling a process group this verifier created; no memory is touched.
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why an attempt at a batch failed: worth another attempt with a restarted program, or a broken
/// protocol that no restart repairs.
enum Failure {
    Retry(String),
    Protocol(String),
}

/// How often a program that has not answered yet is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(100);

/// What stdout is for, said with every protocol error.
const STDOUT_RULE: &str = "stdout is for answers only, one JSON line per batch; write logs to \
                           stderr";

/// The `command` verifier.
pub struct CommandVerifier {
    cfg: CommandConfig,
    session: Mutex<Option<Session>>,
    /// How errors name it (`command `python3 r.py``, `python-function `f.py:compute_score``).
    label: String,
}

impl CommandVerifier {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn error(&self, message: String) -> CoreError {
        CoreError::Reward {
            verifier: self.name(),
            message,
        }
    }

    fn start(&self) -> rlvr_core::Result<Session> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(&self.cfg.cmd[0]);
        command
            .args(&self.cfg.cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: the run can end the program and all its children.
            .process_group(0);
        if !self.cfg.cwd.is_empty() {
            command.current_dir(&self.cfg.cwd);
        }
        let mut child = command.spawn().map_err(|e| {
            let message = format!("cannot start: {e}");
            match e.kind() {
                // A program that is not there (or not executable) is a configuration error.
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                    CoreError::Input(format!("reward {}: {message}", self.name()))
                }
                _ => self.error(message),
            }
        })?;
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
        let stderr_reader = std::thread::spawn(move || {
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
            stderr_reader,
        })
    }

    /// One attempt: check that nothing is left over from earlier batches, send the batch, wait
    /// for its answer (skipping blank lines, noticing an exit of the program at once).
    fn attempt(
        &self,
        session: &mut Session,
        line: &str,
        ids: &[&str],
    ) -> Result<Vec<Verdict>, Failure> {
        let n = ids.len();
        loop {
            match session.lines.try_recv() {
                Ok(Ok(stale)) if stale.trim().is_empty() => continue,
                Ok(Ok(stale)) => {
                    return Err(Failure::Protocol(format!(
                        "printed a line that answers no batch: {:?} (after its answer to the \
                         previous batch); {STDOUT_RULE}{}",
                        clip(&stale, 200),
                        session.stderr_tail()
                    )))
                }
                _ => break,
            }
        }
        if session.to_stdin.send(line.to_string()).is_err() {
            return Err(Failure::Retry(
                self.exit_message(session, "stopped reading its input"),
            ));
        }
        let timeout = Duration::from_secs_f64(self.cfg.timeout_s);
        let deadline = std::time::Instant::now() + timeout;
        let answer = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Failure::Retry(format!(
                    "did not answer a batch of {n} within {} s{}",
                    self.cfg.timeout_s,
                    session.stderr_tail()
                )));
            }
            match session.lines.recv_timeout(left.min(EXIT_POLL)) {
                Ok(Ok(l)) if l.trim().is_empty() => continue,
                Ok(Ok(l)) => break l,
                Ok(Err(e)) => return Err(Failure::Retry(format!("cannot read its answer ({e})"))),
                Err(RecvTimeoutError::Timeout) => {
                    // A child that keeps stdout open must not hide the program's exit.
                    if let Ok(Some(_)) = session.child.try_wait() {
                        return Err(Failure::Retry(
                            self.exit_message(session, "exited without answering"),
                        ));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Failure::Retry(
                        self.exit_message(session, "closed its output"),
                    ))
                }
            }
        };
        let value: serde_json::Value = serde_json::from_str(&answer).map_err(|e| {
            Failure::Retry(format!(
                "answered malformed JSON ({e}): {:?}; {STDOUT_RULE}{}",
                clip(&answer, 200),
                session.stderr_tail()
            ))
        })?;
        parse_answer(&value, n, Some(ids)).map_err(Failure::Retry)
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
        if status.is_some() {
            session.drain_stderr();
        }
        let status = status.map_or("it is still running".to_string(), |s| {
            format!("it ended ({s})")
        });
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
            extra_info: None,
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
        let ids: Vec<&str> = items.iter().map(|i| i.id).collect();
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
            match self.attempt(session, &line, &ids) {
                Ok(verdicts) => return Ok(verdicts),
                Err(Failure::Protocol(e)) => {
                    *guard = None;
                    return Err(self.error(e));
                }
                Err(Failure::Retry(e)) => {
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
            .redirects(0)
            .build();
        Ok(Box::new(HttpVerifier {
            cfg: self.clone(),
            agent,
        }))
    }
}

/// A failed HTTP request in one line: its kind and the innermost cause ("request failed
/// (Connection Failed): Connection refused (os error 111)"), not ureq's nested "Network Error:
/// Network Error: …".
pub fn transport_error(t: &ureq::Transport) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(inner) = cause.and_then(|c| c.source()) {
        cause = Some(inner);
    }
    let why = cause
        .map(|c| c.to_string())
        .or_else(|| t.message().map(str::to_string))
        .unwrap_or_default();
    format!("request failed ({}): {why}", t.kind())
}

/// The `http` verifier.
pub struct HttpVerifier {
    cfg: HttpConfig,
    agent: ureq::Agent,
}

impl HttpVerifier {
    fn attempt(&self, body: &serde_json::Value, ids: &[&str]) -> Result<Vec<Verdict>, String> {
        use std::io::Read;
        let answer = match self.agent.post(&self.cfg.url).send_json(body) {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                return Err(format!("answered HTTP {code}: {}", clip(&text, 200)));
            }
            Err(ureq::Error::Transport(t)) => return Err(transport_error(&t)),
        };
        let code = answer.status();
        if (300..400).contains(&code) {
            let to = answer.header("location").unwrap_or("?").to_string();
            return Err(format!(
                "answered HTTP {code}, a redirect to {to}; give that URL in `url` (redirects are \
                 not followed)"
            ));
        }
        let mut bytes = Vec::new();
        answer
            .into_reader()
            .take(MAX_ANSWER_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if bytes.len() as u64 > MAX_ANSWER_BYTES {
            return Err(format!(
                "answered more than {} MiB; an answer is one score per item",
                MAX_ANSWER_BYTES >> 20
            ));
        }
        let text = String::from_utf8_lossy(&bytes);
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("answered malformed JSON ({e}): {:?}", clip(&text, 200)))?;
        parse_answer(&value, ids.len(), Some(ids))
    }
}

/// The largest answer an `http` verifier reads.
const MAX_ANSWER_BYTES: u64 = 64 << 20;

impl Verifier for HttpVerifier {
    fn verify(&self, response: &str, ground_truth: &str) -> Verdict {
        let item = RewardInput {
            prompt: "",
            response,
            ground_truth,
            data_source: "",
            id: "",
            extra_info: None,
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
        let ids: Vec<&str> = items.iter().map(|i| i.id).collect();
        let mut last = String::new();
        for attempt in 0..=self.cfg.retries {
            match self.attempt(&body, &ids) {
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
            None,
        );
        let v = ok.expect("valid answer");
        assert_eq!(v[0].outcome, Outcome::Correct);
        assert_eq!(v[1].score, 0.5);
        assert_eq!(v[1].outcome, Outcome::Incorrect);
        assert_eq!(v[2].outcome, Outcome::NoAnswer);
        assert!(parse_answer(&serde_json::json!([1, 2]), 3, None)
            .unwrap_err()
            .contains("answered 2 scores for a batch of 3"));
        assert!(parse_answer(&serde_json::json!({"scores": [1]}), 1, None)
            .unwrap_err()
            .contains("expected a JSON array"));
        assert!(parse_answer(&serde_json::json!(["x"]), 1, None)
            .unwrap_err()
            .contains("item 0"));
        assert!(parse_answer(
            &serde_json::json!([{"score": 1, "outcome": "maybe"}]),
            1,
            None
        )
        .unwrap_err()
        .contains("unknown outcome"));
    }

    #[test]
    fn scores_beyond_f32_and_answers_for_other_items_are_refused() {
        for big in [1e200, -1e308, 3.5e38] {
            let e = parse_answer(&serde_json::json!([0.5, big]), 2, None).unwrap_err();
            assert!(e.contains("item 1") && e.contains("out of range"), "{e}");
        }
        let at_max = f64::from(f32::MAX);
        assert!(parse_answer(&serde_json::json!([at_max]), 1, None).is_ok());
        let ids = ["row-1", "row-2"];
        let swapped = serde_json::json!([{"score": 1, "id": "row-2"}, {"score": 0, "id": "row-1"}]);
        let e = parse_answer(&swapped, 2, Some(&ids)).unwrap_err();
        assert!(e.contains("item 0 answers id \"row-2\""), "{e}");
        let nested = serde_json::json!([{"score": 1, "extra": {"id": "row-1"}}, 0]);
        assert!(parse_answer(&nested, 2, Some(&ids)).is_ok());
    }
}
