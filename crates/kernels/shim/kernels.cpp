// The C ABI over libtorch operators that tch 0.26 does not generate bindings for (operators over
// tensor lists). Every function catches C++ exceptions and returns them as a message (freed by
// the caller with rlvr_kernels_free_message); nothing here throws across the C boundary.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

#include "message.h"

#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

std::vector<at::Tensor> list(at::Tensor **tensors, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(*tensors[i]);
  }
  return out;
}

} // namespace

extern "C" {

void rlvr_kernels_free_message(char *message) { std::free(message); }

// One AdamW step over n parameters in place: PyTorch's `torch.optim.AdamW(fused=True)` kernel
// (aten::_fused_adamw_, one pass per parameter). `step` is the 1-based step count after this
// update; gradients are divided by `grad_scale` first (1 for none).
int rlvr_kernels_fused_adamw(at::Tensor **params, at::Tensor **grads, at::Tensor **exp_avgs,
                             at::Tensor **exp_avg_sqs, int64_t n, double step, double lr,
                             double beta1, double beta2, double weight_decay, double eps,
                             double grad_scale, char **error) {
  try {
    if (n == 0) {
      return 0;
    }
    auto p = list(params, n);
    auto g = list(grads, n);
    auto m = list(exp_avgs, n);
    auto v = list(exp_avg_sqs, n);
    auto options = at::TensorOptions().dtype(at::kFloat).device(p[0].device());
    at::Tensor steps_value = at::full({}, step, options);
    std::vector<at::Tensor> steps(static_cast<size_t>(n), steps_value);
    std::optional<at::Tensor> scale;
    if (grad_scale != 1.0) {
      scale = at::full({}, grad_scale, options);
    }
    at::_fused_adamw_(p, g, m, v, {}, steps, lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false, scale, std::nullopt);
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

// Drops the gradient of each of n tensors (`.grad` becomes undefined, its memory released):
// PyTorch's `zero_grad(set_to_none=True)`, which tch has no binding for.
int rlvr_kernels_release_grads(at::Tensor **tensors, int64_t n, char **error) {
  try {
    for (int64_t i = 0; i < n; ++i) {
      tensors[i]->mutable_grad().reset();
    }
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

// One backward pass from n outputs at once, each seeded with its gradient
// (torch::autograd::backward(outputs, grads), what `torch.autograd.backward` runs): what the
// outputs' graphs share is traversed once, and each gradient enters the graph as it is, where a
// scalar root built from the outputs (a sum of dot products) would first copy it. The caller's
// tensors are moved from (left undefined), so the engine holds the only references: each output
// and gradient is freed as soon as the graph no longer needs it, not when the call returns.
int rlvr_kernels_backward(at::Tensor **outputs, at::Tensor **grads, int64_t n, char **error) {
  try {
    std::vector<at::Tensor> outs;
    std::vector<at::Tensor> gs;
    for (int64_t i = 0; i < n; ++i) {
      outs.push_back(std::move(*outputs[i]));
      gs.push_back(std::move(*grads[i]));
    }
    torch::autograd::backward(outs, gs);
    return 0;
  } catch (const std::exception &e) {
    *error = copy_message(e.what());
    return 1;
  }
}

} // extern "C"
