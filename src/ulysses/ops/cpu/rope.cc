#include "ulysses/ops/cpu/rope.h"

namespace ulysses::ops::cpu {

void rope_forward(const float* cos, const float* sin, const float* x, float* out, std::int64_t T,
                  std::int64_t H, std::int64_t D) {
  const std::int64_t half = D / 2;
#pragma omp parallel for
  for (std::int64_t t = 0; t < T; ++t) {
    const float* cos_t = cos + t * half;  // [D/2]
    const float* sin_t = sin + t * half;  // [D/2]
    for (std::int64_t h = 0; h < H; ++h) {
      const float* x_th = x + (t * H + h) * D;  // [D]
      float* out_th = out + (t * H + h) * D;    // [D]
      for (std::int64_t i = 0; i < half; ++i) {
        // Read the pair before writing it, so out may be x.
        const float first = x_th[i];
        const float second = x_th[i + half];
        out_th[i] = first * cos_t[i] - second * sin_t[i];
        out_th[i + half] = second * cos_t[i] + first * sin_t[i];
      }
    }
  }
}

void rope_backward(const float* cos, const float* sin, const float* dout, float* dx, std::int64_t T,
                   std::int64_t H, std::int64_t D) {
  const std::int64_t half = D / 2;
#pragma omp parallel for
  for (std::int64_t t = 0; t < T; ++t) {
    const float* cos_t = cos + t * half;  // [D/2]
    const float* sin_t = sin + t * half;  // [D/2]
    for (std::int64_t h = 0; h < H; ++h) {
      const float* dout_th = dout + (t * H + h) * D;  // [D]
      float* dx_th = dx + (t * H + h) * D;            // [D]
      for (std::int64_t i = 0; i < half; ++i) {
        const float first = dout_th[i];
        const float second = dout_th[i + half];
        dx_th[i] += first * cos_t[i] + second * sin_t[i];
        dx_th[i + half] += second * cos_t[i] - first * sin_t[i];
      }
    }
  }
}

}  // namespace ulysses::ops::cpu
