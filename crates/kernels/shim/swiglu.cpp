// SwiGLU's gate, act = silu(g) · u = g σ(g) u with σ(g) = 1 / (1 + e^{−g}), and its backward,
//   ∂u = d · g σ(g),   ∂g = d · u · σ(g) (1 + g (1 − σ(g))),
// each in one pass over memory. libtorch runs `silu` and `mul` as two passes forward (a
// temporary written and read back) and four operators backward (two products for `mul`, the
// derivative of `silu`, its own temporaries): on the update's [tokens, 4864] activations the
// elementwise traffic, not arithmetic, is what costs. On x86-64 CPUs with AVX2 and FMA the loops
// use the inlined exponential of simd_exp.h; otherwise (and for each thread's last < 8 elements)
// plain C++ with std::exp. Elements are split over libtorch's OpenMP threads (at::parallel_for).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "message.h"
#include "simd_exp.h"

#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kGrain = int64_t{1} << 14;

struct Forward {
  const float *g, *u;
  float *out;
};

struct Backward {
  const float *d, *g, *u;
  float *dg, *du;
};

void forward_portable(const Forward &a, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const float x = a.g[i];
    const float s = 1.0f / (1.0f + std::exp(-x));
    a.out[i] = x * s * a.u[i];
  }
}

void backward_portable(const Backward &a, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const float x = a.g[i];
    const float s = 1.0f / (1.0f + std::exp(-x));
    const float xs = x * s;
    a.du[i] = a.d[i] * xs;
    a.dg[i] = a.d[i] * a.u[i] * (s + xs * (1.0f - s));
  }
}

#ifdef RLVR_X86
__attribute__((target("avx2,fma"))) inline __m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = rlvr_simd::exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
  return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

__attribute__((target("avx2,fma"))) void forward_avx2(const Forward &a, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256 x = _mm256_loadu_ps(a.g + i);
    const __m256 xs = _mm256_mul_ps(x, sigmoid8(x));
    _mm256_storeu_ps(a.out + i, _mm256_mul_ps(xs, _mm256_loadu_ps(a.u + i)));
  }
  forward_portable(a, i, i1);
}

__attribute__((target("avx2,fma"))) void backward_avx2(const Backward &a, int64_t i0,
                                                       int64_t i1) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = i0;
  for (; i + 8 <= i1; i += 8) {
    const __m256 x = _mm256_loadu_ps(a.g + i);
    const __m256 d = _mm256_loadu_ps(a.d + i);
    const __m256 s = sigmoid8(x);
    const __m256 xs = _mm256_mul_ps(x, s);
    _mm256_storeu_ps(a.du + i, _mm256_mul_ps(d, xs));
    // s + xs (1 − s)
    const __m256 ds = _mm256_fmadd_ps(xs, _mm256_sub_ps(one, s), s);
    _mm256_storeu_ps(a.dg + i, _mm256_mul_ps(_mm256_mul_ps(d, _mm256_loadu_ps(a.u + i)), ds));
  }
  backward_portable(a, i, i1);
}
#endif

bool use_avx2(bool portable) {
#ifdef RLVR_X86
  static const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return !portable && cpu;
#else
  (void)portable;
  return false;
#endif
}

} // namespace

extern "C" {

// out = silu(gate) · up; gate, up, out: contiguous f32 CPU tensors of one size (the caller
// checks). `portable` forces the plain C++ loop (tests compare the two paths).
int rlvr_kernels_swiglu(at::Tensor *gate, at::Tensor *up, at::Tensor *out, int portable,
                        char **error) {
  try {
    const Forward a{gate->data_ptr<float>(), up->data_ptr<float>(), out->data_ptr<float>()};
    const bool simd = use_avx2(portable != 0);
    at::parallel_for(0, gate->numel(), kGrain, [&](int64_t i0, int64_t i1) {
#ifdef RLVR_X86
      if (simd) {
        forward_avx2(a, i0, i1);
        return;
      }
#endif
      (void)simd;
      forward_portable(a, i0, i1);
    });
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

// d_gate, d_up from grad (the gradient of out), gate and up; all contiguous f32 CPU tensors of
// one size (the caller checks).
int rlvr_kernels_swiglu_backward(at::Tensor *grad, at::Tensor *gate, at::Tensor *up,
                                 at::Tensor *d_gate, at::Tensor *d_up, int portable,
                                 char **error) {
  try {
    const Backward a{grad->data_ptr<float>(), gate->data_ptr<float>(), up->data_ptr<float>(),
                     d_gate->data_ptr<float>(), d_up->data_ptr<float>()};
    const bool simd = use_avx2(portable != 0);
    at::parallel_for(0, gate->numel(), kGrain, [&](int64_t i0, int64_t i1) {
#ifdef RLVR_X86
      if (simd) {
        backward_avx2(a, i0, i1);
        return;
      }
#endif
      (void)simd;
      backward_portable(a, i0, i1);
    });
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

} // extern "C"
