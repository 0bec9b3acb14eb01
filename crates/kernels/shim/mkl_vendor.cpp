// MKL's vendor check, answered here. libtorch's CPU matrix products run in the oneMKL it links
// statically, which asks `mkl_serv_intel_cpu_true()` before it dispatches by the CPU's features
// and takes its generic code path when the answer is no: on AMD processors, whatever their
// instruction set (on this project's AMD EPYC, AVX-512 capable, sgemm runs at 137–180 GFLOP/s
// where the AVX-512 path reaches 339–348; docs/performance.md). libtorch_cpu.so exports and calls
// the function through its symbol table, so a definition in the executable (exported by the
// link arguments build/rpath.rs adds) takes its place, as an LD_PRELOAD would. On Intel CPUs the
// answer was yes already. RLVR_MKL_VENDOR_CHECK=keep restores MKL's own answer.
#include <dlfcn.h>

#include <cstdlib>
#include <cstring>

extern "C" int mkl_serv_intel_cpu_true() {
  static const int answer = [] {
    const char *keep = std::getenv("RLVR_MKL_VENDOR_CHECK");
    if (keep != nullptr && std::strcmp(keep, "keep") == 0) {
      auto real = reinterpret_cast<int (*)()>(dlsym(RTLD_NEXT, "mkl_serv_intel_cpu_true"));
      return real != nullptr ? real() : 0;
    }
    return 1;
  }();
  return answer;
}

// The code path MKL dispatches to (MKL's internal `mkl_serv_cpu_detect`: 0 generic, 5 AVX2,
// 7 AVX-512 as observed with oneMKL 2024.2), or -1 where this libtorch has no MKL.
extern "C" int rlvr_kernels_mkl_code_path() {
  auto detect = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "mkl_serv_cpu_detect"));
  return detect != nullptr ? detect() : -1;
}
