//! Batch-invariant attention (`shim/invariant_attention.cpp`): each output row depends only on
//! its query and the keys and values it may see, in key order, accumulated in f64 — not on how
//! many queries or rows are computed together, nor on the key buffer's length or padding. A
//! token's attention output from a cached decode step (one query, a right-aligned or
//! preallocated cache) is then bit-identical to the same token's in a full-sequence pass, which
//! fused kernels (SDPA's flash path; GEMMs blocked by the matrix sizes) do not give. Same aim as
//! SGLang's deterministic inference and vLLM's batch-invariant mode (Thinking Machines,
//! "Defeating Nondeterminism in LLM Inference", 2025).

use crate::{shim_result, KernelError};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_invariant_attention(
        q: *mut C_tensor,
        k: *mut C_tensor,
        v: *mut C_tensor,
        allowed: *mut C_tensor,
        scale: f64,
        out: *mut C_tensor,
        error: *mut *mut c_char,
    ) -> i32;
}

/// `softmax(scale · q kᵀ, masked by allowed) v` for `q` `[B, H, Lq, D]`, `k` and `v`
/// `[B, Hk, Lk, D]` (grouped-query attention when `Hk` divides `H`: query head `h` reads key head
/// `h / (H / Hk)`, as `repeat_interleave` pairs them), `allowed` `[B, Lq, Lk]` bool. All f32 on
/// the CPU. A query that may see no key gets zeros.
pub fn invariant_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    allowed: &Tensor,
    scale: f64,
) -> Result<Tensor, KernelError> {
    let fail = |message: String| KernelError {
        op: "invariant_attention",
        message,
    };
    let (qs, ks, vs, ms) = (q.size(), k.size(), v.size(), allowed.size());
    let (&[b, h, lq, d], &[kb, hk, lk, kd]) = (&qs[..], &ks[..]) else {
        return Err(fail(format!(
            "q and k must be 4-D [batch, heads, length, head_dim], got {qs:?} and {ks:?}"
        )));
    };
    if kb != b || kd != d || hk < 1 || h % hk != 0 || vs != ks || ms != [b, lq, lk] {
        return Err(fail(format!(
            "shapes do not fit: q {qs:?}, k {ks:?}, v {vs:?}, allowed {ms:?} (k and v \
             [B, Hk, Lk, D] with Hk dividing q's heads, allowed [B, Lq, Lk])"
        )));
    }
    for (name, t, kind) in [
        ("q", q, Kind::Float),
        ("k", k, Kind::Float),
        ("v", v, Kind::Float),
        ("allowed", allowed, Kind::Bool),
    ] {
        if t.kind() != kind || t.device() != Device::Cpu {
            return Err(fail(format!(
                "{name} must be {kind:?} on the CPU, got {:?} on {:?}",
                t.kind(),
                t.device()
            )));
        }
    }
    // The kernel reads k and v through their strides (a slice of a preallocated cache) but
    // needs unit stride along the head dimension.
    let unit = |t: &Tensor| {
        if t.stride()[3] == 1 {
            t.shallow_clone()
        } else {
            t.contiguous()
        }
    };
    let (q, k, v, allowed) = (q.contiguous(), unit(k), unit(v), allowed.contiguous());
    let out = Tensor::empty([b, h, lq, d], (Kind::Float, Device::Cpu));
    let mut error: *mut c_char = std::ptr::null_mut();
    // SAFETY: every pointer is a live at::Tensor owned here for the whole call, of the shapes,
    // kinds and device checked above; q, allowed and out are contiguous, k and v have unit
    // stride in their last dimension.
    let rc = unsafe {
        rlvr_kernels_invariant_attention(
            q.as_ptr() as *mut C_tensor,
            k.as_ptr() as *mut C_tensor,
            v.as_ptr() as *mut C_tensor,
            allowed.as_ptr() as *mut C_tensor,
            scale,
            out.as_ptr() as *mut C_tensor,
            &mut error,
        )
    };
    shim_result("invariant_attention", rc, error)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::normal;

    fn randn(shape: &[i64], seed: u64) -> Tensor {
        let n = shape.iter().product::<i64>() as usize;
        Tensor::from_slice(&normal(n, seed)).view(shape)
    }

    /// Causal mask of `lq` queries ending at key `lk − 1`, with the first `pad` keys padding
    /// (a padding query still sees itself, as the decoder's mask does).
    fn causal(b: i64, lq: i64, lk: i64, pad: i64) -> Tensor {
        let qi = Tensor::arange(lq, (Kind::Int64, Device::Cpu)).view([lq, 1]) + (lk - lq);
        let ki = Tensor::arange(lk, (Kind::Int64, Device::Cpu)).view([1, lk]);
        let m = ki
            .le_tensor(&qi)
            .logical_and(&ki.ge(pad))
            .logical_or(&ki.eq_tensor(&qi));
        m.unsqueeze(0).expand([b, lq, lk], false).contiguous()
    }

    #[test]
    fn equals_libtorch_attention_with_grouped_heads_and_masks() {
        for (b, h, hk, lq, lk, d, pad) in [
            (2, 4, 2, 7, 7, 16, 0),
            (3, 6, 3, 1, 9, 8, 3),
            (1, 2, 2, 5, 12, 64, 4),
        ] {
            let q = randn(&[b, h, lq, d], 1);
            let k = randn(&[b, hk, lk, d], 2);
            let v = randn(&[b, hk, lk, d], 3);
            let allowed = causal(b, lq, lk, pad);
            let scale = (d as f64).powf(-0.5);
            let got = invariant_attention(&q, &k, &v, &allowed, scale).unwrap();
            let rep = h / hk;
            let want = Tensor::scaled_dot_product_attention(
                &q.to_kind(Kind::Double),
                &k.repeat_interleave_self_int(rep, 1, None)
                    .to_kind(Kind::Double),
                &v.repeat_interleave_self_int(rep, 1, None)
                    .to_kind(Kind::Double),
                Some(allowed.unsqueeze(1)),
                0.0,
                false,
                scale,
                false,
            );
            let err = (got.to_kind(Kind::Double) - want)
                .abs()
                .max()
                .double_value(&[]);
            assert!(err < 1e-6, "{b}x{h}/{hk}x{lq}x{lk}x{d}: {err}");
        }
    }

    #[test]
    fn a_row_does_not_depend_on_batching_padding_or_the_key_buffer() {
        // One sequence of 9 tokens: all 9 queries at once against exactly its keys ...
        let (h, d, n) = (4, 16, 9);
        let q = randn(&[1, h, n, d], 4);
        let k = randn(&[1, 2, n, d], 5);
        let v = randn(&[1, 2, n, d], 6);
        let full = invariant_attention(&q, &k, &v, &causal(1, n, n, 0), 0.25).unwrap();
        // ... equals its last query alone, its keys right-aligned after 5 padding slots of
        // other values in a 20-slot buffer (a cache of capacity 20), next to another row.
        let (cap, off) = (20, 5);
        let kb = randn(&[2, 2, cap + 4, d], 7);
        let vb = randn(&[2, 2, cap + 4, d], 8);
        kb.get(1).narrow(1, off, n).copy_(&k.get(0));
        vb.get(1).narrow(1, off, n).copy_(&v.get(0));
        let mut allowed = Tensor::zeros([2, 1, cap], (Kind::Bool, Device::Cpu));
        let _ = allowed.get(1).narrow(1, off, n).fill_(1);
        let _ = allowed.get(0).narrow(1, 0, 12).fill_(1);
        allowed = allowed.contiguous();
        let qb = randn(&[2, h, 1, d], 9);
        qb.get(1).copy_(&q.get(0).narrow(1, n - 1, 1));
        // Keys read through the strides of a slice of a longer buffer.
        let got = invariant_attention(
            &qb,
            &kb.narrow(2, 0, cap),
            &vb.narrow(2, 0, cap),
            &allowed,
            0.25,
        )
        .unwrap();
        assert!(got.get(1).equal(&full.get(0).narrow(1, n - 1, 1)));
        // A query that may see nothing gets zeros.
        let none = Tensor::zeros([2, 1, cap], (Kind::Bool, Device::Cpu));
        let z = invariant_attention(
            &qb,
            &kb.narrow(2, 0, cap),
            &vb.narrow(2, 0, cap),
            &none,
            0.25,
        )
        .unwrap();
        assert_eq!(z.abs().sum(Kind::Double).double_value(&[]), 0.0);
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let q = randn(&[1, 3, 2, 8], 1);
        let k = randn(&[1, 2, 2, 8], 2);
        let m = causal(1, 2, 2, 0);
        let e = invariant_attention(&q, &k, &k, &m, 1.0).unwrap_err();
        assert!(e.to_string().contains("Hk dividing"), "{e}");
    }
}
