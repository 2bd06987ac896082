#include "ulysses/ops/cpu/swiglu.h"

#include <cmath>

namespace ulysses::ops::cpu {

void swiglu_forward(const float* gate, const float* up, float* out, std::int64_t n) {
#pragma omp parallel for
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float silu = g / (1.0f + std::exp(-g));
    out[i] = silu * up[i];
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate,
                     float* dup, std::int64_t n, bool overwrite) {
#pragma omp parallel for
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float sigmoid = 1.0f / (1.0f + std::exp(-g));
    const float silu = g * sigmoid;
    // silu'(g) = s + g s (1 - s) = s (1 + g (1 - s))
    const float silu_grad = sigmoid * (1.0f + g * (1.0f - sigmoid));
    const float d = dout[i];
    const float u = up[i];
    dgate[i] = (overwrite ? 0.0f : dgate[i]) + d * u * silu_grad;
    dup[i] = (overwrite ? 0.0f : dup[i]) + d * silu;
  }
}

}  // namespace ulysses::ops::cpu
