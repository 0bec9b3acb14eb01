// Inverse-CDF sampling of one token per row of a CPU log-probability matrix (f32 [rows, vocab]):
// the first j with Σ_{i ≤ j} exp(logp[r, i]) > u[r], the exponentials (glibc's exp) and their
// running sum in f64 in increasing i; when no prefix exceeds u[r], the last token with positive
// probability (vocab − 1 when none has). Rows run on libtorch's intra-op threads (at::parallel_for),
// the threads the surrounding operators use, so no other thread competes with them for cores.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "message.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

int64_t sample_row(const float *row, int64_t vocab, double u) {
  double mass = 0.0;
  int64_t last_positive = -1;
  for (int64_t j = 0; j < vocab; ++j) {
    const double p = std::exp(static_cast<double>(row[j]));
    // A zero term leaves the running sum unchanged: it can never be the first to exceed u.
    if (p > 0.0) {
      mass += p;
      if (mass > u) {
        return j;
      }
      last_positive = j;
    }
  }
  return last_positive >= 0 ? last_positive : vocab - 1;
}

} // namespace

extern "C" {

// logp: contiguous f32 [rows, vocab] (vocab ≥ 1); u, ids, chosen: rows entries each. The caller
// checks shapes and kinds.
int rlvr_kernels_inverse_cdf_sample(at::Tensor *logp, const double *u, int64_t *ids,
                                    double *chosen, char **error) {
  try {
    const int64_t rows = logp->size(0), vocab = logp->size(1);
    const float *data = logp->data_ptr<float>();
    // About 64k elements per task at least: small batches run on the calling thread.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, vocab));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float *row = data + r * vocab;
        const int64_t j = sample_row(row, vocab, u[r]);
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
