// CUDA kernels of ops/random_init.h (validated by ops/random_init.cc).
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

void fill_normal(const Context& ctx, Tensor out, std::uint64_t key, std::int64_t first, float std);
void fill_constant(const Context& ctx, Tensor out, float value);

}  // namespace ulysses::ops::cuda
