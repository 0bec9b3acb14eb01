//! Progress of long, silent work (reading a large dataset, checking half a million prompts): a
//! log line every few seconds saying how far it got, nothing for work that ends sooner.

use std::time::{Duration, Instant};

/// How often a [`Ticker`] speaks.
pub const EVERY: Duration = Duration::from_secs(3);

/// Counts items of a named task and logs `what: N of TOTAL` (or `what: N`) every [`EVERY`].
#[derive(Debug)]
pub struct Ticker {
    every: Duration,
    what: String,
    total: Option<usize>,
    start: Instant,
    last: Instant,
    spoke: bool,
}

impl Ticker {
    /// A ticker for `what` (e.g. "reading data/train.jsonl"), of `total` items when known.
    pub fn new(what: impl Into<String>, total: Option<usize>) -> Ticker {
        Ticker::every(what, total, EVERY)
    }

    /// A ticker that speaks every `every` instead of [`EVERY`].
    pub fn every(what: impl Into<String>, total: Option<usize>, every: Duration) -> Ticker {
        let now = Instant::now();
        Ticker {
            every,
            what: what.into(),
            total,
            start: now,
            last: now,
            spoke: false,
        }
    }

    /// `done` items are finished; logs when [`EVERY`] has passed since the last line. Returns
    /// whether it logged.
    pub fn tick(&mut self, done: usize) -> bool {
        if self.last.elapsed() < self.every {
            return false;
        }
        self.last = Instant::now();
        self.spoke = true;
        let secs = self.start.elapsed().as_secs();
        match self.total {
            Some(total) => tracing::info!("{}: {done} of {total} ({secs} s)", self.what),
            None => tracing::info!("{}: {done} ({secs} s)", self.what),
        }
        true
    }

    /// The work ended with `done` items: said when the ticker has spoken before.
    pub fn finish(&self, done: usize) {
        if self.spoke {
            tracing::info!(
                "{}: {done} done in {:.1} s",
                self.what,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_speaks_only_after_its_interval() {
        let mut quiet = Ticker::new("fast work", Some(10));
        assert!(
            (0..10).all(|i| !quiet.tick(i)),
            "work shorter than the interval is silent"
        );
        let mut slow = Ticker::every("slow work", None, Duration::from_millis(20));
        assert!(!slow.tick(1));
        std::thread::sleep(Duration::from_millis(25));
        assert!(slow.tick(2));
        assert!(!slow.tick(3), "not again before the next interval");
    }
}
