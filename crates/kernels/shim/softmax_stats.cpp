// Row statistics of a softmax in one pass over each row (the row stays in cache between the
// row's two loops): log-sum-exp, the mean logit under the softmax (so the entropy is
// lse − mean) and the K largest logits with their ids.
// On x86-64 CPUs with AVX2 and FMA the loops are vectorised with an inlined exponential
// (Cody–Waite range reduction and a degree-6 Taylor polynomial, about 2 ulp); otherwise plain C++.
// Rows are split over libtorch's OpenMP threads (at::parallel_for).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "message.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "simd_exp.h"

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Sums are kept in f32 vector lanes over this many columns, then added into f64.
constexpr int64_t kFlush = 2048;

struct RowResult {
  float lse;
  float mean;
};

// lse and mean from the row maximum m, s = Σ e^{z−m} and t = Σ e^{z−m}(z − m) (terms with
// e^{z−m} = 0 left out, so −inf logits contribute nothing instead of 0·(−inf)).
RowResult finish(float m, double s, double t) {
  return {static_cast<float>(m + std::log(s)), static_cast<float>(m + t / s)};
}

// The k largest values seen so far, descending, with their column ids; among equal values the
// earlier column comes first. Slots not yet filled hold −inf and id −1. NaN never enters.
struct TopK {
  float *vals;
  int64_t *ids;
  int64_t k;

  void clear() {
    for (int64_t i = 0; i < k; ++i) {
      vals[i] = kNegInf;
      ids[i] = -1;
    }
  }
  // The value a new column must exceed to enter.
  float threshold() const { return ids[k - 1] < 0 ? kNegInf : vals[k - 1]; }
  bool full() const { return ids[k - 1] >= 0; }
  // Completes a row whose fast scan left slots empty (−inf columns never pass the vector test
  // against −inf): every column again, then NaN columns for what only NaN can fill.
  void complete(const float *z, int64_t v) {
    clear();
    for (int64_t j = 0; j < v; ++j) {
      offer(z[j], j);
    }
    int64_t i = 0;
    while (i < k && ids[i] >= 0) {
      ++i;
    }
    for (int64_t j = 0; j < v && i < k; ++j) {
      if (std::isnan(z[j])) {
        vals[i] = z[j];
        ids[i++] = j;
      }
    }
  }
  void offer(float x, int64_t id) {
    if (std::isnan(x) || (!(x > vals[k - 1]) && ids[k - 1] >= 0)) {
      return;
    }
    int64_t i = k - 1;
    while (i > 0 && (ids[i - 1] < 0 || x > vals[i - 1])) {
      vals[i] = vals[i - 1];
      ids[i] = ids[i - 1];
      --i;
    }
    vals[i] = x;
    ids[i] = id;
  }
};

RowResult row_plain(const float *z, int64_t v, TopK *top) {
  float m = kNegInf;
  for (int64_t j = 0; j < v; ++j) {
    m = (z[j] > m || std::isnan(z[j])) ? z[j] : m;
  }
  double s = 0.0, t = 0.0;
  for (int64_t j = 0; j < v; ++j) {
    float d = z[j] - m;
    float e = std::exp(d);
    s += e;
    if (e > 0.0f) {
      t += static_cast<double>(e) * d;
    }
    if (top != nullptr) {
      top->offer(z[j], j);
    }
  }
  return finish(m, s, t);
}

#ifdef RLVR_X86

__attribute__((target("avx2,fma"))) float hmax8(__m256 x) {
  __m128 a = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  a = _mm_max_ps(a, _mm_movehl_ps(a, a));
  a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
  return _mm_cvtss_f32(a);
}

__attribute__((target("avx2,fma"))) double hsum8(__m256 x) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, x);
  double out = 0.0;
  for (float l : lanes) {
    out += l;
  }
  return out;
}

__attribute__((target("avx2,fma"))) bool any_nan(__m256 x) {
  return _mm256_movemask_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)) != 0;
}

// NaN-propagating maximum: NaN in either operand gives NaN.
__attribute__((target("avx2,fma"))) __m256 max_nan(__m256 a, __m256 b) {
  __m256 nan = _mm256_cmp_ps(b, b, _CMP_UNORD_Q);
  return _mm256_or_ps(_mm256_max_ps(a, b), nan);
}

__attribute__((target("avx2,fma"))) RowResult row_avx2(const float *z, int64_t v, TopK *top) {
  __m256 mv = _mm256_set1_ps(kNegInf);
  __m256 m1 = mv, m2 = mv, m3 = mv;
  int64_t j = 0;
  for (; j + 32 <= v; j += 32) {
    mv = max_nan(mv, _mm256_loadu_ps(z + j));
    m1 = max_nan(m1, _mm256_loadu_ps(z + j + 8));
    m2 = max_nan(m2, _mm256_loadu_ps(z + j + 16));
    m3 = max_nan(m3, _mm256_loadu_ps(z + j + 24));
  }
  for (; j + 8 <= v; j += 8) {
    mv = max_nan(mv, _mm256_loadu_ps(z + j));
  }
  mv = max_nan(max_nan(mv, m1), max_nan(m2, m3));
  float m = any_nan(mv) ? std::numeric_limits<float>::quiet_NaN() : hmax8(mv);
  for (; j < v; ++j) {
    m = (z[j] > m || std::isnan(z[j])) ? z[j] : m;
  }

  const __m256 vm = _mm256_set1_ps(m);
  const __m256 zero = _mm256_setzero_ps();
  double s = 0.0, t = 0.0;
  j = 0;
  while (j + 32 <= v) {
    __m256 s0 = zero, s1 = zero, s2 = zero, s3 = zero;
    __m256 t0 = zero, t1 = zero, t2 = zero, t3 = zero;
    int64_t stop = std::min(v, j + kFlush);
    for (; j + 32 <= stop; j += 32) {
      const __m256 z0 = _mm256_loadu_ps(z + j), z1 = _mm256_loadu_ps(z + j + 8);
      const __m256 z2 = _mm256_loadu_ps(z + j + 16), z3 = _mm256_loadu_ps(z + j + 24);
      if (top != nullptr) {
        // Columns above the current K-th largest are rare after the first few: test 32 at once.
        const __m256 thr = _mm256_set1_ps(top->threshold());
        const __m256 above =
            _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(z0, thr, _CMP_GT_OQ),
                                      _mm256_cmp_ps(z1, thr, _CMP_GT_OQ)),
                         _mm256_or_ps(_mm256_cmp_ps(z2, thr, _CMP_GT_OQ),
                                      _mm256_cmp_ps(z3, thr, _CMP_GT_OQ)));
        if (_mm256_movemask_ps(above) != 0) {
          for (int64_t c = j; c < j + 32; ++c) {
            top->offer(z[c], c);
          }
        }
      }
      __m256 d0 = _mm256_sub_ps(z0, vm);
      __m256 d1 = _mm256_sub_ps(z1, vm);
      __m256 d2 = _mm256_sub_ps(z2, vm);
      __m256 d3 = _mm256_sub_ps(z3, vm);
      __m256 e0 = rlvr_simd::exp8(d0);
      __m256 e1 = rlvr_simd::exp8(d1);
      __m256 e2 = rlvr_simd::exp8(d2);
      __m256 e3 = rlvr_simd::exp8(d3);
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
      s2 = _mm256_add_ps(s2, e2);
      s3 = _mm256_add_ps(s3, e3);
      // d where e > 0, else 0 (a −inf logit has e = 0 and adds nothing).
      t0 = _mm256_fmadd_ps(e0, _mm256_and_ps(d0, _mm256_cmp_ps(e0, zero, _CMP_GT_OQ)), t0);
      t1 = _mm256_fmadd_ps(e1, _mm256_and_ps(d1, _mm256_cmp_ps(e1, zero, _CMP_GT_OQ)), t1);
      t2 = _mm256_fmadd_ps(e2, _mm256_and_ps(d2, _mm256_cmp_ps(e2, zero, _CMP_GT_OQ)), t2);
      t3 = _mm256_fmadd_ps(e3, _mm256_and_ps(d3, _mm256_cmp_ps(e3, zero, _CMP_GT_OQ)), t3);
    }
    s += hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    t += hsum8(_mm256_add_ps(_mm256_add_ps(t0, t1), _mm256_add_ps(t2, t3)));
  }
  for (; j < v; ++j) {
    float d = z[j] - m;
    float e = std::exp(d);
    s += e;
    if (e > 0.0f) {
      t += static_cast<double>(e) * d;
    }
    if (top != nullptr) {
      top->offer(z[j], j);
    }
  }
  return finish(m, s, t);
}

bool use_avx2() {
  static const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return cpu;
}

#else

bool use_avx2() { return false; }

#endif

} // namespace

extern "C" {

// Row statistics of `logits` [n, v] (f32, contiguous, CPU) into `lse` and `mean` ([n] f32
// contiguous) and, when k > 0, the k largest logits of each row, descending, into `topk_vals`
// ([n, k] f32 contiguous) and their ids into `topk_ids` ([n, k] i64 contiguous); ignored when
// k = 0. allow_simd = 0 takes the plain loops even where AVX2 is available (for tests). The
// caller checks the shapes and 0 <= k <= v. Returns 1 with a message on error.
int rlvr_kernels_softmax_stats(at::Tensor *logits, int64_t k, at::Tensor *lse, at::Tensor *mean,
                               at::Tensor *topk_vals, at::Tensor *topk_ids, int allow_simd,
                               char **error) {
  try {
    const int64_t n = logits->size(0), v = logits->size(1);
    const float *z = logits->data_ptr<float>();
    float *lse_out = lse->data_ptr<float>();
    float *mean_out = mean->data_ptr<float>();
    float *vals = k > 0 ? topk_vals->data_ptr<float>() : nullptr;
    int64_t *ids = k > 0 ? topk_ids->data_ptr<int64_t>() : nullptr;
    const bool vectorised = allow_simd != 0 && use_avx2();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        TopK top{vals + r * k, ids + r * k, k};
        TopK *tp = nullptr;
        if (k > 0) {
          top.clear();
          tp = &top;
        }
        RowResult out{};
#ifdef RLVR_X86
        out = vectorised ? row_avx2(z + r * v, v, tp) : row_plain(z + r * v, v, tp);
#else
        out = row_plain(z + r * v, v, tp);
#endif
        if (tp != nullptr && !top.full()) {
          top.complete(z + r * v, v);
        }
        lse_out[r] = out.lse;
        mean_out[r] = out.mean;
      }
    });
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

} // extern "C"
