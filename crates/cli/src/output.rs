//! What the CLI shows while the library works: progress bars on a terminal, plain lines otherwise.

use rlvr_eval::EvalReport;
use rlvr_train::{Metrics, Reporter};
use std::io::IsTerminal;

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
/// otherwise.
#[derive(Default)]
pub struct Console {
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
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
}
