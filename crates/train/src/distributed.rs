//! Data-parallel training over [`rlvr_dist::Collective`] (docs/distributed.md): which prompt
//! groups a rank holds, gradients summed in flat //! buckets, metrics reduced for rank 0's log, and the parameter broadcast and checksum that keep
//! ranks identical. With one rank every function here is the identity.

use crate::error::{Result, TrainError};
use crate::metrics::{Metrics, Reduce};
use crate::optim::named_vars;
pub use rlvr_dist::{Collective, Single, WorldEnv};
use std::ops::Range;
use std::time::Duration;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Environment variable: seconds after which a collective (or the rendezvous) fails instead of
/// waiting for a rank that died or hangs.
pub const TIMEOUT_VAR: &str = "RLVR_COLLECTIVE_TIMEOUT";

/// Default of [`TIMEOUT_VAR`]: long enough for a slow rank's rollout, short enough that a dead
/// job ends.
pub const DEFAULT_TIMEOUT_S: u64 = 300;

/// Elements per gradient bucket (64 MiB of f32): one all-reduce each.
const BUCKET_ELEMENTS: i64 = 1 << 24;

impl From<rlvr_dist::DistError> for TrainError {
    fn from(e: rlvr_dist::DistError) -> TrainError {
        match e {
            rlvr_dist::DistError::Environment(msg) => TrainError::Config(msg),
            // The launch itself is wrong, the same on every rank: a usage error.
            other if other.to_string().contains("WORLD_SIZE differs") => {
                TrainError::Config(other.to_string())
            }
            other => TrainError::Run(format!(
                "{other} (another rank probably stopped or died; its own error says why)"
            )),
        }
    }
}

/// The collective timeout of [`TIMEOUT_VAR`] (default [`DEFAULT_TIMEOUT_S`]).
pub fn collective_timeout() -> Result<Duration> {
    match std::env::var(TIMEOUT_VAR) {
        Err(_) => Ok(Duration::from_secs(DEFAULT_TIMEOUT_S)),
        Ok(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s.is_finite() => Ok(Duration::from_secs_f64(s)),
            _ => Err(TrainError::Config(format!(
                "{TIMEOUT_VAR}={v:?}: expected a positive number of seconds"
            ))),
        },
    }
}

/// This process's place in the job (the torchrun variables) and its process group.
pub fn join_from_env() -> Result<(Box<dyn Collective>, WorldEnv)> {
    let env = WorldEnv::from_env()?;
    let engine = rlvr_dist::engine_from_env(&env)?;
    let world = rlvr_dist::join(&env, collective_timeout()?, engine)?;
    Ok((world, env))
}

/// The prompt groups `0..count` that rank `rank` of `world` holds: a contiguous block, sizes
/// differing by at most one, so a group's samples never straddle ranks.
pub fn group_share(count: usize, rank: usize, world: usize) -> Range<usize> {
    let world = world.max(1);
    let (base, extra) = (count / world, count % world);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// Where a rank's responses sit in the step's global batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowShare {
    /// Global index of the rank's first response.
    pub offset: i64,
    /// Responses in the global batch.
    pub total: i64,
}

impl RowShare {
    /// The whole batch of `rows` responses in one process.
    pub fn whole(rows: i64) -> RowShare {
        RowShare {
            offset: 0,
            total: rows,
        }
    }
}

/// Gives every trainable parameter a (zero) gradient, so a rank whose share of a mini-batch is
/// empty still has gradients to contribute to the all-reduce.
pub fn define_gradients(vs: &VarStore) {
    let vars = named_vars(vs);
    if vars.iter().all(|(_, v)| v.grad().defined()) {
        return;
    }
    let zero = vars
        .iter()
        .map(|(_, v)| v.sum(Kind::Float) * 0.0)
        .fold(Tensor::zeros([], (Kind::Float, vs.device())), |a, b| a + b);
    zero.backward();
}

/// Sums every parameter's gradient over the ranks in flat f32 buckets of up to 64 MiB (one
/// all-reduce each, on the gradients' device; the Gloo engine takes CUDA buckets through host
/// memory, NCCL keeps them on the GPU).
pub fn all_reduce_gradients(world: &dyn Collective, vs: &VarStore) -> Result<()> {
    if world.is_single() {
        return Ok(());
    }
    let _guard = tch::no_grad_guard();
    let grads: Vec<Tensor> = named_vars(vs).into_iter().map(|(_, v)| v.grad()).collect();
    if let Some(i) = grads.iter().position(|g| !g.defined()) {
        return Err(TrainError::Run(format!(
            "parameter {i} has no gradient to all-reduce (define_gradients was not called)"
        )));
    }
    let mut start = 0;
    while start < grads.len() {
        let mut end = start;
        let mut size = 0;
        while end < grads.len()
            && (end == start || size + grads[end].numel() as i64 <= BUCKET_ELEMENTS)
        {
            size += grads[end].numel() as i64;
            end += 1;
        }
        let parts: Vec<Tensor> = grads[start..end]
            .iter()
            .map(|g| g.to_kind(Kind::Float).reshape([-1]))
            .collect();
        let mut flat = Tensor::cat(&parts, 0);
        world.all_reduce_sum(&mut flat)?;
        let mut at = 0;
        for g in &grads[start..end] {
            let n = g.numel() as i64;
            let mut g = g.shallow_clone();
            g.copy_(&flat.narrow(0, at, n).view_as(&g));
            at += n;
        }
        start = end;
    }
    Ok(())
}

/// Rank 0's parameters copied to every rank (after a fresh start or a restored checkpoint, so
/// all ranks begin from the same weights whatever their own initialisation did).
pub fn broadcast_parameters(world: &dyn Collective, vs: &VarStore) -> Result<()> {
    if world.is_single() {
        return Ok(());
    }
    let _guard = tch::no_grad_guard();
    for (_, v) in named_vars(vs) {
        let mut buf = v.detach().copy();
        world.broadcast(&mut buf, 0)?;
        let mut v = v.shallow_clone();
        v.copy_(&buf);
    }
    Ok(())
}

/// Elements of one block of [`checksum`].
const CHECKSUM_BLOCK: i64 = 1 << 20;

/// The sum and the sum of squares of `v`'s elements in f64, one block of [`CHECKSUM_BLOCK`]
/// elements at a time: no temporary of the whole tensor (an f64 copy of the 0.5B shape's
/// embedding alone is 1.1 GB, and every rank makes it at once).
fn checksum(v: &Tensor) -> (f64, f64) {
    let flat = v.reshape([-1]);
    let n = flat.numel() as i64;
    let (mut sum, mut squares) = (0.0, 0.0);
    let mut at = 0;
    while at < n {
        let block = flat
            .narrow(0, at, CHECKSUM_BLOCK.min(n - at))
            .to_kind(Kind::Double);
        sum += block.sum(Kind::Double).double_value(&[]);
        squares += block.dot(&block).double_value(&[]);
        at += CHECKSUM_BLOCK;
    }
    (sum, squares)
}

/// Checks that every rank holds the same parameters: each rank's f64 sum and sum of squares of
/// every parameter are gathered and compared with rank 0's, exactly (all ranks apply the same
/// update to the same weights, so any difference is divergence).
pub fn check_parameters(world: &dyn Collective, vs: &VarStore, step: u64) -> Result<()> {
    if world.is_single() {
        return Ok(());
    }
    let _guard = tch::no_grad_guard();
    let mut local = Vec::new();
    for (_, v) in named_vars(vs) {
        let (sum, squares) = checksum(&v);
        local.push(sum);
        local.push(squares);
    }
    let all = world.all_gather(&local)?;
    let names: Vec<String> = named_vars(vs).into_iter().map(|(n, _)| n).collect();
    for (rank, other) in all.iter().enumerate().skip(1) {
        if let Some(i) = (0..local.len()).find(|&i| other.get(i) != all[0].get(i)) {
            return Err(TrainError::Run(format!(
                "after step {step}, rank {rank}'s parameter `{}` differs from rank 0's \
                 (checksum {:?} vs {:?}): the ranks diverged",
                names.get(i / 2).map_or("?", |s| s.as_str()),
                other.get(i),
                all[0].get(i)
            )));
        }
    }
    Ok(())
}

/// The step's metrics over all ranks, each combined as it declared ([`Reduce`]): per-response
/// means weighted by responses, per-token means by valid tokens, phase times as the slowest
/// rank's, throughput summed, values equal on every rank kept. `responses` and `tokens` are
/// this rank's counts. Every rank gets the same result.
pub fn reduce_metrics(
    world: &dyn Collective,
    m: Metrics,
    responses: f64,
    tokens: f64,
) -> Result<Metrics> {
    if world.is_single() {
        return Ok(m);
    }
    let keys: Vec<String> = m.values.keys().cloned().collect();
    let mut local = vec![responses, tokens];
    local.extend(keys.iter().map(|k| m.value(k)));
    let all = world.all_gather(&local)?;
    if let Some(r) = all.iter().position(|v| v.len() != local.len()) {
        return Err(TrainError::Run(format!(
            "rank {r} logged {} metrics, rank {} logged {}: the ranks diverged",
            all[r].len().saturating_sub(2),
            world.rank(),
            keys.len()
        )));
    }
    let (resp_total, tok_total): (f64, f64) = all
        .iter()
        .map(|v| (v[0], v[1]))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let mut out = Metrics::new(m.step);
    for (i, key) in keys.iter().enumerate() {
        let vals = all.iter().map(|v| (v[0], v[1], v[i + 2]));
        let reduce = m.reduction(key);
        let value = match reduce {
            Reduce::Max => vals.map(|v| v.2).fold(f64::NEG_INFINITY, f64::max),
            Reduce::Sum => vals.map(|v| v.2).sum(),
            Reduce::Same => m.value(key),
            Reduce::TokenMean => {
                vals.map(|(_, t, x)| t * x).sum::<f64>() / tok_total.max(f64::MIN_POSITIVE)
            }
            Reduce::ResponseMean => {
                vals.map(|(r, _, x)| r * x).sum::<f64>() / resp_total.max(f64::MIN_POSITIVE)
            }
        };
        out.set(key.clone(), value, reduce);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_dealt_whole_and_in_order() {
        for count in 0..20 {
            for world in 1..6 {
                let shares: Vec<Range<usize>> =
                    (0..world).map(|r| group_share(count, r, world)).collect();
                assert_eq!(shares[0].start, 0);
                assert_eq!(shares[world - 1].end, count);
                for w in shares.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let sizes: Vec<usize> = shares.iter().map(|s| s.len()).collect();
                assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            }
        }
        assert_eq!(group_share(16, 1, 2), 8..16);
        assert_eq!(group_share(5, 1, 2), 3..5);
    }

    /// Rank 0 of two whose other rank reports `other` for its checksums (`None`: the same).
    struct TwoRanks {
        other: Option<Vec<f64>>,
    }

    impl Collective for TwoRanks {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            2
        }
        fn all_reduce_sum(&self, _: &mut Tensor) -> rlvr_dist::Result<()> {
            Ok(())
        }
        fn broadcast(&self, _: &mut Tensor, _: usize) -> rlvr_dist::Result<()> {
            Ok(())
        }
        fn all_gather(&self, local: &[f64]) -> rlvr_dist::Result<Vec<Vec<f64>>> {
            Ok(vec![
                local.to_vec(),
                self.other.clone().unwrap_or_else(|| local.to_vec()),
            ])
        }
        fn barrier(&self) -> rlvr_dist::Result<()> {
            Ok(())
        }
        fn all_gather_tensor(&self, local: &Tensor) -> rlvr_dist::Result<Tensor> {
            Ok(Tensor::stack(
                &[local.shallow_clone(), local.shallow_clone()],
                0,
            ))
        }
    }

    #[test]
    fn the_blockwise_checksum_is_the_f64_sum_and_sum_of_squares() {
        // Three whole blocks and a partial one (7 × 450,000 elements), of values whose f32
        // sums would lose digits.
        let v = Tensor::randn([7, 450_000], (Kind::Float, tch::Device::Cpu)) + 1000.0;
        assert!(v.numel() as i64 > 3 * CHECKSUM_BLOCK && v.numel() as i64 % CHECKSUM_BLOCK != 0);
        let (sum, squares) = checksum(&v);
        let d = v.to_kind(Kind::Double);
        let want_sum = d.sum(Kind::Double).double_value(&[]);
        let want_squares = d.square().sum(Kind::Double).double_value(&[]);
        assert!(
            (sum - want_sum).abs() <= 1e-12 * want_sum.abs(),
            "{sum} vs {want_sum}"
        );
        assert!(
            (squares - want_squares).abs() <= 1e-12 * want_squares,
            "{squares} vs {want_squares}"
        );
    }

    #[test]
    fn a_rank_whose_parameters_differ_is_named_with_the_parameter() {
        let vs = VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let _a = root.var("a", &[3], tch::nn::Init::Const(1.0));
        let _b = root.var("b", &[2], tch::nn::Init::Const(2.0));
        check_parameters(&TwoRanks { other: None }, &vs, 7).unwrap();
        // `b`'s sum of squares differs slightly on rank 1.
        let mut other = Vec::new();
        for (n, v) in named_vars(&vs) {
            let (sum, sq) = checksum(&v);
            other.push(sum);
            other.push(if n == "b" { sq + 1e-9 } else { sq });
        }
        let err = check_parameters(&TwoRanks { other: Some(other) }, &vs, 7)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("after step 7, rank 1's parameter `b` differs")
                && err.contains("diverged"),
            "{err}"
        );
    }
}
