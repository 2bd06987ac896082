// The NCCL backend's watchdog and its two ways of stopping a failed job (internal to
// src/ulysses/comm/, CUDA builds only; the contracts are in nccl_communicator.h, "Errors").
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ulysses::comm::detail {

// A failure seen by the issuing thread (the thread that initialized MPI): prints "error:
// <message>; stopping every rank of the job" and calls comm::abort_job (MPI_Abort).
[[noreturn]] void fatal(const std::string& message);

// A failure seen by the watchdog thread. MPI runs at MPI_THREAD_FUNNELED (only the thread that
// initialized it calls MPI), so this thread must not call MPI_Abort: the issuing thread may be
// inside an MPI call at the same moment. It prints the message and ends this process at once
// (std::_Exit, exit status 1: no atexit handlers, no MPI_Finalize). The other ranks stop too:
// mpirun (and srun --kill-on-bad-exit) ends the job when a rank exits without MPI_Finalize, and
// without a launcher that does, their own collectives with this rank never complete, so their
// watchdogs stop them within the same timeout. No NCCL call here either (NCCL calls are not
// thread-safe and the issuing thread may hold the NCCL mutex): the driver frees the GPU state.
[[noreturn]] void stop_from_watchdog(const std::string& message);

// "5 s", "0.5 s": a timeout for messages.
std::string seconds_str(double seconds);

// Collectives queued on the communication stream, in order, and the communicators to poll.
// Shared by a world and its splits (they share the stream); the thread runs while any of them
// lives. NCCL calls are not thread-safe, not even on different communicators of one device
// (NCCL's thread-safety notes), and ncclCommGetAsyncError on a non-blocking communicator
// advances its state: every NCCL call of the issuing thread and the watchdog's polls hold
// nccl_mutex() (taken before the internal mutex, never after it).
// Failures: watch() runs on the issuing thread (fatal); the thread's polls stop the rank with
// stop_from_watchdog (no MPI).
class Watchdog {
 public:
  // Starts the thread on `device`; a collective older than timeout_s stops the rank.
  Watchdog(int device, double timeout_s);
  ~Watchdog();  // stops and joins the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  double timeout_s() const { return timeout_s_; }
  std::mutex& nccl_mutex() { return nccl_mutex_; }

  // Communicators whose asynchronous errors the thread polls.
  void add_comm(ncclComm_t comm);
  void remove_comm(ncclComm_t comm);

  // Records a completion event on `stream` for the collective `what` just queued there.
  void watch(cudaStream_t stream, std::string what);

 private:
  using Clock = std::chrono::steady_clock;
  struct Pending {
    cudaEvent_t event;
    std::string what;
    Clock::time_point start;
  };

  void loop();
  // Asynchronous errors of the communicators (a peer gone, a network failure), between the
  // issuing thread's NCCL calls.
  void poll_comms();

  int device_;
  double timeout_s_;
  std::mutex nccl_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> free_events_;
  std::vector<ncclComm_t> comms_;
  std::thread thread_;  // last: started after every other member exists
};

}  // namespace ulysses::comm::detail
