//! Peak memory of one update step from logits, GRPO vs SimKO, chunked (as the trainer runs it)
//! and through plain autograd. Each algorithm runs in its own
//! child process (peak RSS, VmHWM, is per process) after a baseline that only builds the inputs;
//! prints the extra peak of each and the SimKO/GRPO ratio.
//! `cargo bench -p rlvr-algos --bench update_memory` (size via RLVR_BENCH_SIZE=BxTxV).

mod update;

use tch::{Kind, Tensor};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A buffer `[B·T, V]` for [`update::step`]'s gradient, where a benchmark needs the whole gradient to
/// exist at once (the memory bench: autograd's peak holds its gradient too). The trainer pushes
/// each chunk's gradient into the LM head instead of keeping it; a benchmark that allocated this
/// buffer per step would time the allocator (a fresh 2 GiB at the default size, which alternates
/// between reused and newly faulted pages from one step to the next).
fn grad_buffer(x: &update::Inputs) -> Tensor {
    let size = x.logits.size();
    Tensor::empty(
        [size[0] * size[1], size[2]],
        (Kind::Float, x.logits.device()),
    )
}

fn child(which: &str) {
    let (b, t, v) = update::size();
    let x = update::inputs(b, t, v);
    let base = peak_rss_mib();
    if let Some(preset) = which.strip_suffix("-autograd") {
        let algo = update::algorithm(preset);
        std::hint::black_box(update::step_autograd(&algo, &x));
    } else if which != "baseline" {
        let algo = update::algorithm(which);
        // The gradient buffer counts: autograd's peak holds its `[tokens, vocab]` gradient too.
        let grad = grad_buffer(&x);
        std::hint::black_box(update::step(&algo, &x, update::CHUNK, Some(&grad)));
    }
    println!("{}", peak_rss_mib() - base);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        child(args.get(pos + 1).map(String::as_str).unwrap_or("baseline"));
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // not a criterion bench: nothing to list or test
    }
    let exe = std::env::current_exe().expect("own path");
    let run = |which: &str| -> f64 {
        let out = std::process::Command::new(&exe)
            .args(["--child", which])
            .output()
            .expect("child runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(f64::NAN)
    };
    let (b, t, v) = update::size();
    for suffix in ["", "-autograd"] {
        let grpo = run(&format!("grpo{suffix}"));
        let simko = run(&format!("simko{suffix}"));
        println!(
            "update step {b}x{t}x{v}{suffix}: extra peak RSS grpo {grpo:.0} MiB, simko {simko:.0} MiB, simko/grpo {:.3}",
            simko / grpo
        );
    }
}
