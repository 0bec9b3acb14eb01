//! Parameters moved in buckets: one collective carries the slices of several parameters (the
//! flat parameters of FSDP, Zhao et al. 2023, "PyTorch FSDP", §3.2; DDP's gradient buckets, Li
//! et al. 2020), so a decoder layer is gathered, and its gradient reduced, with one collective
//! instead of one per tensor.
//!
//! Rank `r` owns elements `[r·per, (r+1)·per)` of each parameter (`per` = ⌈numel / world⌉,
//! [`ShardSpec`]). A bucket lists runs of those slices, the same runs on every rank, so row `r`
//! of an all-gather of the buckets' concatenations holds rank `r`'s runs, and row `r` of a
//! reduce-scatter input is what rank `r` keeps of the sum.

use crate::sharding::ShardSpec;
use tch::{Kind, Tensor};

/// Elements `[at, at + len)` of every rank's slice of parameter `var` (the slice counted as
/// [`ShardSpec::per_rank`] elements; a rank whose slice is shorter sends zeros past its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// The parameter's index.
    pub var: usize,
    /// First element within each rank's slice.
    pub at: i64,
    /// Elements.
    pub len: i64,
}

/// The segments one collective moves, concatenated in order, in `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// The kind the bucket's elements travel in.
    pub kind: Kind,
    /// Its runs, in order.
    pub segments: Vec<Segment>,
    /// Elements per rank (the segments' lengths summed).
    pub len: i64,
}

impl Bucket {
    fn new(kind: Kind) -> Bucket {
        Bucket {
            kind,
            segments: Vec::new(),
            len: 0,
        }
    }

    /// Each segment with its offset in the bucket.
    fn offsets(&self) -> impl Iterator<Item = (i64, &Segment)> {
        self.segments.iter().scan(0i64, |o, s| {
            let at = *o;
            *o += s.len;
            Some((at, s))
        })
    }
}

/// The buckets of parameters `vars` (index, elements, kind the bucket carries it in), in their
/// order: at most `cap` elements per rank each, one kind each (parameters of a second kind go
/// into buckets of their own). A parameter whose slice exceeds `cap` is cut over buckets.
pub fn plan_buckets(vars: &[(usize, i64, Kind)], spec: ShardSpec, cap: i64) -> Vec<Bucket> {
    let cap = cap.max(1);
    let mut kinds: Vec<Kind> = Vec::new();
    for &(_, _, kind) in vars {
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let mut out = Vec::new();
    for kind in kinds {
        let mut current = Bucket::new(kind);
        for &(var, numel, _) in vars.iter().filter(|v| v.2 == kind) {
            let per = spec.per_rank(numel);
            let mut at = 0;
            while at < per {
                let len = (cap - current.len).min(per - at);
                current.segments.push(Segment { var, at, len });
                current.len += len;
                at += len;
                if current.len == cap {
                    out.push(std::mem::replace(&mut current, Bucket::new(kind)));
                }
            }
        }
        if current.len > 0 {
            out.push(current);
        }
    }
    out
}

/// What this rank sends to the all-gather of `bucket`: its runs of `slices` (this rank's
/// slice of each parameter, flat, by index; [`ShardSpec::range`]), concatenated in the
/// bucket's kind, zeros past a slice's end.
pub fn pack_slices(bucket: &Bucket, slices: &[Tensor]) -> Result<Tensor, tch::TchError> {
    let device = slices
        .first()
        .map(|s| s.device())
        .unwrap_or(tch::Device::Cpu);
    let buf = Tensor::f_zeros([bucket.len], (bucket.kind, device))?;
    for (o, s) in bucket.offsets() {
        let have = (slices[s.var].numel() as i64 - s.at).clamp(0, s.len);
        if have > 0 {
            buf.f_narrow(0, o, have)?
                .f_copy_(&slices[s.var].f_narrow(0, s.at, have)?)?;
        }
    }
    Ok(buf)
}

/// Copies the gathered `all` (`[world, bucket.len]`: every rank's [`pack_slices`]) into the
/// whole parameters: `dest(var)` is parameter `var`'s flat whole tensor.
pub fn unpack_gathered(
    bucket: &Bucket,
    all: &Tensor,
    spec: ShardSpec,
    dest: &dyn Fn(usize) -> Tensor,
) -> Result<(), tch::TchError> {
    for (o, s) in bucket.offsets() {
        let whole = dest(s.var);
        let numel = whole.numel() as i64;
        let per = spec.per_rank(numel);
        for r in 0..spec.world as i64 {
            let start = r * per + s.at;
            let valid = (numel - start).clamp(0, s.len);
            if valid > 0 {
                whole
                    .f_narrow(0, start, valid)?
                    .f_copy_(&all.f_get(r)?.f_narrow(0, o, valid)?)?;
            }
        }
    }
    Ok(())
}

/// The reduce-scatter input of `bucket` on this rank (`[world, bucket.len]`, f32): row `r`
/// holds rank `r`'s runs of the whole gradients `grad(var)` (flat), zeros past a tensor's end.
pub fn pack_grads(
    bucket: &Bucket,
    spec: ShardSpec,
    grad: &dyn Fn(usize) -> Tensor,
) -> Result<Tensor, tch::TchError> {
    let mut buf: Option<Tensor> = None;
    for (o, s) in bucket.offsets() {
        let flat = grad(s.var);
        let buf = match &buf {
            Some(b) => b,
            None => buf.insert(Tensor::f_zeros(
                [spec.world as i64, bucket.len],
                (Kind::Float, flat.device()),
            )?),
        };
        let numel = flat.numel() as i64;
        let per = spec.per_rank(numel);
        for r in 0..spec.world as i64 {
            let start = r * per + s.at;
            let valid = (numel - start).clamp(0, s.len);
            if valid > 0 {
                buf.f_get(r)?
                    .f_narrow(0, o, valid)?
                    .f_copy_(&flat.f_narrow(0, start, valid)?)?;
            }
        }
    }
    match buf {
        Some(b) => Ok(b),
        None => Tensor::f_zeros([spec.world as i64, 0], (Kind::Float, tch::Device::Cpu)),
    }
}

/// Adds this rank's row of the reduced sum (`mine`, `[bucket.len]`) to its gradient slices
/// `acc` (flat f32, by index).
pub fn add_reduced(bucket: &Bucket, mine: &Tensor, acc: &[Tensor]) -> Result<(), tch::TchError> {
    for (o, s) in bucket.offsets() {
        let have = (acc[s.var].numel() as i64 - s.at).clamp(0, s.len);
        if have > 0 {
            let _ = acc[s.var]
                .f_narrow(0, s.at, have)?
                .f_add_(&mine.f_narrow(0, o, have)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    const SIZES: [i64; 6] = [1, 2, 7, 10, 33, 4];

    fn params() -> Vec<Tensor> {
        SIZES
            .iter()
            .map(|&n| Tensor::randn([n], (Kind::Float, Device::Cpu)))
            .collect()
    }

    fn vars(kinds: &[Kind]) -> Vec<(usize, i64, Kind)> {
        SIZES
            .iter()
            .enumerate()
            .map(|(i, &n)| (i, n, kinds[i % kinds.len()]))
            .collect()
    }

    #[test]
    fn buckets_cover_every_slice_element_once_in_order() {
        for world in [1usize, 2, 3, 5] {
            let spec = ShardSpec { rank: 0, world };
            for cap in [1i64, 3, 8, 1000] {
                for kinds in [vec![Kind::Float], vec![Kind::Float, Kind::BFloat16]] {
                    let buckets = plan_buckets(&vars(&kinds), spec, cap);
                    for b in &buckets {
                        assert!(b.len <= cap && b.len > 0);
                        assert_eq!(b.len, b.segments.iter().map(|s| s.len).sum::<i64>());
                        let var_kind = |v: usize| kinds[v % kinds.len()];
                        assert!(b.segments.iter().all(|s| var_kind(s.var) == b.kind));
                    }
                    // Per parameter: its runs, in order, tile [0, per) exactly.
                    for (i, &n) in SIZES.iter().enumerate() {
                        let runs: Vec<&Segment> = buckets
                            .iter()
                            .flat_map(|b| &b.segments)
                            .filter(|s| s.var == i)
                            .collect();
                        let mut at = 0;
                        for s in runs {
                            assert_eq!(s.at, at, "world {world} cap {cap} var {i}");
                            at += s.len;
                        }
                        assert_eq!(at, spec.per_rank(n));
                    }
                    if cap == 1000 {
                        assert_eq!(buckets.len(), kinds.len(), "one bucket per kind");
                    }
                }
            }
        }
    }

    #[test]
    fn gathered_buckets_rebuild_every_parameter() {
        let whole = params();
        for world in [1usize, 2, 3, 5] {
            for cap in [1i64, 3, 8, 1000] {
                let spec0 = ShardSpec { rank: 0, world };
                let buckets = plan_buckets(&vars(&[Kind::Float, Kind::BFloat16]), spec0, cap);
                let dest: Vec<Tensor> = whole.iter().map(|t| t.zeros_like()).collect();
                for b in &buckets {
                    let rows: Vec<Tensor> = (0..world)
                        .map(|rank| {
                            let spec = ShardSpec { rank, world };
                            let slices: Vec<Tensor> = whole.iter().map(|t| spec.slice(t)).collect();
                            pack_slices(b, &slices).unwrap()
                        })
                        .collect();
                    assert!(rows.iter().all(|r| r.kind() == b.kind));
                    let all = Tensor::stack(&rows, 0);
                    unpack_gathered(b, &all, spec0, &|v| dest[v].shallow_clone()).unwrap();
                }
                for (i, (d, w)) in dest.iter().zip(&whole).enumerate() {
                    // bf16 buckets carry bf16-rounded values, f32 ones exact values.
                    let want = if i % 2 == 1 {
                        w.to_kind(Kind::BFloat16).to_kind(Kind::Float)
                    } else {
                        w.shallow_clone()
                    };
                    assert!(d.equal(&want), "world {world} cap {cap} var {i}");
                }
            }
        }
    }

    #[test]
    fn reduced_buckets_sum_every_ranks_gradient_into_its_owner() {
        for world in [1usize, 2, 3, 5] {
            for cap in [1i64, 3, 8, 1000] {
                let spec0 = ShardSpec { rank: 0, world };
                let buckets = plan_buckets(&vars(&[Kind::Float]), spec0, cap);
                // Each rank's whole gradients, and every rank's accumulated slices.
                let grads: Vec<Vec<Tensor>> = (0..world).map(|_| params()).collect();
                let accs: Vec<Vec<Tensor>> = (0..world)
                    .map(|rank| {
                        let spec = ShardSpec { rank, world };
                        SIZES
                            .iter()
                            .map(|&n| Tensor::ones([spec.range(n).1], (Kind::Float, Device::Cpu)))
                            .collect()
                    })
                    .collect();
                for b in &buckets {
                    let sum = (0..world)
                        .map(|rank| {
                            let spec = ShardSpec { rank, world };
                            pack_grads(b, spec, &|v| grads[rank][v].shallow_clone()).unwrap()
                        })
                        .reduce(|a, b| a + b)
                        .unwrap();
                    for (rank, acc) in accs.iter().enumerate() {
                        add_reduced(b, &sum.get(rank as i64), acc).unwrap();
                    }
                }
                for (i, _) in SIZES.iter().enumerate() {
                    let total = grads
                        .iter()
                        .map(|g| g[i].shallow_clone())
                        .reduce(|a, b| a + b)
                        .unwrap()
                        + 1.0;
                    let mine: Vec<Tensor> = accs.iter().map(|a| a[i].shallow_clone()).collect();
                    let got = Tensor::cat(&mine, 0);
                    assert!(
                        got.allclose(&total, 1e-6, 1e-6, false),
                        "world {world} cap {cap} var {i}"
                    );
                }
            }
        }
    }
}
