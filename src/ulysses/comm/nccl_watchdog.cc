// The NCCL watchdog (CUDA builds only; see nccl_watchdog.h).
#include "ulysses/comm/nccl_watchdog.h"

#include <cstdio>
#include <cstdlib>

#include "ulysses/comm/communicator.h"

namespace ulysses::comm::detail {

void fatal(const std::string& message) {
  std::fprintf(stderr, "error: %s; stopping every rank of the job\n", message.c_str());
  abort_job(1);
}

void stop_from_watchdog(const std::string& message) {
  std::fprintf(stderr, "error: %s; stopping this rank (the job stops with it)\n", message.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

std::string seconds_str(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", seconds);
  return text;
}

Watchdog::Watchdog(int device, double timeout_s) : device_(device), timeout_s_(timeout_s) {
  thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  for (const auto& p : pending_) cudaEventDestroy(p.event);
  for (const auto event : free_events_) cudaEventDestroy(event);
}

void Watchdog::add_comm(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(mutex_);
  comms_.push_back(comm);
}

void Watchdog::remove_comm(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::erase(comms_, comm);
}

void Watchdog::watch(cudaStream_t stream, std::string what) {
  cudaEvent_t event = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!free_events_.empty()) {
      event = free_events_.back();
      free_events_.pop_back();
    }
  }
  if (event == nullptr && cudaEventCreateWithFlags(&event, cudaEventDisableTiming) != cudaSuccess)
    fatal(what + ": cudaEventCreate failed");
  const cudaError_t status = cudaEventRecord(event, stream);
  if (status != cudaSuccess)
    fatal(what + ": cudaEventRecord failed: " + cudaGetErrorString(status));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({event, std::move(what), Clock::now()});
  }
  wake_.notify_all();
}

void Watchdog::loop() {
  cudaSetDevice(device_);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    if (pending_.empty()) {
      wake_.wait_for(lock, std::chrono::milliseconds(200));
      continue;
    }
    // Collectives complete in stream order: retire finished ones from the front.
    while (!pending_.empty()) {
      Pending& front = pending_.front();
      const cudaError_t status = cudaEventQuery(front.event);
      if (status == cudaSuccess) {
        free_events_.push_back(front.event);
        pending_.pop_front();
        continue;
      }
      if (status != cudaErrorNotReady)
        stop_from_watchdog(front.what + " failed on the GPU: " + cudaGetErrorString(status));
      const double waited = std::chrono::duration<double>(Clock::now() - front.start).count();
      if (waited > timeout_s_)
        stop_from_watchdog(
            front.what + " did not complete within " + seconds_str(timeout_s_) +
            " (ULYSSES_NCCL_TIMEOUT_S): another rank may have stopped or be waiting in a "
            "different collective");
      break;
    }
    lock.unlock();
    poll_comms();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    lock.lock();
  }
}

void Watchdog::poll_comms() {
  std::lock_guard<std::mutex> nccl(nccl_mutex_);
  std::vector<ncclComm_t> comms;
  std::string what = "NCCL";
  {
    std::lock_guard<std::mutex> lock(mutex_);
    comms = comms_;
    if (!pending_.empty()) what = pending_.front().what;
  }
  for (const auto comm : comms) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t result = ncclCommGetAsyncError(comm, &state);
    if (result != ncclSuccess || (state != ncclSuccess && state != ncclInProgress))
      stop_from_watchdog(what + ": NCCL reported an asynchronous error: " +
                         ncclGetErrorString(result != ncclSuccess ? result : state) + " (" +
                         ncclGetLastError(comm) + ")");
  }
}

}  // namespace ulysses::comm::detail
