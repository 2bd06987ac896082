// CUDA kernel of ops/cross_entropy.h (validated by ops/cross_entropy.cc).
// x, weight, dx: one dtype, f32 or bf16; dweight: f32; labels: i32 on the device.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::ops::cuda {

// valid_rows: positions whose label is not ignored (checked by the caller, host copy).
// Per tile of rows: logits [tile, V] in f32 by cuBLASLt, a softmax/loss/gradient kernel (f32
// math, dlogits in x's dtype), then dx_tile (f32) = dlogits W scattered into dx, and
// dweight += dlogits^T x_tile (f32 output, beta = 1). Per-row losses stay on the device and are
// summed in double in row order at the end, into the device value the LossSum reads when asked
// (no host synchronization in the call).
LossSum lm_head_cross_entropy(const Context& ctx, const Tensor& x, const Tensor& weight,
                              const Tensor& labels, const std::vector<std::int32_t>& valid_rows,
                              float grad_scale, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops::cuda
