// Batch-invariant matrix product: out[m, n] = x[m, :] · w[n, :] (+ bias[n]) where every output
// element is computed by one fixed sequence of floating-point operations that depends on K
// alone — not on how many rows or columns are computed together, where in the matrices the row
// sits, which thread computes it or which code path the CPU takes. BLAS libraries (libtorch's
// MKL) choose kernels, blocking and thread splits by the matrix sizes and the CPU, so a row of
// x Wᵀ computed among few rows can differ in its last bits from the same row among many: the
// property rlvr's batch-invariant passes must not depend on (it held on one CPU and not on
// another).
//
// The defined arithmetic: eight partial sums, lane l accumulating x[k]·w[k] over k ≡ l (mod 8)
// in increasing k with fused multiply-adds (exactly rounded, so the same on every path), the
// last partial block zero-padded; then ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)); then
// + bias[n]. An AVX2/FMA micro-kernel (2 rows × 4 columns, one 8-lane register per partial-sum
// vector) and a portable one run exactly this. (Thinking Machines, "Defeating Nondeterminism in
// LLM Inference", 2025: batch-invariant kernels fix the reduction order per element.)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "message.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RLVR_X86 1
#endif

namespace {

constexpr int kLanes = 8;
constexpr int kRows = 2;      // micro-kernel rows (of x)
constexpr int kCols = 4;      // micro-kernel columns (rows of w)
constexpr int64_t kColBlock = 64;  // w rows per parallel work item (a few L2-resident rows)
constexpr int64_t kRowBlock = 64;  // x rows swept per column block

struct Operands {
  const float *x;
  int64_t ldx;
  const float *w;
  int64_t ldw;
  const float *bias;  // null: none
  float *out;
  int64_t ldo;
  int64_t k;
};

inline float tree(const float *s) {
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

// The portable micro-kernel: rm ≤ kRows rows × rn ≤ kCols columns at (m, n).
void tile_portable(const Operands &o, int64_t m, int64_t n, int rm, int rn) {
  float acc[kRows][kCols][kLanes] = {};
  const int64_t full = o.k - o.k % kLanes;
  for (int64_t k = 0; k < o.k; k += kLanes) {
    for (int i = 0; i < rm; ++i) {
      const float *xi = o.x + (m + i) * o.ldx + k;
      for (int j = 0; j < rn; ++j) {
        const float *wj = o.w + (n + j) * o.ldw + k;
        for (int l = 0; l < kLanes; ++l) {
          const bool in = k < full || k + l < o.k;
          acc[i][j][l] = std::fma(in ? xi[l] : 0.0f, in ? wj[l] : 0.0f, acc[i][j][l]);
        }
      }
    }
  }
  for (int i = 0; i < rm; ++i) {
    for (int j = 0; j < rn; ++j) {
      float s = tree(acc[i][j]);
      if (o.bias != nullptr) {
        s += o.bias[n + j];
      }
      o.out[(m + i) * o.ldo + n + j] = s;
    }
  }
}

#ifdef RLVR_X86
// The same arithmetic with one AVX2 register per partial-sum vector; RM × RN fixed at compile
// time so that the accumulators stay in registers.
template <int RM, int RN>
__attribute__((target("avx2,fma"))) void tile_avx2(const Operands &o, int64_t m, int64_t n) {
  __m256 acc[RM][RN];
  for (int i = 0; i < RM; ++i) {
    for (int j = 0; j < RN; ++j) {
      acc[i][j] = _mm256_setzero_ps();
    }
  }
  const int64_t full = o.k - o.k % kLanes;
  const float *xr[RM];
  const float *wr[RN];
  for (int i = 0; i < RM; ++i) {
    xr[i] = o.x + (m + i) * o.ldx;
  }
  for (int j = 0; j < RN; ++j) {
    wr[j] = o.w + (n + j) * o.ldw;
  }
  for (int64_t k = 0; k < full; k += kLanes) {
    __m256 xv[RM];
    for (int i = 0; i < RM; ++i) {
      xv[i] = _mm256_loadu_ps(xr[i] + k);
    }
    for (int j = 0; j < RN; ++j) {
      const __m256 wv = _mm256_loadu_ps(wr[j] + k);
      for (int i = 0; i < RM; ++i) {
        acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
      }
    }
  }
  if (full < o.k) {
    alignas(32) int32_t lanes[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      lanes[l] = full + l < o.k ? -1 : 0;
    }
    const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i *>(lanes));
    __m256 xv[RM];
    for (int i = 0; i < RM; ++i) {
      xv[i] = _mm256_maskload_ps(xr[i] + full, mask);
    }
    for (int j = 0; j < RN; ++j) {
      const __m256 wv = _mm256_maskload_ps(wr[j] + full, mask);
      for (int i = 0; i < RM; ++i) {
        acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
      }
    }
  }
  for (int i = 0; i < RM; ++i) {
    for (int j = 0; j < RN; ++j) {
      alignas(32) float s[kLanes];
      _mm256_store_ps(s, acc[i][j]);
      float v = tree(s);
      if (o.bias != nullptr) {
        v += o.bias[n + j];
      }
      o.out[(m + i) * o.ldo + n + j] = v;
    }
  }
}

template <int RM>
__attribute__((target("avx2,fma"))) void tile_avx2_rows(const Operands &o, int64_t m, int64_t n,
                                                       int rn) {
  switch (rn) {
  case 4: tile_avx2<RM, 4>(o, m, n); break;
  case 3: tile_avx2<RM, 3>(o, m, n); break;
  case 2: tile_avx2<RM, 2>(o, m, n); break;
  default: tile_avx2<RM, 1>(o, m, n); break;
  }
}

void tile_avx2_any(const Operands &o, int64_t m, int64_t n, int rm, int rn) {
  if (rm == 2) {
    tile_avx2_rows<2>(o, m, n, rn);
  } else {
    tile_avx2_rows<1>(o, m, n, rn);
  }
}
#endif

using Tile = void (*)(const Operands &, int64_t, int64_t, int, int);

Tile pick_tile(bool portable) {
#ifdef RLVR_X86
  if (!portable && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return tile_avx2_any;
  }
#endif
  (void)portable;
  return tile_portable;
}

} // namespace

extern "C" {

// out [M, N] = x [M, K] · w [N, K]ᵀ (+ bias [N]); f32, unit stride along K in x and w, out
// contiguous. `portable` forces the portable micro-kernel (tests compare the two paths). The
// caller checks shapes, kinds and devices.
int rlvr_kernels_invariant_linear(at::Tensor *x, at::Tensor *w, at::Tensor *bias, at::Tensor *out,
                                  int portable, char **error) {
  try {
    const int64_t m = x->size(0), n = w->size(0);
    Operands o{x->data_ptr<float>(), x->stride(0),
               w->data_ptr<float>(), w->stride(0),
               bias != nullptr ? bias->data_ptr<float>() : nullptr,
               out->data_ptr<float>(), out->stride(0), x->size(1)};
    const Tile tile = pick_tile(portable != 0);
    const int64_t blocks = (n + kColBlock - 1) / kColBlock;
    // Small products run on the calling thread (threads only change who computes an element,
    // never how).
    const int64_t grain = m * n * o.k < (int64_t{1} << 18) ? blocks : 1;
    at::parallel_for(0, blocks, grain, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t n0 = b * kColBlock, n1 = std::min(n, n0 + kColBlock);
        for (int64_t m0 = 0; m0 < m; m0 += kRowBlock) {
          const int64_t m1 = std::min(m, m0 + kRowBlock);
          for (int64_t j = n0; j < n1; j += kCols) {
            const int rn = static_cast<int>(std::min<int64_t>(kCols, n1 - j));
            for (int64_t i = m0; i < m1; i += kRows) {
              tile(o, i, j, static_cast<int>(std::min<int64_t>(kRows, m1 - i)), rn);
            }
          }
        }
      }
    });
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

} // extern "C"
