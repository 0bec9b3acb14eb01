//! Token sampling: temperature, top-k, top-p (nucleus) and greedy, with a seeded ChaCha generator
//! so equal seeds give equal samples on any machine.

use crate::error::Result;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rlvr_core::SamplingConfig;
use tch::{Kind, Tensor};

/// The sampling distribution's log-probs `[B, V]`: logits / temperature, then top-k and top-p
/// filtering (removed tokens get −∞), renormalised. Temperature 0 is greedy: all mass on the argmax.
pub fn filtered_logprobs(logits: &Tensor, cfg: &SamplingConfig) -> Result<Tensor> {
    let logits = logits.f_to_kind(Kind::Float)?;
    let vocab = logits.size().last().copied().unwrap_or(0);
    if cfg.temperature <= 0.0 {
        let argmax = logits.f_argmax(-1, true)?;
        let neg = logits.f_full_like(f64::NEG_INFINITY)?;
        return Ok(neg.f_scatter_value(-1, &argmax, 0.0)?);
    }
    // Dividing by 1 is exact: skip the pass over [B, V].
    let mut scaled = if cfg.temperature == 1.0 {
        logits
    } else {
        logits.f_div_scalar(cfg.temperature)?
    };
    if cfg.top_k > 0 && cfg.top_k < vocab {
        let (vals, _) = scaled.f_topk(cfg.top_k, -1, true, true)?;
        let kth = vals.f_narrow(-1, cfg.top_k - 1, 1)?;
        scaled = scaled.f_masked_fill(&scaled.f_lt_tensor(&kth)?, f64::NEG_INFINITY)?;
    }
    if cfg.top_p < 1.0 {
        let (sorted, idx) = scaled.f_sort(-1, true)?;
        let probs = sorted.f_softmax(-1, Kind::Float)?;
        let before = probs.f_cumsum(-1, Kind::Float)?.f_sub(&probs)?;
        // Remove a token when the mass strictly before it already reaches top_p (keeps ≥ 1).
        let remove_sorted = before.f_ge(cfg.top_p)?;
        let remove = remove_sorted.f_scatter(-1, &idx, &remove_sorted)?;
        scaled = scaled.f_masked_fill(&remove, f64::NEG_INFINITY)?;
    }
    Ok(scaled.f_log_softmax(-1, Kind::Float)?)
}

/// A seeded sampler with one random stream per row: row `r`'s draws depend only on `(seed, r)`,
/// so removing finished rows from the batch (or running the rows on another rank) never changes
/// what any row samples.
pub struct Sampler {
    seed: u64,
    first_stream: u64,
    streams: Vec<ChaCha8Rng>,
}

impl Sampler {
    /// A sampler whose draws depend only on `seed` and the row.
    pub fn new(seed: u64) -> Sampler {
        Sampler::from_stream(seed, 0)
    }

    /// A sampler whose row `r` draws from stream `first_stream + r` of `seed` (the rows of a
    /// data-parallel rank that start at global row `first_stream`).
    pub fn from_stream(seed: u64, first_stream: u64) -> Sampler {
        Sampler {
            seed,
            first_stream,
            streams: Vec::new(),
        }
    }

    /// The next uniform draw of row `r`'s stream.
    fn uniform(&mut self, r: usize) -> f64 {
        while self.streams.len() <= r {
            let stream = self.first_stream + self.streams.len() as u64;
            self.streams.push(RowStream::new(self.seed, stream).0);
        }
        self.streams[r].random::<f64>()
    }

    /// Draws one token per row from log-probs `[B, V]` (row `i` uses stream `i`); returns ids `[B]`
    /// and their log-probs.
    pub fn sample(&mut self, logp: &Tensor) -> Result<(Vec<i64>, Vec<f64>)> {
        let rows: Vec<usize> = (0..logp.size()[0] as usize).collect();
        self.sample_rows(logp, &rows)
    }

    /// Draws one token for each row of `logp` `[R, V]`, row `i` from stream `rows[i]`.
    pub fn sample_rows(&mut self, logp: &Tensor, rows: &[usize]) -> Result<(Vec<i64>, Vec<f64>)> {
        let u: Vec<f64> = rows.iter().map(|&r| self.uniform(r)).collect();
        sample_with_uniforms(logp, &u)
    }
}

/// Row `r`'s random stream: ChaCha8 seeded with the sampling seed, stream `r` (what [`Sampler`]
/// draws for a row; a server draws each request's rows from the same streams, so a served
/// sample equals the in-process one).
pub struct RowStream(ChaCha8Rng);

impl RowStream {
    /// Stream `stream` of `seed`.
    pub fn new(seed: u64, stream: u64) -> RowStream {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        RowStream(rng)
    }

    /// The next uniform draw in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
    }
}

/// Draws one token for each row of `logp` `[R, V]` given one uniform draw per row: the first
/// token whose cumulative probability exceeds it (inverse-CDF, on the device; only the chosen ids
/// and log-probs are copied back). On the CPU, f32 log-probs take
/// [`rlvr_kernels::inverse_cdf_sample`], the same rule in one pass over each row's prefix (its
/// f32 SIMD exponentials round differently from this form's f64 ones, so a draw within that
/// rounding of a boundary may take the neighbouring token).
pub fn sample_with_uniforms(logp: &Tensor, u: &[f64]) -> Result<(Vec<i64>, Vec<f64>)> {
    if logp.device() == tch::Device::Cpu && logp.kind() == Kind::Float && logp.dim() == 2 {
        return Ok(rlvr_kernels::inverse_cdf_sample(logp, u)?);
    }
    let size = logp.size();
    let (b, v) = (size[0], size[1]);
    let device = logp.device();
    let u = Tensor::from_slice(u).f_view([b, 1])?.f_to_device(device)?;
    let logp = logp.f_to_kind(Kind::Double)?;
    let probs = logp.f_exp()?;
    let cdf = probs.f_cumsum(-1, Kind::Double)?;
    let idx = u
        .f_searchsorted(&cdf, false, true, "right", None::<Tensor>)?
        .f_clamp_max(v - 1)?;
    // A draw past the total mass (rounding) takes the last token with positive probability.
    let positive = probs.f_gt(0.0)?;
    let last = positive
        .f_flip([-1])?
        .f_to_kind(Kind::Int8)?
        .f_argmax(-1, true)?
        .f_neg()?
        .f_add_scalar(v - 1)?;
    let ok = positive.f_gather(-1, &idx, false)?;
    let idx = idx.f_where_self(&ok, &last)?;
    let chosen = logp.f_gather(-1, &idx, false)?;
    let ids = Vec::<i64>::try_from(&idx.f_view([-1])?.f_to_device(tch::Device::Cpu)?)?;
    let lps = Vec::<f64>::try_from(&chosen.f_view([-1])?.f_to_device(tch::Device::Cpu)?)?;
    Ok((ids, lps))
}
