//! Linear layers on weights packed once into MKL's GEMM layout (`shim/packed_linear.cpp`:
//! oneMKL's `cblas_sgemm_pack` / `cblas_sgemm_compute`, what torch's `mkl::_mkl_linear` runs for
//! frozen CPU inference). A plain `x Wᵀ` has MKL copy `W` into that layout at every call; a decode
//! step multiplies the same weights by a few rows, so the copy costs about as much as the product
//! (Qwen2.5-0.5B shape, 16 rows, 2 threads: 93 → 47 ms per step for all projections and the LM
//! head, measured with torch's `mkl::_mkl_linear`; docs/performance.md has rlvr's figures).

use crate::{shim_result, KernelError};
use std::ffi::c_char;
use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn rlvr_kernels_packed_available() -> i32;
    fn rlvr_kernels_packed_size(n: i64, k: i64, rows: i64) -> i64;
    fn rlvr_kernels_pack_weight(
        w: *mut C_tensor,
        dest: *mut C_tensor,
        rows: i64,
        error: *mut *mut c_char,
    ) -> i32;
    fn rlvr_kernels_packed_linear(
        x: *mut C_tensor,
        packed: *mut C_tensor,
        n: i64,
        out: *mut C_tensor,
        error: *mut *mut c_char,
    ) -> i32;
}

/// A weight `[N, K]` packed for `x Wᵀ`. It is a copy: packing again after the weight changes is
/// the caller's duty (rlvr packs for one generation call and drops the pack after it).
#[derive(Debug)]
pub struct PackedLinear {
    buffer: Tensor,
    n: i64,
    k: i64,
}

impl PackedLinear {
    /// Whether this libtorch has MKL's packed GEMM (x86-64 builds do).
    pub fn available() -> bool {
        // SAFETY: a plain C function without arguments; it looks the functions up by name.
        unsafe { rlvr_kernels_packed_available() == 1 }
    }

    /// Packs `weight` (`[N, K]`, f32 on the CPU) for products of about `rows` rows (MKL lays the
    /// pack out for that count; any count can use it); `None` where packing is not available for
    /// it (no MKL, another kind or device, dimensions beyond MKL's 32-bit sizes).
    pub fn pack(weight: &Tensor, rows: i64) -> Result<Option<PackedLinear>, KernelError> {
        let fail = |message: String| KernelError {
            op: "packed_linear",
            message,
        };
        let &[n, k] = &weight.size()[..] else {
            return Ok(None);
        };
        if weight.kind() != Kind::Float || weight.device() != Device::Cpu || !Self::available() {
            return Ok(None);
        }
        // SAFETY: plain integers in, a byte count (0: not packable) out.
        let bytes = unsafe { rlvr_kernels_packed_size(n, k, rows) };
        if bytes <= 0 {
            return Ok(None);
        }
        let w = weight.f_contiguous().map_err(|e| fail(e.to_string()))?;
        // libtorch's CPU allocator aligns to 64 bytes, as MKL asks of packed buffers.
        let buffer = Tensor::f_empty([bytes], (Kind::Uint8, Device::Cpu))
            .map_err(|e| fail(e.to_string()))?;
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: w is a live contiguous f32 [N, K] CPU tensor and buffer holds the size MKL
        // asked for; both outlive the call.
        let rc = unsafe {
            rlvr_kernels_pack_weight(
                w.as_ptr() as *mut C_tensor,
                buffer.as_ptr() as *mut C_tensor,
                rows,
                &mut error,
            )
        };
        shim_result("packed_linear", rc, error)?;
        Ok(Some(PackedLinear { buffer, n, k }))
    }

    /// `x Wᵀ (+ bias)` for `x` `[..., K]` f32 on the CPU; the result is `[..., N]`.
    pub fn forward(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor, KernelError> {
        let fail = |message: String| KernelError {
            op: "packed_linear",
            message,
        };
        let xs = x.size();
        if xs.last() != Some(&self.k) || x.kind() != Kind::Float || x.device() != Device::Cpu {
            return Err(fail(format!(
                "x must be [..., {}] f32 on the CPU, got {xs:?} {:?} on {:?}",
                self.k,
                x.kind(),
                x.device()
            )));
        }
        if bias.is_some_and(|b| b.size() != [self.n]) {
            return Err(fail(format!(
                "bias must be [{}], got {:?}",
                self.n,
                bias.map(|b| b.size())
            )));
        }
        let rows: i64 = xs[..xs.len() - 1].iter().product();
        if rows > i64::from(i32::MAX) {
            return Err(fail(format!("{rows} rows exceed MKL's 32-bit sizes")));
        }
        let x2 = x
            .f_reshape([rows, self.k])
            .and_then(|t| t.f_contiguous())
            .map_err(|e| fail(e.to_string()))?;
        let mut out = Tensor::f_empty([rows, self.n], (Kind::Float, Device::Cpu))
            .map_err(|e| fail(e.to_string()))?;
        let mut error: *mut c_char = std::ptr::null_mut();
        // SAFETY: x2 [rows, K] and out [rows, N] are live contiguous f32 CPU tensors, and the
        // buffer holds W [N, K] packed by `pack`; all outlive the call.
        let rc = unsafe {
            rlvr_kernels_packed_linear(
                x2.as_ptr() as *mut C_tensor,
                self.buffer.as_ptr() as *mut C_tensor,
                self.n,
                out.as_ptr() as *mut C_tensor,
                &mut error,
            )
        };
        shim_result("packed_linear", rc, error)?;
        let mut shape = xs;
        if let Some(last) = shape.last_mut() {
            *last = self.n;
        }
        let out = match bias {
            Some(b) => out.f_add_(b).map_err(|e| fail(e.to_string()))?,
            None => out,
        };
        out.f_reshape(shape.as_slice())
            .map_err(|e| fail(e.to_string()))
    }

    /// Bytes the pack holds.
    pub fn bytes(&self) -> i64 {
        self.buffer.numel() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::normal;

    fn randn(shape: &[i64], seed: u64) -> Tensor {
        let n: i64 = shape.iter().product();
        Tensor::from_slice(&normal(n as usize, seed)).view(shape)
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn x86_64_libtorch_has_the_packed_gemm() {
        assert!(PackedLinear::available());
    }

    #[test]
    fn equals_the_product_in_f64_within_f32_rounding_for_any_row_count() {
        if !PackedLinear::available() {
            return;
        }
        for (n, k, seed) in [(5, 3, 1), (130, 77, 2), (1408, 512, 3)] {
            let w = randn(&[n, k], seed);
            let b = randn(&[n], seed + 10);
            // One pack serves every row count (decode steps lose rows as responses end),
            // whatever count it was laid out for.
            for (hint, rows) in [1, 16, 256]
                .into_iter()
                .flat_map(|h| [0, 1, 2, 7, 16, 33, 300].map(|r| (h, r)))
            {
                let p = PackedLinear::pack(&w, hint).unwrap().expect("packable");
                let x = randn(&[rows, k], seed + rows as u64);
                let reference = x
                    .to_kind(Kind::Double)
                    .matmul(&w.to_kind(Kind::Double).tr())
                    + b.to_kind(Kind::Double);
                let got = p.forward(&x, Some(&b)).unwrap();
                assert_eq!(got.size(), [rows, n]);
                if rows == 0 {
                    continue;
                }
                let err = (got.to_kind(Kind::Double) - &reference)
                    .abs()
                    .max()
                    .double_value(&[]);
                // |Σ x w| rounding: a few f32 ulps of Σ|x w| ≈ sqrt(k) magnitudes.
                assert!(
                    err < 1e-5 * k as f64,
                    "{n}x{k}, {rows} rows, hint {hint}: {err}"
                );
            }
            // Leading dimensions are kept.
            let p = PackedLinear::pack(&w, 6).unwrap().expect("packable");
            let x3 = randn(&[2, 3, k], seed + 99);
            let plain = x3.linear(&w, None::<Tensor>);
            let got = p.forward(&x3, None).unwrap();
            assert_eq!(got.size(), plain.size());
            assert!(got.allclose(&plain, 1e-5, 1e-4, false));
        }
    }

    #[test]
    fn refuses_what_it_cannot_pack_or_multiply() {
        let w = randn(&[4, 3], 5);
        assert!(PackedLinear::pack(&w.to_kind(Kind::Double), 16)
            .unwrap()
            .is_none());
        assert!(PackedLinear::pack(&w.view([12]), 16).unwrap().is_none());
        let Some(p) = PackedLinear::pack(&w, 16).unwrap() else {
            return;
        };
        let wrong_k = p.forward(&randn(&[2, 4], 6), None).unwrap_err().to_string();
        assert!(wrong_k.contains("[..., 3]"), "{wrong_k}");
        let bias = randn(&[5], 7);
        let wrong_bias = p.forward(&randn(&[2, 3], 6), Some(&bias)).unwrap_err();
        assert!(
            wrong_bias.to_string().contains("bias must be [4]"),
            "{wrong_bias}"
        );
    }
}
