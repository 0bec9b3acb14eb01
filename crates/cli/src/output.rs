//! What the CLI shows while the library works: progress bars on a terminal, plain lines otherwise.

use rlvr_eval::EvalReport;
use rlvr_train::{Metrics, Reporter};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

/// A progress bar on a terminal (stderr), hidden otherwise.
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// One line with pass@K of an evaluation.
pub fn eval_line(label: &str, r: &EvalReport) -> String {
    let cells: Vec<String> = r
        .pass_at_k
        .iter()
        .map(|(k, p)| format!("pass@{k} {p:.3}"))
        .collect();
    format!(
        "{label}: {} held-out problems × {} samples: {} (mean@{} {:.3})",
        r.problems,
        r.samples,
        cells.join(", "),
        r.samples,
        r.mean_at_n
    )
}

/// How many `-v` were given (set once at start; `-v` adds phase timings to step lines).
pub static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// `1h02m`, `3m05s`, `12s`.
fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The one-line summary of a training step: the key metrics, the step's time and throughput,
/// the ETA of the run (when known) and, with `-v`, the time of each phase.
pub fn step_line(m: &Metrics, total: u64, eta: Option<std::time::Duration>) -> String {
    let mut line = format!(
        "step {}/{total}: reward {:.3} acc {:.3} kl {:.4} entropy {:.3} len {:.1} clipfrac {:.3} \
         grad {:.3} | {:.2}s {:.0} tok/s",
        m.step,
        m.value("reward/mean"),
        m.value("reward/accuracy"),
        m.value("loss/kl_ref"),
        m.value("conc/entropy"),
        m.value("rollout/response_len"),
        m.value("loss/clipfrac"),
        m.value("actor/grad_norm"),
        m.value("time/step"),
        m.value("rollout/tokens_per_s"),
    );
    if let Some(v) = m.get("val/pass@1") {
        line.push_str(&format!(
            " | val pass@1 {v:.3} mean@n {:.3}",
            m.value("val/mean@n")
        ));
    }
    if let Some(eta) = eta {
        line.push_str(&format!(" | eta {}", duration(eta)));
    }
    if VERBOSITY.load(Ordering::Relaxed) > 0 {
        let phases: Vec<String> = [
            "rollout",
            "score",
            "advantage",
            "old_stats",
            "make_experience",
            "update",
        ]
        .iter()
        .filter_map(|p| m.get(&format!("time/{p}")).map(|t| format!("{p} {t:.2}s")))
        .collect();
        if !phases.is_empty() {
            line.push_str(&format!(" | {}", phases.join(" ")));
        }
    }
    line
}

/// Prints a run's progress: one line per step with the key metrics and the ETA, and on a
/// terminal a bar below them with elapsed time and ETA. With [`Console::stoppable`], the first SIGINT/SIGTERM asks the run to stop after
/// its current step (with a checkpoint); a second one ends the process at once.
#[derive(Default)]
pub struct Console {
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
    /// When and at which step this process's part of the run started (for the ETA).
    started: std::cell::Cell<Option<(std::time::Instant, u64)>>,
    signal: Option<Arc<AtomicUsize>>,
    /// Printed once the run's folder exists (never before a validation error).
    banner: Option<String>,
}

impl Console {
    /// This console, printing `line` when the run's folder has been created.
    pub fn with_banner(self, line: String) -> Console {
        Console {
            banner: Some(line),
            ..self
        }
    }

    /// A console that also catches SIGINT and SIGTERM for a graceful stop.
    pub fn stoppable() -> anyhow::Result<Console> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        use signal_hook::flag;
        let which = Arc::new(AtomicUsize::new(0));
        let got = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Runs first: exits at once when a signal already arrived (the second one).
            flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&got))?;
            flag::register_usize(sig, Arc::clone(&which), sig as usize)?;
            flag::register(sig, Arc::clone(&got))?;
        }
        let seen = Arc::clone(&which);
        // Of a data-parallel job's ranks, rank 0 speaks for all.
        let speaks = rlvr_dist::WorldEnv::from_env().map_or(true, |e| e.rank == 0);
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let sig = seen.load(Ordering::SeqCst);
            if sig != 0 && !speaks {
                return;
            }
            if sig != 0 {
                let name = if sig as i32 == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                eprintln!(
                    "received {name}: finishing the current step and writing a checkpoint \
                     (send it again to quit at once)"
                );
                return;
            }
        });
        Ok(Console {
            signal: Some(which),
            ..Console::default()
        })
    }
}

impl Reporter for Console {
    fn message(&self, text: &str) {
        println!("{text}");
    }
    fn created(&self, _dir: &std::path::Path) {
        if let Some(line) = &self.banner {
            println!("{line}");
        }
    }
    fn evaluation(&self, label: &str, report: &EvalReport) {
        println!("{}", eval_line(label, report));
    }
    fn start(&self, step: u64, total: u64) {
        self.started.set(Some((std::time::Instant::now(), step)));
        let bar = progress_bar(total).with_position(step);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps, elapsed {elapsed}, eta {eta}",
        ) {
            bar.set_style(style);
        }
        *self.bar.borrow_mut() = Some(bar);
    }
    fn step(&self, m: &Metrics, total: u64) {
        let eta = self.started.get().and_then(|(t0, s0)| {
            let done = m.step.checked_sub(s0).filter(|d| *d > 0)?;
            Some(t0.elapsed() / done as u32 * total.saturating_sub(m.step) as u32)
        });
        let line = step_line(m, total, eta);
        match self.bar.borrow().as_ref() {
            // On a terminal every step line stays on screen above the bar.
            Some(bar) if !bar.is_hidden() => {
                bar.set_position(m.step);
                bar.println(line);
            }
            _ => println!("{line}"),
        }
    }
    fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
    fn stop_requested(&self) -> Option<i32> {
        let sig = self.signal.as_ref()?.load(Ordering::SeqCst);
        (sig != 0).then_some(sig as i32)
    }
}
