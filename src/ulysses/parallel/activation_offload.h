// Activation offload (--offload-activations): an ActivationStore (model/decoder.h) that moves
// each checkpointed layer's kept tensors (its input x and, unless attention is recomputed, the
// attention output att) to pinned host memory during the forward and brings them back, one
// layer ahead, during the backward. Everything is asynchronous on the store's own copy stream,
// ordered with the compute stream by events, so the copies overlap the layers' compute and the
// host never waits:
//
//   stash(l)   the copy stream waits for the compute stream (x and att are written), copies
//              them to layer l's pinned buffers and records `copied`; the device tensors are
//              held until the next stash or fetch, which makes the compute stream wait for
//              `copied` and then frees them into the caching allocator (stream-ordered reuse).
//   fetch(l)   brings layer l back if its prefetch has not started (new device tensors, the
//              copy stream waits for the compute stream, then copies), makes the compute stream
//              wait for that copy, hands the tensors over, and starts the prefetch of the next
//              offloaded layer below l (also when l itself stayed on the device): one layer's
//              kept tensors extra on the device.
//
// Only the first `offload_layers` layers (counted from layer 0, whose tensors wait longest)
// are moved; the others stay on the device. Pinned buffers are allocated on first use, sized to
// the largest tensor seen (growing drains the copy stream first), and reused across steps (freed
// by the destructor). Bytes come back unchanged, so training with and without offload is bitwise
// identical. The store is reused across steps: every stashed layer of a step is fetched before
// the next step's stashes; a step that failed in between is cleaned up by the next one.
//
// On the CPU backend activations already live in host memory: make_activation_offload returns
// null (nothing to move). CUDA builds only for a CUDA context; an Error otherwise.
#pragma once

#include <cstdint>
#include <memory>

#include "ulysses/core/context.h"
#include "ulysses/model/decoder.h"

namespace ulysses::parallel {

struct ActivationOffloadStats {
  std::int64_t pinned_bytes = 0;      // host memory held by the store
  std::int64_t bytes_to_host = 0;     // copied during the last step
  std::int64_t layers_offloaded = 0;  // layers whose tensors moved in the last step
};

class ActivationOffload : public model::ActivationStore {
 public:
  virtual ActivationOffloadStats stats() const = 0;
  // Pins an offloaded layer's buffers now (setup) rather than on its first stash: x_bytes for the
  // layer input, att_bytes for attention's output (0 when that layer recomputes it).
  virtual void reserve(std::int64_t layer, std::int64_t x_bytes, std::int64_t att_bytes) = 0;
};

std::unique_ptr<ActivationOffload> make_activation_offload(const Context& ctx,
                                                           std::int64_t offload_layers);

}  // namespace ulysses::parallel
