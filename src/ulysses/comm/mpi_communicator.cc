// MPI backend of Communicator (CPU tensors), on Open MPI's C API.
//
// - MPI starts on the first make_mpi_world() (MPI_Init_thread, funneled: only the thread that
//   called it makes MPI calls) and is finalized by an atexit handler, if we started it. A
//   granted thread level below MPI_THREAD_FUNNELED is an error. No other thread calls MPI: the
//   NCCL watchdog stops its rank without MPI (comm/nccl_communicator.h, "Errors").
// - Every communicator owns its MPI_Comm (the world one is a duplicate of MPI_COMM_WORLD) with
//   MPI_ERRORS_RETURN, so a failing call throws ulysses::Error naming the collective.
// - Element types: f32 -> MPI_FLOAT, bf16 -> MPI_UINT16_T (raw bits), i32, i64. Counts and
//   displacements must fit in an int (MPI's count type); larger transfers throw.
// - Floating-point reductions (f32, bf16) are done here, not by MPI, in a fixed order: the
//   contributions of ranks 0, 1, ..., n-1 are combined left to right in f32 by the rank that owns
//   the elements, and the results are gathered, so every rank gets bit-identical values that do
//   not depend on timing or on MPI's choice of algorithm. bf16 accumulates in f32 and rounds once.
//   Integer reductions use MPI_Allreduce / MPI_Reduce_scatter_block (exact in any order).
// - Watchdog: every collective and point-to-point call is made non-blocking (MPI_I*) and the
//   calling thread polls it (MPI_Test; after the first millisecond with 50 us pauses, which
//   also lets oversubscribed ranks share cores). When it does not complete within
//   collective_timeout_seconds() (read once per world), the rank prints "<collective> did not
//   complete within <t> s ..." with its rank to stderr and stops every rank (abort_job, i.e.
//   MPI_Abort): a rank that stopped or went elsewhere never leaves the others spinning.
//   MPI_Comm_split (group creation, at setup) stays blocking.
// The C API only: without this, Open MPI's mpi.h also pulls in its deprecated C++ bindings,
// which need libmpi_cxx at link time.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <thread>

#include "ulysses/comm/comm_checks.h"
#include "ulysses/comm/communicator.h"

namespace ulysses::comm {
namespace {

void check_mpi(int result, const char* collective) {
  if (result == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(result, text, &length);
  UL_FAIL(collective, ": MPI call failed: ", std::string(text, static_cast<std::size_t>(length)));
}

// Polls `request` until it completes; stops the job after timeout_s (see the file comment).
void wait_or_abort(MPI_Request& request, MPI_Status* status, const char* collective,
                   double timeout_s, int rank, int size) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  int done = 0;
  for (;;) {
    check_mpi(MPI_Test(&request, &done, status), collective);
    if (done) return;
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited > timeout_s) {
      std::fprintf(stderr,
                   "error (rank %d of %d): %s did not complete within %g s "
                   "(ULYSSES_NCCL_TIMEOUT_S): another rank may have stopped or be waiting in a "
                   "different collective; stopping the job\n",
                   rank, size, collective, timeout_s);
      abort_job(1);
    }
    if (waited > 1e-3) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

bool mpi_active() {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

void finalize_mpi_at_exit() {
  if (mpi_active()) MPI_Finalize();
}

void start_mpi_once() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  UL_CHECK(!finalized, "make_mpi_world: MPI has already been finalized");
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = 0;
  if (initialized) {  // started by someone else, who also finalizes it
    check_mpi(MPI_Query_thread(&provided), "MPI_Query_thread");
  } else {
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    std::atexit(finalize_mpi_at_exit);
  }
  // FUNNELED is what the process needs: it has other threads (OpenMP, the NCCL watchdog), and
  // none of them calls MPI. Below it (MPI_THREAD_SINGLE) no other thread may exist at all.
  UL_CHECK(provided >= MPI_THREAD_FUNNELED, "make_mpi_world: MPI provides thread level ", provided,
           ", below MPI_THREAD_FUNNELED (", MPI_THREAD_FUNNELED,
           ") that ulysses needs (its OpenMP and watchdog threads make no MPI calls, but exist); "
           "use an MPI library built with thread support");
}

MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return MPI_FLOAT;
    case DType::bf16: return MPI_UINT16_T;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
  }
  UL_FAIL("mpi communicator: unknown dtype");
}

bool is_floating(DType dtype) { return dtype == DType::f32 || dtype == DType::bf16; }

int mpi_count(std::int64_t count, const char* collective) {
  UL_CHECK(count <= INT_MAX, collective, ": ", count,
           " elements exceed MPI's count limit (INT_MAX); split the transfer into pieces");
  return static_cast<int>(count);
}

std::vector<int> mpi_counts(const std::vector<std::int64_t>& counts, const char* collective) {
  std::vector<int> out;
  out.reserve(counts.size());
  for (const auto c : counts) out.push_back(mpi_count(c, collective));
  return out;
}

void check_cpu(const char* collective, const Tensor& t, const char* name) {
  UL_CHECK(t.device().is_cpu(), collective, ": ", name, " is on ", t.device().str(),
           "; the MPI backend moves CPU tensors only");
}

float load_float(const void* base, DType dtype, std::int64_t i) {
  if (dtype == DType::f32) return static_cast<const float*>(base)[i];
  return bf16_to_float(static_cast<const bf16*>(base)[i]);
}

void store_float(void* base, DType dtype, std::int64_t i, float value) {
  if (dtype == DType::f32) {
    static_cast<float*>(base)[i] = value;
  } else {
    static_cast<bf16*>(base)[i] = float_to_bf16(value);
  }
}

// out[k] = chunk_0[k] (op) chunk_1[k] (op) ... left to right in f32; max propagates NaN.
// chunks: [group_size, n] (f32 or bf16), out: [n] of the same dtype.
void reduce_in_rank_order(const void* chunks, DType dtype, int group_size, std::int64_t n,
                          void* out, ReduceOp op) {
#pragma omp parallel for if (n > 65536)
  for (std::int64_t k = 0; k < n; ++k) {
    float acc = load_float(chunks, dtype, k);
    for (int i = 1; i < group_size; ++i) {
      const float value = load_float(chunks, dtype, i * n + k);
      if (op == ReduceOp::sum) {
        acc = acc + value;
      } else if (std::isnan(value) || value > acc) {
        acc = value;
      }
    }
    store_float(out, dtype, k, acc);
  }
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::sum ? MPI_SUM : MPI_MAX; }

// A posted MPI_Isend + MPI_Irecv pair (send_recv_start): wait() polls both under the watchdog
// and checks the received count; the Work holds both tensors until then.
class MpiPairWork final : public Work {
 public:
  MpiPairWork(Tensor send, Tensor recv, int recv_peer, int tag, double timeout_s, int rank,
              int size)
      : send_(std::move(send)),
        recv_(std::move(recv)),
        recv_peer_(recv_peer),
        tag_(tag),
        timeout_s_(timeout_s),
        rank_(rank),
        size_(size) {}
  MpiPairWork(const MpiPairWork&) = delete;
  MpiPairWork& operator=(const MpiPairWork&) = delete;
  ~MpiPairWork() override {
    if (waited_) return;
    try {
      wait();
    } catch (const Error& e) {
      std::fprintf(stderr, "error (rank %d of %d): %s\n", rank_, size_, e.what());
      abort_job(1);
    }
  }
  MPI_Request* requests() { return requests_; }

  void wait() override {
    if (waited_) return;
    waited_ = true;
    MPI_Status status;
    wait_or_abort(requests_[0], MPI_STATUS_IGNORE, "send_recv", timeout_s_, rank_, size_);
    wait_or_abort(requests_[1], &status, "send_recv", timeout_s_, rank_, size_);
    const MPI_Datatype type = mpi_type(recv_.dtype());
    int received = 0;
    check_mpi(MPI_Get_count(&status, type, &received), "send_recv");
    const std::int64_t expected = recv_.numel();
    send_ = Tensor();
    recv_ = Tensor();
    UL_CHECK(received == expected, "send_recv: got ", received, " elements from rank ",
             recv_peer_, " (tag ", tag_, "), expected ", expected);
  }

 private:
  Tensor send_, recv_;
  MPI_Request requests_[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  int recv_peer_, tag_;
  double timeout_s_;
  int rank_, size_;
  bool waited_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of comm (freed on destruction).
  explicit MpiCommunicator(MPI_Comm comm, double timeout_s) : comm_(comm), timeout_s_(timeout_s) {
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "communicator");
    check_mpi(MPI_Comm_rank(comm_, &rank_), "communicator");
    check_mpi(MPI_Comm_size(comm_, &size_), "communicator");
    MPI_Group group;
    MPI_Group world_group;
    check_mpi(MPI_Comm_group(comm_, &group), "world_ranks");
    check_mpi(MPI_Comm_group(MPI_COMM_WORLD, &world_group), "world_ranks");
    std::vector<int> group_ranks(static_cast<std::size_t>(size_));
    std::iota(group_ranks.begin(), group_ranks.end(), 0);
    world_ranks_.resize(group_ranks.size());
    check_mpi(MPI_Group_translate_ranks(group, size_, group_ranks.data(), world_group,
                                        world_ranks_.data()),
              "world_ranks");
    MPI_Group_free(&group);
    MPI_Group_free(&world_group);
    // A group of one: its collectives are copies, which the self communicator makes on any
    // device (a one-GPU job trains every ZeRO stage and offload on its MPI world of one).
    if (size_ == 1) alone_ = make_self_communicator();
  }
  ~MpiCommunicator() override {
    if (mpi_active()) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  std::vector<int> world_ranks() const override { return world_ranks_; }

  void all_to_all(const Tensor& send, Tensor recv) override {
    if (alone_) return alone_->all_to_all(send, recv);
    detail::check_all_to_all(send, recv, size_);
    check_cpu("all_to_all", send, "send");
    check_cpu("all_to_all", recv, "recv");
    const int chunk = mpi_count(send.numel() / size_, "all_to_all");
    const MPI_Datatype type = mpi_type(send.dtype());
    run("all_to_all", [&](MPI_Request* request) {
      return MPI_Ialltoall(send.raw(), chunk, type, recv.raw(), chunk, type, comm_, request);
    });
  }

  void all_gather(const Tensor& send, Tensor recv) override {
    if (alone_) return alone_->all_gather(send, recv);
    detail::check_all_gather(send, recv, size_);
    check_cpu("all_gather", send, "send");
    check_cpu("all_gather", recv, "recv");
    mpi_count(recv.numel(), "all_gather");
    const int count = mpi_count(send.numel(), "all_gather");
    const MPI_Datatype type = mpi_type(send.dtype());
    run("all_gather", [&](MPI_Request* request) {
      return MPI_Iallgather(send.raw(), count, type, recv.raw(), count, type, comm_, request);
    });
  }

  void reduce_scatter(const Tensor& send, Tensor recv, ReduceOp op) override {
    if (alone_) return alone_->reduce_scatter(send, recv, op);
    detail::check_reduce_scatter(send, recv, size_);
    check_cpu("reduce_scatter", send, "send");
    check_cpu("reduce_scatter", recv, "recv");
    mpi_count(send.numel(), "reduce_scatter");
    const std::int64_t n = recv.numel();
    const int count = mpi_count(n, "reduce_scatter");
    const MPI_Datatype type = mpi_type(send.dtype());
    if (!is_floating(send.dtype())) {
      run("reduce_scatter", [&](MPI_Request* request) {
        return MPI_Ireduce_scatter_block(send.raw(), recv.raw(), count, type, mpi_op(op), comm_,
                                         request);
      });
      return;
    }
    // chunks: [size, n], chunk i = rank i's contribution to this rank's block.
    Tensor chunks = Tensor::empty({size_, n}, send.dtype());
    run("reduce_scatter", [&](MPI_Request* request) {
      return MPI_Ialltoall(send.raw(), count, type, chunks.raw(), count, type, comm_, request);
    });
    reduce_in_rank_order(chunks.raw(), send.dtype(), size_, n, recv.raw(), op);
  }

  void all_reduce(Tensor data, ReduceOp op) override {
    if (alone_) return alone_->all_reduce(data, op);
    detail::check_defined("all_reduce", data, "data");
    check_cpu("all_reduce", data, "data");
    const std::int64_t total = data.numel();
    const MPI_Datatype type = mpi_type(data.dtype());
    if (!is_floating(data.dtype())) {
      run("all_reduce", [&](MPI_Request* request) {
        return MPI_Iallreduce(MPI_IN_PLACE, data.raw(), mpi_count(total, "all_reduce"), type,
                              mpi_op(op), comm_, request);
      });
      return;
    }
    // Rank j reduces block j of a near-equal split, then every rank gathers all blocks.
    std::vector<std::int64_t> block_sizes(static_cast<std::size_t>(size_));
    for (int j = 0; j < size_; ++j) block_sizes[j] = total / size_ + (j < total % size_ ? 1 : 0);
    const std::vector<std::int64_t> block_offsets = detail::prefix_offsets(block_sizes);
    const std::vector<int> send_sizes = mpi_counts(block_sizes, "all_reduce");
    const std::vector<int> send_offsets = mpi_counts(block_offsets, "all_reduce");
    const std::int64_t my_block = block_sizes[rank_];
    const std::vector<int> recv_sizes(block_sizes.size(), mpi_count(my_block, "all_reduce"));
    std::vector<int> recv_offsets(block_sizes.size());
    for (int i = 0; i < size_; ++i) recv_offsets[i] = mpi_count(i * my_block, "all_reduce");
    // chunks: [size, my_block], chunk i = rank i's copy of this rank's block.
    Tensor chunks = Tensor::empty({size_, my_block}, data.dtype());
    run("all_reduce", [&](MPI_Request* request) {
      return MPI_Ialltoallv(data.raw(), send_sizes.data(), send_offsets.data(), type, chunks.raw(),
                            recv_sizes.data(), recv_offsets.data(), type, comm_, request);
    });
    char* base = static_cast<char*>(data.raw());
    reduce_in_rank_order(chunks.raw(), data.dtype(), size_, my_block,
                         base + block_offsets[rank_] * dtype_size(data.dtype()), op);
    run("all_reduce", [&](MPI_Request* request) {
      return MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data.raw(), send_sizes.data(),
                             send_offsets.data(), type, comm_, request);
    });
  }

  void broadcast(Tensor data, int root) override {
    if (alone_) return alone_->broadcast(data, root);
    detail::check_defined("broadcast", data, "data");
    detail::check_rank_in_group("broadcast", "root", root, size_);
    check_cpu("broadcast", data, "data");
    run("broadcast", [&](MPI_Request* request) {
      return MPI_Ibcast(data.raw(), mpi_count(data.numel(), "broadcast"), mpi_type(data.dtype()),
                        root, comm_, request);
    });
  }

  void send(const Tensor& data, int peer, int tag) override {
    check_point_to_point("send", data, peer, tag);
    run("send", [&](MPI_Request* request) {
      return MPI_Isend(data.raw(), mpi_count(data.numel(), "send"), mpi_type(data.dtype()), peer,
                       tag, comm_, request);
    });
  }

  void recv(Tensor data, int peer, int tag) override {
    check_point_to_point("recv", data, peer, tag);
    const MPI_Datatype type = mpi_type(data.dtype());
    MPI_Status status;
    const int expected = mpi_count(data.numel(), "recv");
    run(
        "recv",
        [&](MPI_Request* request) {
          return MPI_Irecv(data.raw(), expected, type, peer, tag, comm_, request);
        },
        &status);
    int received = 0;
    check_mpi(MPI_Get_count(&status, type, &received), "recv");
    UL_CHECK(received == expected, "recv: got ", received, " elements from rank ", peer, " (tag ",
             tag, "), expected ", expected);
  }

  void barrier() override {
    run("barrier", [&](MPI_Request* request) { return MPI_Ibarrier(comm_, request); });
  }

  std::unique_ptr<Communicator> split(int color, int key) const override {
    UL_CHECK(color >= 0, "split: color ", color, " must be non-negative");
    MPI_Comm part;
    check_mpi(MPI_Comm_split(comm_, color, key, &part), "split");
    return std::make_unique<MpiCommunicator>(part, timeout_s_);
  }

  std::unique_ptr<Work> send_recv_start(const Tensor& send, int send_peer, Tensor recv,
                                        int recv_peer, int tag) override {
    if (alone_) return alone_->send_recv_start(send, send_peer, recv, recv_peer, tag);
    check_point_to_point("send_recv", send, send_peer, tag);
    check_point_to_point("send_recv", recv, recv_peer, tag);
    UL_CHECK(send.dtype() == recv.dtype(), "send_recv: send is ", dtype_name(send.dtype()),
             " but recv is ", dtype_name(recv.dtype()));
    const int send_count = mpi_count(send.numel(), "send_recv");
    const int recv_count = mpi_count(recv.numel(), "send_recv");
    const MPI_Datatype type = mpi_type(send.dtype());
    auto work = std::make_unique<MpiPairWork>(send, recv, recv_peer, tag, timeout_s_, rank_, size_);
    check_mpi(MPI_Irecv(recv.raw(), recv_count, type, recv_peer, tag, comm_, &work->requests()[1]),
              "send_recv");
    check_mpi(MPI_Isend(send.raw(), send_count, type, send_peer, tag, comm_, &work->requests()[0]),
              "send_recv");
    return work;
  }

 private:
  void check_point_to_point(const char* what, const Tensor& data, int peer, int tag) const {
    detail::check_defined(what, data, "data");
    check_cpu(what, data, "data");
    detail::check_rank_in_group(what, "peer", peer, size_);
    UL_CHECK(peer != rank_, what, ": peer ", peer,
             " is this rank itself (a blocking send to oneself can deadlock)");
    UL_CHECK(tag >= 0, what, ": tag ", tag, " must be non-negative");
  }

  // Starts a non-blocking MPI call (`start` fills the request) and waits for it under the
  // watchdog.
  template <typename Start>
  void run(const char* collective, Start&& start, MPI_Status* status = MPI_STATUS_IGNORE) {
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(start(&request), collective);
    wait_or_abort(request, status, collective, timeout_s_, rank_, size_);
  }

  MPI_Comm comm_;
  std::unique_ptr<Communicator> alone_;  // size 1: collectives go to a self communicator
  double timeout_s_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world() {
  start_mpi_once();
  MPI_Comm world;
  check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &world), "make_mpi_world");
  return std::make_unique<MpiCommunicator>(world, collective_timeout_seconds());
}

}  // namespace ulysses::comm
