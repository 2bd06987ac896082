// CPU fp32 kernel of the LM head fused with cross-entropy (see ulysses/ops/cross_entropy.h).
#pragma once

#include <cstdint>

#include "ulysses/core/tensor.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::ops::cpu {

// Arguments already validated by ops::lm_head_cross_entropy, except the label values: a label
// outside [0, V) other than kIgnoreIndex throws Error before anything is written.
// tile_tokens >= 1 rows of logits ([tile_tokens, V]) exist at a time.
LossSum lm_head_cross_entropy(std::int64_t tile_tokens, const Tensor& x, const Tensor& weight,
                              const Tensor& labels, float grad_scale, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops::cpu
