#include "ulysses/train/optimizer.h"

#include <cmath>

#include "ulysses/ops/elementwise.h"

namespace ulysses::train {

AdamW::AdamW(const model::ModelConfig& config, const ops::AdamWConfig& hyper, Device device)
    : hyper_(hyper), exp_avg_(config, device), exp_avg_sq_(config, device) {}

void AdamW::step(const Context& ctx, model::ParamBuffers& params, const model::ParamBuffers& grads,
                 float lr, model::ParamBuffers* compute_copy) {
  ++steps_;
  for (const auto& group : params.layout().groups()) {
    for (const auto& spec : group.params) {
      ops::AdamWConfig hyper = hyper_;
      hyper.lr = lr;
      if (!spec.weight_decay) hyper.weight_decay = 0.0f;
      if (compute_copy) {
        ops::adamw_step_with_copy(ctx, hyper, steps_, params.get(spec.name),
                                  grads.get(spec.name), exp_avg_.get(spec.name),
                                  exp_avg_sq_.get(spec.name), compute_copy->get(spec.name));
      } else {
        ops::adamw_step(ctx, hyper, steps_, params.get(spec.name), grads.get(spec.name),
                        exp_avg_.get(spec.name), exp_avg_sq_.get(spec.name));
      }
    }
  }
}

double gradient_norm(const Context& ctx, const model::ParamBuffers& grads) {
  double sum = 0.0;
  for (const auto& flat : grads.flat()) sum += ops::sum_of_squares(ctx, flat);
  return std::sqrt(sum);
}

void clip_gradients(const Context& ctx, model::ParamBuffers& grads, double norm, double max_norm) {
  if (max_norm <= 0) return;
  const double factor = max_norm / (norm + 1e-6);
  if (factor >= 1.0) return;
  for (auto& flat : grads.flat()) ops::scale_inplace(ctx, flat, static_cast<float>(factor));
}

}  // namespace ulysses::train
