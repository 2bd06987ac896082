// Context: everything an op or a model call needs from its environment, passed explicitly
// (no global mutable state). Cheap to copy; holds no owning resources yet. The CUDA backend
// adds its streams, handles and allocator here; the MPI issue adds communicators.
#pragma once

#include "ulysses/core/tensor.h"

namespace ulysses {

struct Context {
  Device device = Device::cpu();
  // Token tile used by tiled ops (LM head + cross-entropy, MLP) to bound activation memory.
  std::int64_t loss_tile_tokens = 1024;
  // Query/key block size of the CPU blockwise attention.
  std::int64_t attention_block = 64;
};

}  // namespace ulysses
