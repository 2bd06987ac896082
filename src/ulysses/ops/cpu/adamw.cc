#include "ulysses/ops/cpu/adamw.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

namespace ulysses::ops::cpu {

namespace {

// The scalars of one update, as torch.optim.AdamW computes them: bias corrections in double,
// then f32.
struct AdamWScalars {
  float step_size, bias_correction2_sqrt, decay, beta1, beta2, eps, grad_scale;
};

AdamWScalars scalars(const AdamWConfig& config, std::int64_t step, float grad_scale) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(config.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(config.beta2), t);
  AdamWScalars s;
  s.step_size = static_cast<float>(config.lr / bias_correction1);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.decay = 1.0f - config.lr * config.weight_decay;
  s.beta1 = config.beta1;
  s.beta2 = config.beta2;
  s.eps = config.eps;
  s.grad_scale = grad_scale;
  return s;
}

// Elements [0, n) of one block. Copy is float (an f32 copy), bf16 (rounded copy) or void (none).
template <typename Copy>
void update_block(const AdamWScalars s, std::int64_t n, float* __restrict p,
                  const float* __restrict g, float* __restrict m, float* __restrict v,
                  Copy* __restrict copy) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * s.grad_scale;
    const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * gi;
    const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / s.bias_correction2_sqrt + s.eps;
    const float pi = p[i] * s.decay - s.step_size * mi / denom;
    p[i] = pi;
    if constexpr (std::is_same_v<Copy, float>) copy[i] = pi;
    if constexpr (std::is_same_v<Copy, bf16>) copy[i] = float_to_bf16(pi);
  }
}

template <typename Copy>
void update(const AdamWScalars s, std::int64_t n, float* p, const float* g, float* m, float* v,
            Copy* copy) {
  // Contiguous blocks of at least 64K elements (a small range is not worth waking threads for),
  // a multiple of 16 elements (whole cache lines, whole vectors).
  constexpr std::int64_t kMinBlock = std::int64_t{1} << 16;
  const std::int64_t threads = std::max(1, omp_get_max_threads());
  const std::int64_t blocks = std::clamp<std::int64_t>(n / kMinBlock, 1, threads);
  const std::int64_t per_block = (n / blocks + 15) / 16 * 16;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t begin = std::min(n, b * per_block);
    const std::int64_t end = b + 1 == blocks ? n : std::min(n, begin + per_block);
    Copy* c = nullptr;
    if constexpr (!std::is_void_v<Copy>) c = copy + begin;
    update_block<Copy>(s, end - begin, p + begin, g + begin, m + begin, v + begin, c);
  }
}

}  // namespace

void adamw_step(const AdamWConfig& config, std::int64_t step, Tensor param, const Tensor& grad,
                Tensor exp_avg, Tensor exp_avg_sq, Tensor param_copy, float grad_scale) {
  const std::int64_t n = param.numel();
  float* p = param.data<float>();       // [N]
  const float* g = grad.data<float>();  // [N]
  float* m = exp_avg.data<float>();     // [N]
  float* v = exp_avg_sq.data<float>();  // [N]
  const AdamWScalars s = scalars(config, step, grad_scale);
  if (!param_copy.defined()) return update<void>(s, n, p, g, m, v, nullptr);
  if (param_copy.dtype() == DType::bf16)
    return update<bf16>(s, n, p, g, m, v, param_copy.data<bf16>());
  update<float>(s, n, p, g, m, v, param_copy.data<float>());
}

}  // namespace ulysses::ops::cpu
