// CPU fp32 kernel of the AdamW update (see ulysses/ops/adamw.h).
#pragma once

#include <cstdint>

#include "ulysses/core/tensor.h"
#include "ulysses/ops/adamw.h"

namespace ulysses::ops::cpu {

// Arguments already validated by ops::adamw_step.
void adamw_step(const AdamWConfig& config, std::int64_t step, Tensor param, const Tensor& grad,
                Tensor exp_avg, Tensor exp_avg_sq);

}  // namespace ulysses::ops::cpu
