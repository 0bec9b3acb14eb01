//! What the CLI shows while the library works: progress bars on a terminal, plain lines otherwise.

use rlvr_eval::EvalReport;
use rlvr_train::{Metrics, Reporter};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// The one-line summary of a training step.
pub fn step_line(m: &Metrics, total: u64) -> String {
    format!(
        "step {}/{total}: reward {:.3} entropy {:.3} clipfrac {:.3} grad {:.3}",
        m.step,
        m.value("reward/mean"),
        m.value("conc/entropy"),
        m.value("loss/clipfrac"),
        m.value("actor/grad_norm")
    )
}

/// Prints a run's progress: a bar with the latest step line on a terminal, one line per step
/// otherwise. With [`Console::stoppable`], the first SIGINT/SIGTERM asks the run to stop after
/// its current step (with a checkpoint); a second one ends the process at once.
#[derive(Default)]
pub struct Console {
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
    signal: Option<Arc<AtomicUsize>>,
}

impl Console {
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
        std::thread::spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let sig = seen.load(Ordering::SeqCst);
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
    fn evaluation(&self, label: &str, report: &EvalReport) {
        println!("{}", eval_line(label, report));
    }
    fn start(&self, step: u64, total: u64) {
        *self.bar.borrow_mut() = Some(progress_bar(total).with_position(step));
    }
    fn step(&self, m: &Metrics, total: u64) {
        let line = step_line(m, total);
        match self.bar.borrow().as_ref() {
            Some(bar) if !bar.is_hidden() => {
                bar.set_position(m.step);
                bar.set_message(line);
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
