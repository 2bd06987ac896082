// CopyStream: asynchronous copies between device memory and pinned host memory on a CUDA stream
// of their own, ordered with the context's compute stream (and the host) by marks (events).
//
// On a CUDA context the copies run on a non-blocking stream owned by the CopyStream, so they
// overlap the compute stream's kernels and the communication stream's collectives; a copy from
// or into pageable host memory is still correct but blocks the host (the CUDA runtime stages
// it). On a CPU context (or a build without CUDA) every copy completes before copy() returns
// and marks are no-ops, so code written against a CopyStream runs unchanged on the CPU.
//
// Ordering is the caller's: a copy may start before the compute stream's earlier work is done
// unless wait_for_compute() was called after that work was queued; the compute stream (or the
// host) sees a copy's result only after waiting for a mark recorded after it. The caller keeps
// both tensors of a copy alive, and neither reads nor writes them in a way that races the copy,
// until a mark recorded after it was waited for. Not thread-safe: one thread queues.
#pragma once

#include <memory>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses {

struct CopyStreamImpl;  // the stream and its device (CUDA builds)
struct CopyMarkImpl;    // one event

// A point in a CopyStream's queue (an event). Default: nothing to wait for.
class CopyMark {
 public:
  bool defined() const { return impl_ != nullptr; }

 private:
  friend class CopyStream;
  std::shared_ptr<CopyMarkImpl> impl_;
};

class CopyStream {
 public:
  explicit CopyStream(const Context& ctx);
  // Waits for the queued copies.
  ~CopyStream();
  CopyStream(const CopyStream&) = delete;
  CopyStream& operator=(const CopyStream&) = delete;

  // Whether copies are asynchronous (a CUDA context).
  bool asynchronous() const { return impl_ != nullptr; }
  // Later copies start after the compute stream's work queued so far.
  void wait_for_compute();
  // Queues dst <- src (same shape and dtype; any devices, typically one side on the context's
  // device and the other in pinned host memory).
  void copy(Tensor dst, const Tensor& src);
  // A mark after the copies queued so far.
  CopyMark record();
  // The compute stream's later work waits for `mark` (no host synchronization).
  void compute_waits(const CopyMark& mark);
  // The host blocks until `mark` is reached.
  static void host_waits(const CopyMark& mark);

 private:
  std::shared_ptr<CopyStreamImpl> impl_;  // null: synchronous (CPU)
};

}  // namespace ulysses
