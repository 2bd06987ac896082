// NCCL backend of Communicator (CUDA builds only; see nccl_communicator.h for the contracts).
//
// Every NCCL communicator is created in non-blocking mode (ncclConfig_t::blocking = 0): NCCL
// calls return at once, possibly with ncclInProgress, and the host polls
// ncclCommGetAsyncError until the call is done — with a timeout, so a missing peer cannot hang
// the host. Each collective then records a completion event on the communication stream that a
// watchdog thread polls (cudaEventQuery, with the same timeout) together with
// ncclCommGetAsyncError of every live communicator. Any failure is fatal for the job: the
// message names the collective, the group rank and the world rank, then comm::abort_job on the
// issuing thread, or an immediate exit of the process on the watchdog thread (no MPI call off
// the thread that initialized MPI; see nccl_watchdog.h).
//
// One enqueue path (NcclCommunicator::queue) serves every device collective: it returns a Work,
// the *_start calls hand it to the caller, and the blocking calls are start + wait().
#include "ulysses/comm/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ulysses/comm/comm_checks.h"
#include "ulysses/comm/nccl_watchdog.h"
#include "ulysses/core/cuda_resources.h"

namespace ulysses::comm {
namespace {

using Clock = std::chrono::steady_clock;
using detail::fatal;
using detail::seconds_str;
using detail::Watchdog;

// True for a result that is an error (ncclInProgress is not: non-blocking communicators
// return it while a call completes in the background).
bool nccl_failed(ncclResult_t result) { return result != ncclSuccess && result != ncclInProgress; }

// Runs `calls(check)` between ncclGroupStart and ncclGroupEnd; `calls` passes every NCCL
// call's result to `check`. The group is always closed (also after a failing call). Returns
// the first failure, else ncclGroupEnd's result (ncclSuccess or ncclInProgress).
template <typename F>
ncclResult_t nccl_group(F&& calls) {
  ncclResult_t first = ncclGroupStart();
  if (nccl_failed(first)) return first;
  calls([&first](ncclResult_t result) {
    if (!nccl_failed(first) && nccl_failed(result)) first = result;
  });
  const ncclResult_t end = ncclGroupEnd();
  return nccl_failed(first) ? first : end;
}

// Where a failure happened, for messages: "all_reduce (group rank 1 of 2, world rank 3)".
std::string where(const std::string& collective, int rank, int size, int world_rank) {
  return "NCCL " + collective + " (group rank " + std::to_string(rank) + " of " +
         std::to_string(size) + ", world rank " + std::to_string(world_rank) + ")";
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return ncclFloat32;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
  }
  UL_FAIL("nccl communicator: unknown dtype");
}

ncclRedOp_t nccl_op(ReduceOp op) { return op == ReduceOp::sum ? ncclSum : ncclMax; }

// Waits until the last call on `comm` is no longer in progress; fatal on error or timeout.
void wait_ready(ncclComm_t comm, ncclResult_t returned, double timeout_s, const std::string& what) {
  if (returned != ncclSuccess && returned != ncclInProgress)
    fatal(what + " failed: " + ncclGetErrorString(returned) + " (" + ncclGetLastError(comm) + ")");
  const auto start = Clock::now();
  for (;;) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm, &state);
    if (result != ncclSuccess)
      fatal(what + ": ncclCommGetAsyncError failed: " + ncclGetErrorString(result));
    if (state == ncclSuccess) return;
    if (state != ncclInProgress)
      fatal(what + " failed: " + ncclGetErrorString(state) + " (" + ncclGetLastError(comm) + ")");
    if (std::chrono::duration<double>(Clock::now() - start).count() > timeout_s)
      fatal(what + " did not complete within " + seconds_str(timeout_s) +
            " (ULYSSES_NCCL_TIMEOUT_S): another rank may have stopped or be elsewhere");
    std::this_thread::yield();
  }
}

ncclConfig_t nonblocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

// What a world and its splits share: the CUDA context (streams) and the watchdog.
struct Shared {
  Context ctx;
  std::shared_ptr<Watchdog> watchdog;
  int world_rank = 0;
};

// The exposed-communication meter (set_wait_timing, take_wait_seconds): while it is on, each
// wait of the compute stream for a collective is bracketed by two timing events, created here
// and destroyed by take_wait_seconds (only benchmarks turn it on). The flag is read on every
// wait, the list only while it is on.
struct TimedWait {
  const char* collective;  // a string literal
  cudaEvent_t before, after;
};
std::atomic<bool> wait_timing_on{false};
std::mutex timed_waits_mutex;
std::vector<TimedWait>& timed_waits() {
  static auto* const waits = new std::vector<TimedWait>;  // never destroyed (exit order)
  return *waits;
}

// Makes the compute stream of `ctx` wait for `done` (recorded after `collective` on the
// communication stream); metered while wait timing is on.
cudaError_t compute_stream_wait(const Context& ctx, cudaEvent_t done, const char* collective) {
  const cudaStream_t stream = cuda_resources(ctx).stream;
  if (wait_timing_on.load(std::memory_order_relaxed)) {
    TimedWait w{collective, nullptr, nullptr};
    if (cudaEventCreate(&w.before) == cudaSuccess && cudaEventCreate(&w.after) == cudaSuccess) {
      cudaError_t status = cudaEventRecord(w.before, stream);
      if (status == cudaSuccess) status = cudaStreamWaitEvent(stream, done, 0);
      if (status == cudaSuccess) status = cudaEventRecord(w.after, stream);
      if (status == cudaSuccess) {
        std::lock_guard<std::mutex> lock(timed_waits_mutex);
        timed_waits().push_back(w);
        return status;
      }
    }
    if (w.before) cudaEventDestroy(w.before);  // not metered: a plain wait below
    if (w.after) cudaEventDestroy(w.after);
  }
  return cudaStreamWaitEvent(stream, done, 0);
}

// A collective queued on the communication stream. wait() makes the compute stream wait for
// its completion event; until then the Work holds the tensors (so the caching allocator cannot
// hand their memory to other work while NCCL still reads or writes it). The *_start calls
// return it; every blocking collective is its start followed by wait() (c10d's Work model).
class StreamWork final : public Work {
 public:
  // collective: its name for the wait meter (a string literal).
  StreamWork(std::shared_ptr<Shared> shared, const char* collective, Tensor send, Tensor recv)
      : shared_(std::move(shared)),
        collective_(collective),
        send_(std::move(send)),
        recv_(std::move(recv)) {
    UL_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  StreamWork(const StreamWork&) = delete;
  StreamWork& operator=(const StreamWork&) = delete;
  ~StreamWork() override {
    // Order the compute stream after the collective before the tensors are released.
    if (queued_ && !waited_) compute_stream_wait(shared_->ctx, done_, collective_);
    cudaEventDestroy(done_);
  }
  // Records the completion event on `stream` after the collective just queued there.
  cudaError_t record_done(cudaStream_t stream) {
    const cudaError_t status = cudaEventRecord(done_, stream);
    queued_ = status == cudaSuccess;
    return status;
  }
  void wait() override {
    if (waited_) return;
    // A collective with nothing to move queued nothing: no wait.
    if (queued_) UL_CUDA_CHECK(compute_stream_wait(shared_->ctx, done_, collective_));
    waited_ = true;
    send_ = Tensor();
    recv_ = Tensor();
  }

 private:
  std::shared_ptr<Shared> shared_;
  const char* collective_;
  Tensor send_, recv_;
  cudaEvent_t done_ = nullptr;
  bool queued_ = false;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  // Takes ownership of comm (ready, not in progress); host is the host communicator of the
  // same group.
  NcclCommunicator(std::shared_ptr<Shared> shared, ncclComm_t comm,
                   std::unique_ptr<Communicator> host)
      : shared_(std::move(shared)), comm_(comm), host_(std::move(host)) {
    rank_ = host_->rank();
    size_ = host_->size();
    int nccl_rank = -1, nccl_size = -1;
    ncclResult_t result = ncclSuccess;
    {
      std::lock_guard<std::mutex> nccl(shared_->watchdog->nccl_mutex());
      result = ncclCommUserRank(comm_, &nccl_rank);
      if (result == ncclSuccess) result = ncclCommCount(comm_, &nccl_size);
    }
    if (result != ncclSuccess)
      fatal(where("communicator", rank_, size_, shared_->world_rank) +
            ": ncclCommUserRank/ncclCommCount failed: " + ncclGetErrorString(result));
    if (nccl_rank != rank_ || nccl_size != size_)
      fatal(where("communicator", rank_, size_, shared_->world_rank) + ": NCCL rank " +
            std::to_string(nccl_rank) + " of " + std::to_string(nccl_size) +
            " disagrees with the host communicator");
    UL_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    shared_->watchdog->add_comm(comm_);
  }
  ~NcclCommunicator() override {
    std::lock_guard<std::mutex> nccl(shared_->watchdog->nccl_mutex());
    shared_->watchdog->remove_comm(comm_);
    // Flush queued work (bounded by the timeout), then free; abort if finalizing fails.
    const double timeout_s = shared_->watchdog->timeout_s();
    ncclResult_t result = ncclCommFinalize(comm_);
    const auto start = Clock::now();
    ncclResult_t state = ncclInProgress;
    while (result == ncclSuccess || result == ncclInProgress) {
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess || state != ncclInProgress) break;
      if (std::chrono::duration<double>(Clock::now() - start).count() > timeout_s) break;
      std::this_thread::yield();
    }
    if ((result == ncclSuccess || result == ncclInProgress) && state == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
    cudaEventDestroy(ready_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  std::vector<int> world_ranks() const override { return host_->world_ranks(); }

  // Blocking collectives: the started one, then wait() (the compute stream waits for it at
  // once). Host tensors go to the host communicator, blocking there.
  void all_to_all(const Tensor& send, Tensor recv) override {
    all_to_all_start(send, std::move(recv))->wait();
  }
  void all_gather(const Tensor& send, Tensor recv) override {
    all_gather_start(send, std::move(recv))->wait();
  }
  void reduce_scatter(const Tensor& send, Tensor recv, ReduceOp op) override {
    reduce_scatter_start(send, std::move(recv), op)->wait();
  }

  std::unique_ptr<Work> all_to_all_start(const Tensor& send, Tensor recv) override {
    detail::check_all_to_all(send, recv, size_);
    if (on_host("all_to_all", send, recv)) return host_->all_to_all_start(send, recv);
    const std::size_t chunk = static_cast<std::size_t>(send.numel() / size_);
    const std::size_t bytes = chunk * dtype_size(send.dtype());
    const ncclDataType_t type = nccl_type(send.dtype());
    const char* s = static_cast<const char*>(send.raw());
    char* r = static_cast<char*>(recv.raw());
    return queue("all_to_all", chunk > 0, send, recv, [&](cudaStream_t stream) {
      return nccl_group([&](auto check) {
        for (int j = 0; j < size_; ++j) {
          check(ncclSend(s + j * bytes, chunk, type, j, comm_, stream));
          check(ncclRecv(r + j * bytes, chunk, type, j, comm_, stream));
        }
      });
    });
  }

  std::unique_ptr<Work> all_gather_start(const Tensor& send, Tensor recv) override {
    detail::check_all_gather(send, recv, size_);
    if (on_host("all_gather", send, recv)) return host_->all_gather_start(send, recv);
    return queue("all_gather", send.numel() > 0, send, recv, [&](cudaStream_t stream) {
      return ncclAllGather(send.raw(), recv.raw(), static_cast<std::size_t>(send.numel()),
                           nccl_type(send.dtype()), comm_, stream);
    });
  }

  std::unique_ptr<Work> reduce_scatter_start(const Tensor& send, Tensor recv,
                                             ReduceOp op) override {
    detail::check_reduce_scatter(send, recv, size_);
    if (on_host("reduce_scatter", send, recv)) return host_->reduce_scatter_start(send, recv, op);
    return queue("reduce_scatter", recv.numel() > 0, send, recv, [&](cudaStream_t stream) {
      return ncclReduceScatter(send.raw(), recv.raw(), static_cast<std::size_t>(recv.numel()),
                               nccl_type(send.dtype()), nccl_op(op), comm_, stream);
    });
  }

  // Collectives without a started form (nothing overlaps them): queued the same way, then
  // waited for at once.
  void all_reduce(Tensor data, ReduceOp op) override {
    detail::check_defined("all_reduce", data, "data");
    if (on_host("all_reduce", data, data)) return host_->all_reduce(data, op);
    queue("all_reduce", data.numel() > 0, data, Tensor(), [&](cudaStream_t stream) {
      return ncclAllReduce(data.raw(), data.raw(), static_cast<std::size_t>(data.numel()),
                           nccl_type(data.dtype()), nccl_op(op), comm_, stream);
    })->wait();
  }

  void broadcast(Tensor data, int root) override {
    detail::check_defined("broadcast", data, "data");
    detail::check_rank_in_group("broadcast", "root", root, size_);
    if (on_host("broadcast", data, data)) return host_->broadcast(data, root);
    queue("broadcast", data.numel() > 0, data, Tensor(), [&](cudaStream_t stream) {
      return ncclBroadcast(data.raw(), data.raw(), static_cast<std::size_t>(data.numel()),
                           nccl_type(data.dtype()), root, comm_, stream);
    })->wait();
  }

  void send(const Tensor& data, int peer, int tag) override {
    check_point_to_point("send", data, peer, tag);
    if (on_host("send", data, data)) return host_->send(data, peer, tag);
    queue("send", data.numel() > 0, data, Tensor(), [&](cudaStream_t stream) {
      return ncclSend(data.raw(), static_cast<std::size_t>(data.numel()), nccl_type(data.dtype()),
                      peer, comm_, stream);
    })->wait();
  }

  void recv(Tensor data, int peer, int tag) override {
    check_point_to_point("recv", data, peer, tag);
    if (on_host("recv", data, data)) return host_->recv(data, peer, tag);
    queue("recv", data.numel() > 0, Tensor(), data, [&](cudaStream_t stream) {
      return ncclRecv(data.raw(), static_cast<std::size_t>(data.numel()), nccl_type(data.dtype()),
                      peer, comm_, stream);
    })->wait();
  }

  void barrier() override { host_->barrier(); }

  std::unique_ptr<Communicator> split(int color, int key) const override {
    UL_CHECK(color >= 0, "split: color ", color, " must be non-negative");
    auto host = host_->split(color, key);
    ncclConfig_t config = nonblocking_config();
    ncclComm_t part = nullptr;
    const std::string what = where("split", rank_, size_, shared_->world_rank);
    {
      std::lock_guard<std::mutex> nccl(shared_->watchdog->nccl_mutex());
      const ncclResult_t result = ncclCommSplit(comm_, color, key, &part, &config);
      wait_ready(comm_, result, shared_->watchdog->timeout_s(), what);
      if (part == nullptr) fatal(what + ": ncclCommSplit returned no communicator");
      wait_ready(part, ncclSuccess, shared_->watchdog->timeout_s(), what);
    }
    return std::make_unique<NcclCommunicator>(shared_, part, std::move(host));
  }

  std::unique_ptr<Work> send_recv_start(const Tensor& send, int send_peer, Tensor recv,
                                        int recv_peer, int tag) override {
    if (size_ == 1) return Communicator::send_recv_start(send, send_peer, recv, recv_peer, tag);
    check_point_to_point("send_recv", send, send_peer, tag);
    check_point_to_point("send_recv", recv, recv_peer, tag);
    UL_CHECK(send.dtype() == recv.dtype(), "send_recv: send is ", dtype_name(send.dtype()),
             " but recv is ", dtype_name(recv.dtype()));
    if (on_host("send_recv", send, recv))
      return host_->send_recv_start(send, send_peer, recv, recv_peer, tag);
    const ncclDataType_t type = nccl_type(send.dtype());
    return queue("send_recv", send.numel() > 0 || recv.numel() > 0, send, recv,
                 [&](cudaStream_t stream) {
                   return nccl_group([&](auto check) {
                     if (send.numel() > 0)
                       check(ncclSend(send.raw(), static_cast<std::size_t>(send.numel()), type,
                                      send_peer, comm_, stream));
                     if (recv.numel() > 0)
                       check(ncclRecv(recv.raw(), static_cast<std::size_t>(recv.numel()), type,
                                      recv_peer, comm_, stream));
                   });
                 });
  }

 private:
  // True for host tensors (to be delegated); checks that device tensors are on our device.
  bool on_host(const char* collective, const Tensor& a, const Tensor& b) const {
    const bool host_a = a.device().is_cpu(), host_b = b.device().is_cpu();
    UL_CHECK(host_a == host_b, collective, ": one tensor is on ", a.device().str(),
             " and the other on ", b.device().str(), "; both must be on the host or both on ",
             shared_->ctx.device.str());
    if (host_a) return true;
    UL_CHECK(a.device() == shared_->ctx.device && b.device() == shared_->ctx.device, collective,
             ": tensor on ", a.device().str(), " but this NCCL communicator is on ",
             shared_->ctx.device.str());
    return false;
  }

  // The one enqueue path of every device collective: orders `enqueue` (NCCL calls on the
  // communication stream; returns the NCCL result) after the compute stream's work so far,
  // registers it with the watchdog and records the returned Work's completion event after it.
  // The compute stream does not wait here: the Work's wait() (or its destruction) makes it wait.
  // The Work keeps send and recv alive until then. has_data false: nothing is queued and the
  // Work is complete. `collective`: a string literal (the wait meter keeps it).
  template <typename F>
  std::unique_ptr<StreamWork> queue(const char* collective, bool has_data, Tensor send, Tensor recv,
                                    F&& enqueue) {
    auto work = std::make_unique<StreamWork>(shared_, collective, std::move(send), std::move(recv));
    if (!has_data) return work;
    CudaResources& cuda = cuda_resources(shared_->ctx);
    const std::string what = where(collective, rank_, size_, shared_->world_rank);
    cudaError_t status = cudaEventRecord(ready_, cuda.stream);
    if (status == cudaSuccess) status = cudaStreamWaitEvent(cuda.comm_stream, ready_, 0);
    if (status != cudaSuccess) fatal(what + ": " + cudaGetErrorString(status));
    {
      std::lock_guard<std::mutex> nccl(shared_->watchdog->nccl_mutex());
      wait_ready(comm_, enqueue(cuda.comm_stream), shared_->watchdog->timeout_s(), what);
    }
    shared_->watchdog->watch(cuda.comm_stream, what);
    status = work->record_done(cuda.comm_stream);
    if (status != cudaSuccess) fatal(what + ": " + cudaGetErrorString(status));
    return work;
  }

  void check_point_to_point(const char* what, const Tensor& data, int peer, int tag) const {
    detail::check_defined(what, data, "data");
    detail::check_rank_in_group(what, "peer", peer, size_);
    UL_CHECK(peer != rank_, what, ": peer ", peer, " is this rank itself");
    UL_CHECK(tag >= 0, what, ": tag ", tag, " must be non-negative");
  }

  std::shared_ptr<Shared> shared_;
  ncclComm_t comm_;
  std::unique_ptr<Communicator> host_;
  cudaEvent_t ready_ = nullptr;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

void set_wait_timing(bool on) { wait_timing_on.store(on, std::memory_order_relaxed); }

std::map<std::string, double> take_wait_seconds() {
  std::vector<TimedWait> waits;
  {
    std::lock_guard<std::mutex> lock(timed_waits_mutex);
    waits.swap(timed_waits());
  }
  std::map<std::string, double> seconds;
  cudaError_t first_error = cudaSuccess;
  for (const TimedWait& w : waits) {
    float milliseconds = 0;
    cudaError_t status = cudaEventSynchronize(w.after);
    if (status == cudaSuccess) status = cudaEventElapsedTime(&milliseconds, w.before, w.after);
    if (status == cudaSuccess) {
      seconds[w.collective] += 1e-3 * static_cast<double>(milliseconds);
    } else if (first_error == cudaSuccess) {
      first_error = status;
    }
    cudaEventDestroy(w.before);
    cudaEventDestroy(w.after);
  }
  UL_CUDA_CHECK(first_error);
  return seconds;
}

double nccl_timeout_seconds() { return collective_timeout_seconds(); }

std::unique_ptr<Communicator> make_nccl_world(Communicator& host_world, const Context& ctx) {
  UL_CHECK(ctx.device.is_cuda() && ctx.cuda, "make_nccl_world: the context is on ",
           ctx.device.str(), "; NCCL needs a CUDA context (make_cuda_context)");
  const double timeout_s = nccl_timeout_seconds();
  // Our own host communicator of the same group (collective over host_world).
  auto host = host_world.split(0, host_world.rank());
  ncclUniqueId id;
  static_assert(sizeof(id) % sizeof(std::int32_t) == 0);
  Tensor id_bytes =
      Tensor::zeros({static_cast<std::int64_t>(sizeof(id) / dtype_size(DType::i32))}, DType::i32);
  const int world_rank = host->world_ranks()[static_cast<std::size_t>(host->rank())];
  const std::string what = where("init", host->rank(), host->size(), world_rank);
  if (host->rank() == 0) {
    const ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) {
      // Tell the others (an all-zero id) so they stop too instead of waiting.
      host->broadcast(id_bytes, 0);
      fatal(what + ": ncclGetUniqueId failed: " + ncclGetErrorString(result));
    }
    std::memcpy(id_bytes.raw(), &id, sizeof(id));
  }
  host->broadcast(id_bytes, 0);
  std::memcpy(&id, id_bytes.raw(), sizeof(id));

  UL_CUDA_CHECK(cudaSetDevice(ctx.device.index));
  ncclConfig_t config = nonblocking_config();
  ncclComm_t comm = nullptr;
  const ncclResult_t result =
      ncclCommInitRankConfig(&comm, host->size(), id, host->rank(), &config);
  if (result != ncclSuccess && result != ncclInProgress)
    fatal(what + ": ncclCommInitRankConfig failed: " + ncclGetErrorString(result));
  wait_ready(comm, ncclSuccess, timeout_s, what);

  auto shared = std::make_shared<Shared>();
  shared->ctx = ctx;
  shared->watchdog = std::make_shared<Watchdog>(ctx.device.index, timeout_s);
  shared->world_rank = world_rank;
  return std::make_unique<NcclCommunicator>(std::move(shared), comm, std::move(host));
}

}  // namespace ulysses::comm
