#include "ulysses/ops/cpu/rmsnorm.h"

#include <algorithm>
#include <cmath>

namespace ulysses::ops::cpu {

void rmsnorm_forward(const float* x, const float* weight, float eps, float* y, float* rstd,
                     std::int64_t N, std::int64_t C) {
#pragma omp parallel for
  for (std::int64_t n = 0; n < N; ++n) {
    const float* x_n = x + n * C;  // [C]
    float* y_n = y + n * C;        // [C]
    double sum_squares = 0;
    for (std::int64_t c = 0; c < C; ++c) sum_squares += static_cast<double>(x_n[c]) * x_n[c];
    const float r = static_cast<float>(1.0 / std::sqrt(sum_squares / C + eps));
    for (std::int64_t c = 0; c < C; ++c) y_n[c] = x_n[c] * r * weight[c];
    rstd[n] = r;
  }
}

void rmsnorm_backward(const float* x, const float* weight, const float* rstd, const float* dy,
                      float* dx, float* dweight, std::int64_t N, std::int64_t C) {
  // dx: rows are independent.
  // dx = rstd * (w * dy) - x * rstd^3 * mean(x * w * dy)
#pragma omp parallel for
  for (std::int64_t n = 0; n < N; ++n) {
    const float* x_n = x + n * C;    // [C]
    const float* dy_n = dy + n * C;  // [C]
    float* dx_n = dx + n * C;        // [C]
    double dot = 0;                  // sum of x * w * dy
    for (std::int64_t c = 0; c < C; ++c) dot += static_cast<double>(x_n[c]) * weight[c] * dy_n[c];
    const float r = rstd[n];
    const float x_coefficient = static_cast<float>(static_cast<double>(r) * r * r * dot / C);
    for (std::int64_t c = 0; c < C; ++c)
      dx_n[c] += r * weight[c] * dy_n[c] - x_n[c] * x_coefficient;
  }

  // dweight = sum over rows of dy * x * rstd. Each thread owns a block of columns and sums the
  // rows in order, so the result does not depend on the number of threads.
  constexpr std::int64_t kColumnBlock = 64;
  const std::int64_t num_blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for
  for (std::int64_t block = 0; block < num_blocks; ++block) {
    const std::int64_t c_begin = block * kColumnBlock;
    const std::int64_t c_end = std::min(C, c_begin + kColumnBlock);
    double sums[kColumnBlock] = {};  // [c_end - c_begin]
    for (std::int64_t n = 0; n < N; ++n) {
      const float* x_n = x + n * C;    // [C]
      const float* dy_n = dy + n * C;  // [C]
      const double r = rstd[n];
      for (std::int64_t c = c_begin; c < c_end; ++c)
        sums[c - c_begin] += static_cast<double>(dy_n[c]) * x_n[c] * r;
    }
    for (std::int64_t c = c_begin; c < c_end; ++c)
      dweight[c] += static_cast<float>(sums[c - c_begin]);
  }
}

}  // namespace ulysses::ops::cpu
