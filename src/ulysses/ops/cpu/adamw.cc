#include "ulysses/ops/cpu/adamw.h"

#include <cmath>

namespace ulysses::ops::cpu {

void adamw_step(const AdamWConfig& config, std::int64_t step, Tensor param, const Tensor& grad,
                Tensor exp_avg, Tensor exp_avg_sq) {
  const std::int64_t n = param.numel();
  float* p = param.data<float>();       // [N]
  const float* g = grad.data<float>();  // [N]
  float* m = exp_avg.data<float>();     // [N]
  float* v = exp_avg_sq.data<float>();  // [N]

  // Scalars as torch.optim.AdamW computes them: bias corrections in double, then f32.
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(config.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(config.beta2), t);
  const float step_size = static_cast<float>(config.lr / bias_correction1);
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const float decay = 1.0f - config.lr * config.weight_decay;
  const float beta1 = config.beta1;
  const float beta2 = config.beta2;
  const float eps = config.eps;

#pragma omp parallel for
  for (std::int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bias_correction2_sqrt + eps;
    p[i] = p[i] * decay - step_size * mi / denom;
  }
}

}  // namespace ulysses::ops::cpu
