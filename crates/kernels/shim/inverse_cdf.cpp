// Inverse-CDF sampling of one token per row of a CPU log-probability matrix (f32 [rows, vocab]).
// The rule, defined arithmetic (the same bits on the AVX-512 and the portable path):
// - p[j] = sampling_exp(logp[j]) in f32: 0 below −87 (e^−87 ≈ 1.6e−38) and for NaN; else
//   k = nearest-even(x · log2 e), r = x − k·ln2 (two-part constant, fused multiply-adds), a
//   degree-7 Taylor polynomial of e^r in Horner form with fused multiply-adds, times 2^k
//   (relative error below 2 · 2^−24 against e^x);
// - the row is taken in blocks of 16 (the last zero-padded); a block's mass is, in f64,
//   ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)) with s_l = p[l] + p[l + 8];
// - `mass` is the sum of the blocks before; where mass + block > u, the block is scanned in order
//   (run = mass, then run += p[i]) and the first i with p[i] > 0 and run > u is the token;
//   otherwise mass +=
//   block and the next block follows;
// - when no token is found (the total rounds to u or below), the last token with p > 0, or
//   vocab − 1 when none has.
// Statistically this is inverse-CDF sampling of softmax(logp); the SIMD exponentials replace
// glibc's f64 exp per element, which took more than 5% of a 39M-shape rollout. Rows run on
// libtorch's intra-op threads (at::parallel_for).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "message.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define RLVR_X86 1
#endif

namespace {

constexpr int kBlock = 16;
constexpr float kMinLogp = -87.0f;
constexpr float kMaxLogp = 88.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440054690583e-4f;
// 1/7!, 1/6!, …, 1/1!, 1/0!
constexpr float kTaylor[8] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                              1.0f / 6.0f,    0.5f,          1.0f,          1.0f};

float exp_portable(float x) {
  if (!(x >= kMinLogp)) {
    return 0.0f;
  }
  const float xc = x < kMaxLogp ? x : kMaxLogp;
  const float t = xc * kLog2e;
  const float k = std::nearbyint(t);
  float r = std::fma(k, -kLn2Hi, xc);
  r = std::fma(k, -kLn2Lo, r);
  float p = kTaylor[0];
  for (int i = 1; i < 8; ++i) {
    p = std::fma(p, r, kTaylor[i]);
  }
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// p[0..n) = exp of x[0..n), p[n..16) = 0.
void exp_block_portable(const float *x, int n, float *p) {
  for (int i = 0; i < kBlock; ++i) {
    p[i] = i < n ? exp_portable(x[i]) : 0.0f;
  }
}

#ifdef RLVR_X86
__attribute__((target("avx512f"))) void exp_block_avx512(const float *x, int n, float *p) {
  const __mmask16 in = static_cast<__mmask16>(n >= kBlock ? 0xffff : (1u << n) - 1u);
  const __m512 v = _mm512_maskz_loadu_ps(in, x);
  const __m512 xc = _mm512_min_ps(v, _mm512_set1_ps(kMaxLogp));
  const __m512 t = _mm512_mul_ps(xc, _mm512_set1_ps(kLog2e));
  const __m512 k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-kLn2Hi), xc);
  r = _mm512_fmadd_ps(k, _mm512_set1_ps(-kLn2Lo), r);
  __m512 q = _mm512_set1_ps(kTaylor[0]);
  for (int i = 1; i < 8; ++i) {
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(kTaylor[i]));
  }
  const __m512i e = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
  const __m512 out = _mm512_mul_ps(q, _mm512_castsi512_ps(e));
  // Lanes past n and lanes below the cut (or NaN: the ordered comparison is false) are 0.
  const __mmask16 keep =
      in & _mm512_cmp_ps_mask(v, _mm512_set1_ps(kMinLogp), _CMP_GE_OQ);
  _mm512_storeu_ps(p, _mm512_maskz_mov_ps(keep, out));
}
#endif

using ExpBlock = void (*)(const float *, int, float *);

ExpBlock pick_exp(bool portable) {
#ifdef RLVR_X86
  if (!portable && __builtin_cpu_supports("avx512f")) {
    return exp_block_avx512;
  }
#endif
  (void)portable;
  return exp_block_portable;
}

int64_t sample_row(const float *row, int64_t vocab, double u, ExpBlock exp_block) {
  double mass = 0.0;
  alignas(64) float p[kBlock];
  for (int64_t b0 = 0; b0 < vocab; b0 += kBlock) {
    const int n = static_cast<int>(std::min<int64_t>(kBlock, vocab - b0));
    exp_block(row + b0, n, p);
    double s[8];
    for (int l = 0; l < 8; ++l) {
      s[l] = static_cast<double>(p[l]) + static_cast<double>(p[l + 8]);
    }
    const double block = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    if (mass + block > u) {
      double run = mass;
      for (int i = 0; i < n; ++i) {
        run += static_cast<double>(p[i]);
        if (run > u && p[i] > 0.0f) {
          return b0 + i;
        }
      }
    }
    mass += block;
  }
  for (int64_t j = vocab - 1; j >= 0; --j) {
    if (exp_portable(row[j]) > 0.0f) {
      return j;
    }
  }
  return vocab - 1;
}

} // namespace

extern "C" {

// logp: contiguous f32 [rows, vocab] (vocab ≥ 1); u, ids, chosen: rows entries each. `portable`
// forces the portable exponentials (tests compare the two paths). The caller checks shapes and
// kinds.
int rlvr_kernels_inverse_cdf_sample(at::Tensor *logp, const double *u, int64_t *ids,
                                    double *chosen, int portable, char **error) {
  try {
    const int64_t rows = logp->size(0), vocab = logp->size(1);
    const float *data = logp->data_ptr<float>();
    const ExpBlock exp_block = pick_exp(portable != 0);
    // About 64k elements per task at least: small batches run on the calling thread.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, vocab));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float *row = data + r * vocab;
        const int64_t j = sample_row(row, vocab, u[r], exp_block);
        ids[r] = j;
        chosen[r] = static_cast<double>(row[j]);
      }
    });
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

} // extern "C"
