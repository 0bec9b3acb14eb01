// Batch-invariant SwiGLU gate: out = silu(gate) · up = gate / (1 + exp(−gate)) · up, elementwise
// in f32 with glibc's expf, the same arithmetic for every element. libtorch's silu runs a SIMD
// body (its own exp) and a scalar tail (std::exp) on each thread's chunk, and the two differ in
// the last bit for a few percent of inputs: an element's result then depends on where the chunk
// boundaries fall — on how many rows are computed together and on the thread count (measured:
// a row among 207 of width 160 on 2 threads differs from the row alone). Threads here only change
// who computes an element. (Thinking Machines, "Defeating Nondeterminism in LLM Inference", 2025.)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "message.h"

#include <cmath>
#include <cstdint>

extern "C" {

// gate, up, out: contiguous f32 CPU tensors of n elements each. The caller checks shapes and
// kinds.
int rlvr_kernels_invariant_swiglu(at::Tensor *gate, at::Tensor *up, at::Tensor *out,
                                  char **error) {
  try {
    const int64_t n = gate->numel();
    const float *g = gate->data_ptr<float>();
    const float *u = up->data_ptr<float>();
    float *o = out->data_ptr<float>();
    at::parallel_for(0, n, int64_t{1} << 15, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        // Not vectorised: without -ffast-math GCC has no SIMD expf to call, so every element
        // takes this scalar path.
        const float x = g[i];
        o[i] = x / (1.0f + std::exp(-x)) * u[i];
      }
    });
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

} // extern "C"
