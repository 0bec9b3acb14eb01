// The C ABI over libtorch's c10d that rlvr-dist calls: a TCPStore rendezvous and a process group
// with the collectives rlvr needs. Built two ways from this one file:
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
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string beat_key(int rank) { return "rlvr/heartbeat/" + std::to_string(rank); }

// A rank's heartbeat: every second it writes the time into the store under its key, through its
// own store connection, so that after a failed collective the survivors can tell which ranks
// stopped (died or hung) from those still alive.
struct Heartbeat {
  c10::intrusive_ptr<c10d::Store> store;
  std::atomic<bool> stop{false};
  std::thread thread;

  Heartbeat(const std::string &host, int port, int rank, std::chrono::milliseconds timeout) {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = false;
    opts.waitWorkers = false;
    opts.timeout = timeout;
    store = c10::make_intrusive<c10d::TCPStore>(host, opts);
    beat(rank);
    thread = std::thread([this, rank] {
      while (!stop.load()) {
        for (int i = 0; i < 10 && !stop.load(); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        try {
          beat(rank);
        } catch (...) {
          return; // the store (rank 0) is gone; the next collective reports it
        }
      }
    });
  }

  void beat(int rank) {
    std::string t = std::to_string(now_ms());
    store->set(beat_key(rank), std::vector<uint8_t>(t.begin(), t.end()));
  }

  ~Heartbeat() {
    stop.store(true);
    if (thread.joinable()) {
      thread.join();
    }
  }
};

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  int device;
  int rank;
  int world;
  std::unique_ptr<Heartbeat> heartbeat;
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

// Starts gathering `input` [n] of every rank into the rows of `output` [world, n].
c10::intrusive_ptr<c10d::Work> start_all_gather(const Group *g, at::Tensor &output,
                                                at::Tensor &input) {
  std::vector<at::Tensor> rows;
  for (int64_t r = 0; r < output.size(0); ++r) {
    rows.push_back(output.select(0, r));
  }
  std::vector<std::vector<at::Tensor>> outputs{rows};
  std::vector<at::Tensor> inputs{input};
  c10d::AllgatherOptions opts;
  opts.timeout = g->timeout;
  return g->backend->allgather(outputs, inputs, opts);
}

} // namespace

extern "C" {

// Joins the group: rank 0 serves the TCPStore at host:port, the others connect to it; waits
// until all `world` ranks joined (or `timeout_ms` passed). Gloo's transport binds to the address
// `bind` names when `bind_kind` is 0 (a host name or address), to the network interface `bind`
// when it is 1, and to this machine's host name (loopback if it does not resolve) when it is 2.
// NCCL ignores `bind_kind` and `bind` and works on CUDA device `device`. A non-empty `prefix`
// puts the process group's keys under it (torch's PrefixStore(group_name, store), as SGLang's
// weight-update groups do), so several groups can share a store.
void *RLVR_API(new)(const char *host, int port, int rank, int world, long long timeout_ms,
                    int bind_kind, const char *bind, int device, const char *prefix,
                    char **error) {
  Group *out = nullptr;
  guarded(error, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions store_opts;
    store_opts.port = static_cast<std::uint16_t>(port);
    store_opts.isServer = rank == 0;
    store_opts.numWorkers = static_cast<std::size_t>(world);
    store_opts.waitWorkers = true;
    store_opts.timeout = timeout;
    auto tcp_store = c10::make_intrusive<c10d::TCPStore>(std::string(host), store_opts);
    // The port actually served (rank 0 may have asked for 0: any free port).
    int served_port = tcp_store->getPort();
    // Every rank must have the same WORLD_SIZE; a mismatch would otherwise show only as a
    // timeout (a rank waiting for peers that will never come). Rank 0 reads every other rank's,
    // the others read rank 0's.
    auto size_key = [](int r) { return "rlvr/world_size/" + std::to_string(r); };
    const std::string mine = std::to_string(world);
    tcp_store->set(size_key(rank), std::vector<uint8_t>(mine.begin(), mine.end()));
    auto same_size = [&](int r) {
      auto v = tcp_store->get(size_key(r));
      const std::string theirs(v.begin(), v.end());
      if (theirs != mine) {
        throw std::runtime_error("WORLD_SIZE differs between ranks: rank " + std::to_string(rank) +
                                 " has " + mine + ", rank " + std::to_string(r) + " has " +
                                 theirs + "; start every rank with the same WORLD_SIZE");
      }
    };
    if (rank == 0) {
      for (int r = 1; r < world; ++r) {
        same_size(r);
      }
    } else {
      same_size(0);
    }
    c10::intrusive_ptr<c10d::Store> store = tcp_store;
    if (prefix != nullptr && prefix[0] != '\0') {
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp_store);
    }
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
    auto heartbeat = std::make_unique<Heartbeat>(std::string(host), served_port, rank, timeout);
    out = new Group{store, backend, timeout, device, rank, world, std::move(heartbeat)};
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
    finish(g, start_all_gather(g, *output, *input));
  });
}

// The gather of all_gather started and not waited for: `*work` receives the collective in
// flight (it holds its tensors), to be passed once to work_wait or work_free. The engine runs
// collectives in the order every rank starts them.
int RLVR_API(all_gather_start)(void *group, at::Tensor *output, at::Tensor *input, void **work,
                               char **error) {
  return guarded(error, [&] {
    auto g = static_cast<Group *>(group);
    *work = new c10::intrusive_ptr<c10d::Work>(start_all_gather(g, *output, *input));
  });
}

// Waits for a started collective (as the blocking calls do, up to the group's timeout) and
// frees its handle.
int RLVR_API(work_wait)(void *group, void *work, char **error) {
  auto w = static_cast<c10::intrusive_ptr<c10d::Work> *>(work);
  int status = guarded(error, [&] { finish(static_cast<Group *>(group), *w); });
  delete w;
  return status;
}

// Frees a started collective's handle without waiting (the engine still completes it).
void RLVR_API(work_free)(void *work) { delete static_cast<c10::intrusive_ptr<c10d::Work> *>(work); }

// Sums `input` [world, n] over the ranks into `output` [n], this rank's row of the sum: c10d's
// `_reduce_scatter_base` (NCCL's ncclReduceScatter; Gloo's reduce-scatter).
int RLVR_API(reduce_scatter_sum)(void *group, at::Tensor *output, at::Tensor *input, char **error) {
  return guarded(error, [&] {
    auto g = static_cast<Group *>(group);
    c10d::ReduceScatterOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = g->timeout;
    finish(g, g->backend->_reduce_scatter_base(*output, *input, opts));
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

extern "C" {

// After a failed collective: which ranks stopped. Reads every rank's heartbeat from the store,
// waiting up to `wait_ms` for one to go `stale_ms` without a beat; returns 0 when none did, else
// 1 with a message naming the stopped ranks (or saying that rank 0's store is unreachable).
int RLVR_API(probe)(void *group, long long stale_ms, long long wait_ms, char **error) {
  auto g = static_cast<Group *>(group);
  std::vector<int> stopped;
  try {
    auto deadline = now_ms() + wait_ms;
    while (true) {
      stopped.clear();
      auto now = now_ms();
      for (int r = 0; r < g->world; ++r) {
        if (r == g->rank) {
          continue;
        }
        auto v = g->heartbeat->store->get(beat_key(r));
        long long t = std::stoll(std::string(v.begin(), v.end()));
        if (now - t > stale_ms) {
          stopped.push_back(r);
        }
      }
      if (!stopped.empty() || now_ms() >= deadline) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  } catch (const std::exception &e) {
    *error = copy_message("rank 0 (which serves the rendezvous store) is unreachable: it stopped");
    return 1;
  }
  if (stopped.empty()) {
    return 0;
  }
  std::ostringstream msg;
  msg << (stopped.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < stopped.size(); ++i) {
    msg << (i ? ", " : "") << stopped[i];
  }
  msg << " stopped (no heartbeat for " << stale_ms / 1000.0 << " s: died or hung)";
  *error = copy_message(msg.str().c_str());
  return 1;
}

} // extern "C"
