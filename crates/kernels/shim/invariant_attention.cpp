// Batch-invariant attention: each output row is a function of its query and of the keys and
// values it may attend to, taken in key order, and of nothing else: not of the batch size, the
// number of queries computed together, the length of the key buffer or where in it the row's
// keys sit (left padding, a right-aligned cache). Fused and blocked kernels (SDPA's flash path,
// GEMMs whose blocking follows the matrix sizes) sum in orders that depend on all of those, so a
// token's log-prob from a cached decode step and from a full-sequence pass differ in the last
// bits. Here every score, the softmax sum and the weighted sum of values are accumulated in f64,
// sequentially over the visible keys; masked keys are skipped, not added as zeros.
// (The same goal as SGLang's deterministic inference and vLLM's batch-invariant mode, after
// Thinking Machines, "Defeating Nondeterminism in LLM Inference", 2025.)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "message.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

extern "C" {

// out[b, h, i, :] = Σ_j softmax_j(scale · q[b,h,i]·k[b,g,j]) v[b,g,j] over the keys j with
// allowed[b, i, j], where g = h / (H / Hk) (grouped-query attention). q [B, H, Lq, D] and out
// (same shape, contiguous) f32; k, v [B, Hk, Lk, D] f32 with unit stride in D (any other
// strides: a slice of a preallocated cache); allowed [B, Lq, Lk] bool, contiguous. A query that
// may see no key gets zeros. The caller checks shapes, kinds and devices.
int rlvr_kernels_invariant_attention(at::Tensor *q, at::Tensor *k, at::Tensor *v,
                                     at::Tensor *allowed, double scale, at::Tensor *out,
                                     char **error) {
  try {
    const int64_t b = q->size(0), h = q->size(1), lq = q->size(2), d = q->size(3);
    const int64_t hk = k->size(1), lk = k->size(2);
    const int64_t group = h / hk;
    const float *qp = q->data_ptr<float>();
    const float *kp = k->data_ptr<float>();
    const float *vp = v->data_ptr<float>();
    const bool *ap = allowed->data_ptr<bool>();
    float *op = out->data_ptr<float>();
    const int64_t ks0 = k->stride(0), ks1 = k->stride(1), ks2 = k->stride(2);
    const int64_t vs0 = v->stride(0), vs1 = v->stride(1), vs2 = v->stride(2);
    at::parallel_for(0, b * h * lq, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> score(static_cast<size_t>(lk));
      std::vector<double> acc(static_cast<size_t>(d));
      for (int64_t r = begin; r < end; ++r) {
        const int64_t i = r % lq, head = (r / lq) % h, bi = r / (lq * h);
        const float *qi = qp + r * d;
        const float *kb = kp + bi * ks0 + (head / group) * ks1;
        const float *vb = vp + bi * vs0 + (head / group) * vs1;
        const bool *row = ap + (bi * lq + i) * lk;
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < lk; ++j) {
          if (!row[j]) {
            continue;
          }
          const float *kj = kb + j * ks2;
          double dot = 0.0;
          for (int64_t c = 0; c < d; ++c) {
            dot += static_cast<double>(qi[c]) * kj[c];
          }
          score[j] = dot * scale;
          m = score[j] > m ? score[j] : m;
        }
        double sum = 0.0;
        for (int64_t j = 0; j < lk; ++j) {
          if (row[j]) {
            score[j] = std::exp(score[j] - m);
            sum += score[j];
          }
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < lk; ++j) {
          if (!row[j]) {
            continue;
          }
          const double p = score[j] / sum;
          const float *vj = vb + j * vs2;
          for (int64_t c = 0; c < d; ++c) {
            acc[c] += p * vj[c];
          }
        }
        float *o = op + r * d;
        for (int64_t c = 0; c < d; ++c) {
          o[c] = sum > 0.0 ? static_cast<float>(acc[c]) : 0.0f;
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
