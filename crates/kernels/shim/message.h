// Error messages handed across the C boundary: a malloc'd copy the caller frees with
// rlvr_kernels_free_message.
#pragma once

#include <cstdlib>
#include <cstring>

namespace {

inline char *copy_message(const char *text) {
  size_t n = std::strlen(text);
  char *out = static_cast<char *>(std::malloc(n + 1));
  if (out != nullptr) {
    std::memcpy(out, text, n + 1);
  }
  return out;
}

} // namespace
