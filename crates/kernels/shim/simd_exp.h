// An inlined AVX2 exponential shared by the kernels (softmax_stats.cpp, swiglu.cpp). Defines
// RLVR_X86 on x86-64 with GCC or Clang, where the kernels pick it at run time
// (__builtin_cpu_supports("avx2") and "fma").
#pragma once

#if defined(__x86_64__) && defined(__GNUC__)
#define RLVR_X86 1
#include <immintrin.h>

namespace rlvr_simd {

// e^x for 8 lanes: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (ln 2 split in two constants so n·ln 2
// is exact enough), e^r by its Taylor series to r⁶/720 (truncation error < 1.3e-7 relative),
// scaled by 2ⁿ through the exponent bits. x below the smallest normal result (−87.34, and −∞)
// gives 0; NaN stays NaN.
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.336544f), hi = _mm256_set1_ps(88.376259f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(hi, _mm256_max_ps(lo, x)); // operand order keeps NaN
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
}

} // namespace rlvr_simd

#endif
