// Context: everything an op or a model call needs from its environment, passed explicitly
// (no global mutable state). Cheap to copy; shares (does not own exclusively) backend resources.
#pragma once

#include <memory>

#include "ulysses/core/tensor.h"

namespace ulysses {

// Backend resources of a CUDA context (streams, events, library handles, caching allocator);
// defined by the CUDA backend. Null on CPU.
struct CudaResources;

// Per-op-kind timing (core/op_profiler.h); null: nothing is timed.
class OpProfiler;

// Which CUDA attention kernel runs: cuDNN's fused engine with the built-in kernel as fallback
// (automatic), only cuDNN (an Error where it cannot run), or only the built-in kernel.
enum class AttentionKernel { automatic, cudnn, builtin };

struct Context {
  Device device = Device::cpu();
  // Element type of weights and activations in forward/backward: f32 on CPU (the exact
  // reference), bf16 on CUDA. Weight gradients, master weights and optimizer state stay f32.
  DType compute_dtype = DType::f32;
  // Token tile used by tiled ops (LM head + cross-entropy, MLP) to bound activation memory.
  std::int64_t loss_tile_tokens = 1024;
  // Query/key block size of the CPU blockwise attention.
  std::int64_t attention_block = 64;
  AttentionKernel attention_kernel = AttentionKernel::automatic;
  std::shared_ptr<CudaResources> cuda;
  // Optional per-op-kind profiler (core/op_profiler.h): the ops time themselves into it when set.
  std::shared_ptr<OpProfiler> profiler;
};

}  // namespace ulysses
