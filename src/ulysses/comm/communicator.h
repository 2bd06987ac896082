// Communicator: one process group and its collectives, with a self backend (a group of one), an
// MPI backend for host tensors (and any tensor in a group of one) and an NCCL backend for GPUs
// (comm/nccl_communicator.h).
//
// Contracts:
// - Collectives are called by every rank of the group in the same order (as MPI/NCCL require).
// - Tensors are contiguous; element counts are in elements of the tensor's dtype (f32, bf16,
//   i32, i64). Send and receive buffers must not overlap unless stated.
// - Reductions on f32 are deterministic for a given group size (MPI reduces in rank order here:
//   the MPI backend uses a fixed reduction order so results do not depend on timing).
// - Errors (mismatched sizes, a failing MPI call) throw ulysses::Error naming the collective.
// - A communicator is used from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ulysses/core/tensor.h"

namespace ulysses::comm {

enum class ReduceOp { sum, max };

// Blocking and started collectives (PyTorch c10d's Work model): all_to_all, all_gather and
// reduce_scatter come in both forms with one implementation per backend. The NCCL backend
// queues the collective once and its blocking call is start + wait(); the host backends (MPI,
// self) finish the work in the blocking call, and their started form (the defaults in
// communicator.cc) calls it and returns a completed Work. A caller may use either form.
//
// A collective started by an *_start call. wait() orders the caller's later work after it (on
// a GPU: the compute stream waits for the communication stream; the host does not block); it
// keeps the collective's tensors alive until then. Destroying a Work without wait() waits.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "mpi", "self", "nccl"
  // World ranks of this group's members, in group rank order (the NCCL backend names the world
  // rank in its messages with it; tests check splits with it).
  virtual std::vector<int> world_ranks() const = 0;

  // Equal splits: send and recv both hold size() chunks of numel / size() elements; chunk j of
  // send goes to rank j, chunk i of recv came from rank i.
  virtual void all_to_all(const Tensor& send, Tensor recv) = 0;
  // all_to_all that may run while the caller queues more work: send and recv must not be
  // touched until the returned Work's wait(). The NCCL backend runs it on the communication
  // stream after the compute stream's work so far; other backends complete it before returning.
  virtual std::unique_ptr<Work> all_to_all_start(const Tensor& send, Tensor recv);
  // recv: size() * send.numel() elements, rank i's contribution at chunk i.
  virtual void all_gather(const Tensor& send, Tensor recv) = 0;
  // send: size() * recv.numel() elements; rank i receives the reduction of every rank's chunk i.
  virtual void reduce_scatter(const Tensor& send, Tensor recv, ReduceOp op) = 0;
  // Started versions of all_gather and reduce_scatter, with all_to_all_start's contract: send
  // and recv must not be touched (send not written, recv not read or written) until the
  // returned Work's wait(); the Work keeps both alive until then. The NCCL backend queues them
  // on the communication stream after the compute stream's work so far (host tensors: blocking,
  // over the host communicator); the defaults run the blocking collective and return a
  // completed Work.
  virtual std::unique_ptr<Work> all_gather_start(const Tensor& send, Tensor recv);
  virtual std::unique_ptr<Work> reduce_scatter_start(const Tensor& send, Tensor recv, ReduceOp op);
  // In place.
  virtual void all_reduce(Tensor data, ReduceOp op) = 0;
  virtual void broadcast(Tensor data, int root) = 0;
  // Point-to-point. No training path calls them today; they stay as the base of the ring
  // strategy's key/value passing (issue 14), which the Ulysses-only trainer does not have yet.
  virtual void send(const Tensor& data, int peer, int tag) = 0;
  virtual void recv(Tensor data, int peer, int tag) = 0;
  // Host barrier; the benchmarks align the ranks with it before timing.
  virtual void barrier() = 0;

  // Paired point-to-point exchange (ring attention): sends `send` to rank send_peer and
  // receives `recv` (same dtype, its own element count) from rank recv_peer, both in flight at
  // once, so a ring in which every rank sends to one neighbour and receives from the other
  // cannot deadlock. With all_to_all_start's contract: send and recv must not be touched (send
  // not written, recv not read or written) until the returned Work's wait(), which keeps both
  // alive until then. A peer may be this rank only in a group of one (recv = send, a copy).
  // The MPI backend posts MPI_Isend/MPI_Irecv and wait() polls them under the watchdog; the
  // NCCL backend queues a grouped ncclSend/ncclRecv on the communication stream after the
  // compute stream's work so far (host tensors: over the host communicator). The default runs
  // blocking send and recv, ordered along the cycles of the shift so that none deadlocks; it
  // supports ring shifts only (send_peer = rank + s, recv_peer = rank - s, modulo size).
  virtual std::unique_ptr<Work> send_recv_start(const Tensor& send, int send_peer, Tensor recv,
                                                int recv_peer, int tag);
  // Blocking send_recv_start(...)->wait().
  void send_recv(const Tensor& send, int send_peer, Tensor recv, int recv_peer, int tag) {
    send_recv_start(send, send_peer, std::move(recv), recv_peer, tag)->wait();
  }

  // Collective over this group: ranks with the same color form a new group, ordered by key
  // (then by rank).
  virtual std::unique_ptr<Communicator> split(int color, int key) const = 0;
};

// Collective: the sum of every rank's `value`, added in group rank order on every rank (so it
// is the same bits everywhere, whatever the backend's reduction order). Host-side, for scalars
// such as loss sums and squared norms.
double sum_in_rank_order(Communicator& group, double value);

// A group of one process: every collective is a copy (or nothing). Needs no MPI.
std::unique_ptr<Communicator> make_self_communicator();

// MPI_COMM_WORLD, initializing MPI on first use (MPI_Init_thread, funneled) and finalizing it at
// exit. Works without mpirun too (a singleton world of size 1). Only the thread that called it
// first may call MPI (through any MPI communicator, or abort_job); throws Error when MPI grants
// a thread level below MPI_THREAD_FUNNELED.
std::unique_ptr<Communicator> make_mpi_world();
// True when the process was started by mpirun/srun with more than one rank (environment check,
// no MPI call).
bool launched_with_several_ranks();

// Seconds a collective may take before the job is stopped (MPI backend: the host polls its
// non-blocking MPI calls; NCCL backend: its watchdog). One process-level setting for both
// backends: ULYSSES_NCCL_TIMEOUT_S when set (a positive number of seconds), else 600. Error
// naming the variable when malformed.
double collective_timeout_seconds();

// Stops every rank of the job now (MPI_Abort when MPI is running, exit otherwise). Used after
// an error that happened on some ranks only, where waiting for the others could hang. Call it
// from the thread that initialized MPI (MPI_THREAD_FUNNELED); other threads exit the process
// without MPI instead (the NCCL watchdog, comm/nccl_communicator.h).
[[noreturn]] void abort_job(int exit_code);

}  // namespace ulysses::comm
