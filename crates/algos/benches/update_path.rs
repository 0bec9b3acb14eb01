//! Time of one update step from logits, GRPO vs SimKO, as the trainer runs it (chunked, fused
//! statistics, analytic gradient; each chunk's gradient computed and dropped, as what the trainer
//! does next with it is the same for both) and through plain autograd (`cargo bench -p rlvr-algos --bench
//! update_path`; size via RLVR_BENCH_SIZE=BxTxV, default 16x1024x32768), under the `rlvr`
//! binary's process memory policy.

mod update;

use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    rlvr_core::memory::configure_process_memory();
    let (b, t, v) = update::size();
    let x = update::inputs(b, t, v);
    let mut group = c.benchmark_group(format!("update_{b}x{t}x{v}"));
    group.sample_size(10);
    for preset in ["grpo", "simko"] {
        let algo = update::algorithm(preset);
        group.bench_function(preset, |bench| {
            bench.iter(|| update::step(&algo, &x, update::CHUNK, None))
        });
        group.bench_function(format!("{preset}-autograd"), |bench| {
            bench.iter(|| update::step_autograd(&algo, &x))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
