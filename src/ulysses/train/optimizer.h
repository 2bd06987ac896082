// AdamW over a model's parameter buffers, with global-norm gradient clipping.
//
// State (exp_avg, exp_avg_sq) uses the same flat per-group layout as the parameters. Weight
// decay applies to parameters whose ParamSpec says so (not norm weights, not biases).
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/model/params.h"
#include "ulysses/ops/adamw.h"

namespace ulysses::train {

class AdamW {
 public:
  AdamW(const model::ModelConfig& config, const ops::AdamWConfig& hyper, Device device);

  // One update with learning rate lr; increments step(). With `compute_copy` (bf16 mixed
  // precision) the updated parameters are also written, rounded, into it in the same pass.
  void step(const Context& ctx, model::ParamBuffers& params, const model::ParamBuffers& grads,
            float lr, model::ParamBuffers* compute_copy = nullptr);
  std::int64_t steps_taken() const { return steps_; }
  model::ParamBuffers& exp_avg() { return exp_avg_; }
  model::ParamBuffers& exp_avg_sq() { return exp_avg_sq_; }
  void set_steps_taken(std::int64_t steps) { steps_ = steps; }

 private:
  ops::AdamWConfig hyper_;
  model::ParamBuffers exp_avg_;
  model::ParamBuffers exp_avg_sq_;
  std::int64_t steps_ = 0;
};

// Global L2 norm of all gradients (double accumulation).
double gradient_norm(const Context& ctx, const model::ParamBuffers& grads);
// Scales gradients so their global norm is at most max_norm (torch's clip_grad_norm_ rule:
// factor max_norm / (norm + 1e-6) when that is below 1). No-op when max_norm <= 0.
void clip_gradients(const Context& ctx, model::ParamBuffers& grads, double norm, double max_norm);

}  // namespace ulysses::train
