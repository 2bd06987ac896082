// CUDA kernel of ops/adamw.h (validated by ops/adamw.cc): f32 param, grad and moments; an
// optional copy of the updated parameters (f32 or bf16, same shape) written in the same pass.
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/adamw.h"

namespace ulysses::ops::cuda {

// param_copy may be undefined.
void adamw_step(const Context& ctx, const AdamWConfig& config, std::int64_t step, Tensor param,
                const Tensor& grad, Tensor exp_avg, Tensor exp_avg_sq, Tensor param_copy);

// Validated ranges (ops/adamw.cc): one launch per kMaxRanges of them.
void adamw_multi_step(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                      const std::vector<AdamWRange>& ranges);

}  // namespace ulysses::ops::cuda
