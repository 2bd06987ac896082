// CUDA kernel of ops/adamw.h (validated by ops/adamw.cc): f32 param, grad and moments; an
// optional copy of the updated parameters (f32 or bf16, same shape) written in the same pass.
// One kernel serves one range and many (adamw_step is a list of one), 16-byte loads where the
// range's pointers allow; each element's arithmetic is the CPU kernel's, rounded the same way.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/adamw.h"

namespace ulysses::ops::cuda {

// Validated ranges (ops/adamw.cc): one launch per 32 of them.
void adamw_multi_step(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                      const std::vector<AdamWRange>& ranges, float grad_scale);

}  // namespace ulysses::ops::cuda
