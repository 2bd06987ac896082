// CPU fp32 kernel of the AdamW update (see ulysses/ops/adamw.h).
#pragma once

#include <cstdint>

#include "ulysses/core/tensor.h"
#include "ulysses/ops/adamw.h"

namespace ulysses::ops::cpu {

// Arguments already validated by ops::adamw_step. param_copy: undefined, or f32 / bf16 (the
// updated parameter rounded to nearest even), written in the same pass. Each gradient is
// multiplied by grad_scale (f32) before it is used; grad itself is not written.
//
// Element-wise, so the result does not depend on the thread count: the loop is split into
// contiguous blocks over the OpenMP threads, and each block is a plain loop over raw pointers
// that the compiler vectorizes (the same IEEE operations in the same order for every element,
// hence the same bits as one thread, vectorized or not).
void adamw_step(const AdamWConfig& config, std::int64_t step, Tensor param, const Tensor& grad,
                Tensor exp_avg, Tensor exp_avg_sq, Tensor param_copy = Tensor(),
                float grad_scale = 1.0f);

}  // namespace ulysses::ops::cpu
