// Linear layers on weights packed once into MKL's GEMM layout (oneMKL's `cblas_sgemm_pack` /
// `cblas_sgemm_compute`, the API torch's `mkl::_mkl_linear` uses for frozen inference). An
// ordinary `x Wᵀ` makes MKL copy W into its internal layout at every call; during generation
// the same weights meet a few rows per decode step, so that copy is a large share of the step
// (docs/performance.md). libtorch links oneMKL statically and exports these functions; they are
// looked up by name, so builds of libtorch without MKL (other architectures) report them absent
// and the caller keeps at::linear.
#include <ATen/ATen.h>
#include <dlfcn.h>

#include "message.h"

#include <algorithm>
#include <cstdint>
#include <limits>

namespace {

// CBLAS enumerations (mkl_cblas.h).
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;
constexpr int kPacked = 151;
constexpr int kBMatrix = 162;

using PackGetSize = size_t (*)(int identifier, int m, int n, int k);
using Pack = void (*)(int layout, int identifier, int trans, int m, int n, int k, float alpha,
                      const float *src, int ld, float *dest);
using Compute = void (*)(int layout, int transa, int transb, int m, int n, int k, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc);

struct Api {
  PackGetSize get_size = nullptr;
  Pack pack = nullptr;
  Compute compute = nullptr;
  bool ok() const { return get_size != nullptr && pack != nullptr && compute != nullptr; }
};

const Api &api() {
  static const Api a = [] {
    Api r;
    r.get_size = reinterpret_cast<PackGetSize>(dlsym(RTLD_DEFAULT, "cblas_sgemm_pack_get_size"));
    r.pack = reinterpret_cast<Pack>(dlsym(RTLD_DEFAULT, "cblas_sgemm_pack"));
    r.compute = reinterpret_cast<Compute>(dlsym(RTLD_DEFAULT, "cblas_sgemm_compute"));
    return r;
  }();
  return a;
}

bool fits_int(int64_t v) { return v >= 0 && v <= std::numeric_limits<int>::max(); }

// MKL's pack takes the row count the products will have: the layout (and the products'
// speed) follow it, while any row count can use the pack. Clamped to MKL's int.
int rows_hint(int64_t rows) {
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(rows, 1), 1 << 20));
}

} // namespace

extern "C" {

// Whether this libtorch exports MKL's packed GEMM.
int rlvr_kernels_packed_available() { return api().ok() ? 1 : 0; }

// Bytes of the packed form of a weight [n, k] for products of about `rows` rows (0 when
// unavailable or too large for MKL's int).
int64_t rlvr_kernels_packed_size(int64_t n, int64_t k, int64_t rows) {
  if (!api().ok() || !fits_int(n) || !fits_int(k) || !fits_int(n * k)) {
    return 0;
  }
  return static_cast<int64_t>(
      api().get_size(kBMatrix, rows_hint(rows), static_cast<int>(n), static_cast<int>(k)));
}

// Packs w [n, k] (f32, contiguous) as the B operand of x · wᵀ for products of about `rows`
// rows into dest (at least
// rlvr_kernels_packed_size bytes, 64-byte aligned). The caller checks kinds and sizes.
int rlvr_kernels_pack_weight(at::Tensor *w, at::Tensor *dest, int64_t rows, char **error) {
  try {
    const int n = static_cast<int>(w->size(0)), k = static_cast<int>(w->size(1));
    api().pack(kRowMajor, kBMatrix, kTrans, rows_hint(rows), n, k, 1.0f, w->data_ptr<float>(), k,
               static_cast<float *>(dest->data_ptr()));
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

// out [m, n] = x [m, k] · wᵀ with w packed by rlvr_kernels_pack_weight; x and out contiguous
// f32. The caller checks kinds and sizes.
int rlvr_kernels_packed_linear(at::Tensor *x, at::Tensor *packed, int64_t n, at::Tensor *out,
                               char **error) {
  try {
    const int m = static_cast<int>(x->size(0)), k = static_cast<int>(x->size(1));
    if (m > 0 && n > 0) {
      api().compute(kRowMajor, kNoTrans, kPacked, m, static_cast<int>(n), k, x->data_ptr<float>(),
                    k, static_cast<const float *>(packed->data_ptr()), k, 0.0f,
                    out->data_ptr<float>(), static_cast<int>(n));
    }
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

} // extern "C"
