// CPU fp32 kernel of the LM head fused with cross-entropy (see ulysses/ops/cross_entropy.h).
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/tensor.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::ops::cpu {

// Arguments already validated by ops::lm_head_cross_entropy, which also checked the label values
// and collected valid_rows, the positions whose label is not ignored (increasing).
// tile_tokens >= 1 rows of logits ([tile_tokens, V]) exist at a time.
LossSum lm_head_cross_entropy(std::int64_t tile_tokens, const Tensor& x, const Tensor& weight,
                              const Tensor& labels, const std::vector<std::int32_t>& valid_rows,
                              float grad_scale, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops::cpu
