//! CPU threads that share the machine (docs/performance.md). libtorch's OpenMP threads spin at
//! every barrier; when other processes keep the cores busy, a descheduled thread stalls all the
//! others and a run slows by an order of magnitude (measured: 5.7× with 2 threads and two busy
//! processes on 2 cores, 2.5× with 1 thread). So the thread count follows the cores that other
//! processes leave free, measured from `/proc/stat` minus this process's own CPU time, at the
//! start and again between steps. `OMP_NUM_THREADS` or a configured count pins it.

use std::time::Duration;

/// CPU time counters, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// All CPUs, all states.
    total: u64,
    /// All CPUs, busy states (not idle / iowait).
    busy: u64,
    /// This process (user + system).
    own: u64,
}

fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = own_stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let own = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Sample {
        total,
        busy: total.saturating_sub(idle),
        own,
    })
}

/// Cores kept busy by other processes between two samples.
fn others_busy(a: Sample, b: Sample, online: usize) -> Option<f64> {
    let total = b.total.checked_sub(a.total)? as f64;
    if total <= 0.0 {
        return None;
    }
    let per_core = total / online as f64;
    let busy = b.busy.saturating_sub(a.busy) as f64 / per_core;
    let own = b.own.saturating_sub(a.own) as f64 / per_core;
    Some((busy - own).max(0.0))
}

/// Threads for `cores` usable cores when others keep `others` cores busy: the free cores, at
/// least one.
pub fn threads_for(cores: usize, others: f64) -> usize {
    let taken = others.round() as usize;
    cores.saturating_sub(taken).clamp(1, cores.max(1))
}

/// The intra-op thread policy of a run.
#[derive(Debug)]
pub struct CpuThreads {
    fixed: Option<usize>,
    cores: usize,
    online: usize,
    last: Option<Sample>,
    current: usize,
}

impl CpuThreads {
    /// `setting` threads, or automatic when 0 (unless `OMP_NUM_THREADS` is set).
    pub fn new(setting: usize) -> CpuThreads {
        let env = std::env::var("OMP_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let online = std::fs::read_to_string("/proc/stat")
            .map(|s| {
                s.lines()
                    .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                    .count()
            })
            .unwrap_or(cores)
            .max(1);
        CpuThreads {
            fixed: (setting > 0).then_some(setting).or(env),
            cores,
            online,
            last: None,
            current: tch::get_num_threads().max(1) as usize,
        }
    }

    /// Threads in use.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Chooses the thread count from a short look (`probe`) at the machine's load.
    pub fn start(&mut self, probe: Duration) -> usize {
        if let Some(n) = self.fixed {
            return self.set(n);
        }
        let a = sample();
        std::thread::sleep(probe);
        self.last = sample();
        match (a, self.last) {
            (Some(a), Some(b)) => match others_busy(a, b, self.online) {
                Some(o) => self.set(threads_for(self.cores, o)),
                None => self.current,
            },
            _ => self.current,
        }
    }

    /// Re-chooses from the load since the last call (call between steps); returns the new count
    /// when it changed.
    pub fn adjust(&mut self) -> Option<usize> {
        if self.fixed.is_some() {
            return None;
        }
        let now = sample()?;
        let before = self.last.replace(now)?;
        let n = threads_for(self.cores, others_busy(before, now, self.online)?);
        (n != self.current).then(|| self.set(n))
    }

    fn set(&mut self, n: usize) -> usize {
        tch::set_num_threads(n as i32);
        self.current = n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_cores_at_least_one() {
        assert_eq!(threads_for(2, 0.05), 2);
        assert_eq!(threads_for(2, 0.9), 1);
        assert_eq!(threads_for(2, 2.0), 1);
        assert_eq!(threads_for(16, 3.2), 13);
        assert_eq!(threads_for(1, 0.0), 1);
    }

    #[test]
    fn own_work_is_not_counted_as_load() {
        let a = Sample {
            total: 1000,
            busy: 100,
            own: 0,
        };
        // 2 cores, 1000 ticks elapsed in all: this process used 500 (one core), nobody else.
        let b = Sample {
            total: 2000,
            busy: 600,
            own: 500,
        };
        assert!(others_busy(a, b, 2).unwrap() < 1e-9);
        // Another process also kept one core busy.
        let c = Sample {
            total: 2000,
            busy: 1100,
            own: 500,
        };
        assert!((others_busy(a, c, 2).unwrap() - 1.0).abs() < 1e-9);
    }
}
