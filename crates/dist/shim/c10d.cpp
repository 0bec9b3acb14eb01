// The C ABI over libtorch's c10d that rlvr-dist calls: a TCPStore rendezvous and a process group
// with the four collectives rlvr needs. Built two ways from this one file:
// - by rlvr-dist's build script: the Gloo process group (the engine torch.distributed uses on
//   CPU), functions named rlvr_c10d_*, linked into every rlvr binary;
// - with -DRLVR_NCCL by scripts/build-nccl-shim.sh on a CUDA machine: the NCCL process group,
//   functions named rlvr_nccl_*, a shared library rlvr loads at run time (docs/distributed.md).
// Every function catches C++ exceptions and returns them as a message (freed by the caller with
// *_free_message); nothing here throws across the C boundary.
//
// Only c10d types are touched here; gloo's types appear solely behind shared_ptr in the c10d
// headers, so gloo's headers are needed to compile but their version does not shape any object
// this file builds (see docs/distributed.md).
#ifdef RLVR_NCCL
#define USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define RLVR_API(name) rlvr_nccl_##name
#else
#define USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#define RLVR_API(name) rlvr_c10d_##name
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  int device;
};

char *copy_message(const char *text) {
  size_t n = std::strlen(text);
  char *out = static_cast<char *>(std::malloc(n + 1));
  if (out != nullptr) {
    std::memcpy(out, text, n + 1);
  }
  return out;
}

template <typename F> int guarded(char **error, F &&body) {
  try {
    body();
    return 0;
  } catch (const std::exception &e) {
    if (error != nullptr) {
      *error = copy_message(e.what());
    }
  } catch (...) {
    if (error != nullptr) {
      *error = copy_message("unknown C++ exception");
    }
  }
  return 1;
}

void finish(const Group *g, c10::intrusive_ptr<c10d::Work> work) {
  if (!work->wait(g->timeout)) {
    throw std::runtime_error("collective did not complete");
  }
}

} // namespace

extern "C" {

// Joins the group: rank 0 serves the TCPStore at host:port, the others connect to it; waits
// until all `world` ranks joined (or `timeout_ms` passed). Gloo's transport binds to the address
// `bind` names when `bind_kind` is 0 (a host name or address), to the network interface `bind`
// when it is 1, and to this machine's host name (loopback if it does not resolve) when it is 2.
// NCCL ignores `bind_kind` and `bind` and works on CUDA device `device`.
void *RLVR_API(new)(const char *host, int port, int rank, int world, long long timeout_ms,
                    int bind_kind, const char *bind, int device, char **error) {
  Group *out = nullptr;
  guarded(error, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions store_opts;
    store_opts.port = static_cast<std::uint16_t>(port);
    store_opts.isServer = rank == 0;
    store_opts.numWorkers = static_cast<std::size_t>(world);
    store_opts.waitWorkers = true;
    store_opts.timeout = timeout;
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), store_opts);
#ifdef RLVR_NCCL
    (void)bind_kind;
    (void)bind;
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    c10::intrusive_ptr<c10d::Backend> backend =
        c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
#else
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (bind_kind == 0) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(std::string(bind)));
    } else if (bind_kind == 1) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(std::string(bind)));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    opts->threads = 1;
    c10::intrusive_ptr<c10d::Backend> backend =
        c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
#endif
    out = new Group{store, backend, timeout, device};
  });
  return out;
}

void RLVR_API(free)(void *group) { delete static_cast<Group *>(group); }

void RLVR_API(free_message)(char *message) { std::free(message); }

// In-place sum over ranks of a contiguous CPU tensor.
int RLVR_API(all_reduce_sum)(void *group, at::Tensor *tensor, char **error) {
  return guarded(error, [&] {
    auto g = static_cast<Group *>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    finish(g, g->backend->allreduce(tensors, opts));
  });
}

// In-place broadcast of `tensor` from `root`.
int RLVR_API(broadcast)(void *group, at::Tensor *tensor, int root, char **error) {
  return guarded(error, [&] {
    auto g = static_cast<Group *>(group);
    std::vector<at::Tensor> tensors{*tensor};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.timeout = g->timeout;
    finish(g, g->backend->broadcast(tensors, opts));
  });
}

// Gathers `input` [n] of every rank into the rows of `output` [world, n].
int RLVR_API(all_gather)(void *group, at::Tensor *output, at::Tensor *input, char **error) {
  return guarded(error, [&] {
    auto g = static_cast<Group *>(group);
    std::vector<at::Tensor> rows;
    for (int64_t r = 0; r < output->size(0); ++r) {
      rows.push_back(output->select(0, r));
    }
    std::vector<std::vector<at::Tensor>> outputs{rows};
    std::vector<at::Tensor> inputs{*input};
    c10d::AllgatherOptions opts;
    opts.timeout = g->timeout;
    finish(g, g->backend->allgather(outputs, inputs, opts));
  });
}

int RLVR_API(barrier)(void *group, char **error) {
  return guarded(error, [&] {
    auto g = static_cast<Group *>(group);
    c10d::BarrierOptions opts;
    opts.timeout = g->timeout;
#ifdef RLVR_NCCL
    opts.device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(g->device));
#endif
    finish(g, g->backend->barrier(opts));
  });
}

} // extern "C"
