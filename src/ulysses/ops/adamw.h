// AdamW with decoupled weight decay and bias correction, as torch.optim.AdamW:
//   p *= 1 - lr * weight_decay
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Which tensors decay is the caller's choice (norm weights and biases get weight_decay = 0).
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

struct AdamWConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

// param, grad, exp_avg, exp_avg_sq: same shape, f32 (every device); step >= 1 is the 1-based
// update count.
void adamw_step(const Context& ctx, const AdamWConfig& config, std::int64_t step, Tensor param,
                const Tensor& grad, Tensor exp_avg, Tensor exp_avg_sq);

// The same update, also writing the updated parameters into param_copy (same shape, f32 or
// bf16, rounded to nearest even): on CUDA in the same pass, so the bf16 compute weights follow
// the f32 master weights without a separate conversion. Undefined param_copy = adamw_step.
void adamw_step_with_copy(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                          Tensor param, const Tensor& grad, Tensor exp_avg, Tensor exp_avg_sq,
                          Tensor param_copy);

// One range of a multi-tensor update: f32 param, grad and moments of one numel (any shapes),
// an optional copy (f32 or bf16) of the updated parameters, and whether weight decay applies.
struct AdamWRange {
  Tensor param, grad, exp_avg, exp_avg_sq;
  Tensor param_copy;         // undefined: no copy; else every range's copy has one dtype
  bool weight_decay = true;  // false: config.weight_decay is 0 for this range (norms, biases)
};

// adamw_step_with_copy for every range, the same arithmetic (bit-identical results), in one
// CUDA launch per 32 ranges: no host synchronization, no allocation, no copy of the range list
// (it travels as kernel arguments). Every gradient is multiplied by grad_scale first, in f32
// (the same bits as scale_inplace and then the update: the clip factor without a pass of its
// own; the gradients are only read). An Error names the first bad range.
// On every device the element arithmetic is the CPU kernel's, each operation rounded on its
// own (no fused multiply-add): CUDA results equal the CPU's bit for bit.
void adamw_multi_step(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                      const std::vector<AdamWRange>& ranges, float grad_scale = 1.0f);

}  // namespace ulysses::ops
