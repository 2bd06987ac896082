#include "ulysses/ops/cpu/linear.h"

#include <cblas.h>

#include <algorithm>

namespace ulysses::ops::cpu {
namespace {

// cblas wants int sizes and leading dimensions of at least 1 (even for empty matrices).
int blas_size(std::int64_t n) { return static_cast<int>(n); }
int blas_ld(std::int64_t n) { return static_cast<int>(std::max<std::int64_t>(n, 1)); }

}  // namespace

void linear_forward(const float* x, const float* weight, const float* bias, float* y,
                    std::int64_t N, std::int64_t K, std::int64_t M) {
  // y: [N, M] starts as the bias broadcast over rows (or zero), then y += x W^T.
#pragma omp parallel for
  for (std::int64_t n = 0; n < N; ++n) {
    float* y_n = y + n * M;  // [M]
    for (std::int64_t m = 0; m < M; ++m) y_n[m] = bias != nullptr ? bias[m] : 0.0f;
  }
  if (N == 0 || M == 0 || K == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blas_size(N), blas_size(M), blas_size(K),
              1.0f, x, blas_ld(K), weight, blas_ld(K), 1.0f, y, blas_ld(M));
}

void linear_forward_residual(const float* x, const float* weight, const float* bias,
                             const float* residual, float* y, std::int64_t N, std::int64_t K,
                             std::int64_t M) {
  // y starts as residual (+ bias), then y += x W^T.
#pragma omp parallel for
  for (std::int64_t n = 0; n < N; ++n) {
    float* y_n = y + n * M;               // [M]
    const float* r_n = residual + n * M;  // [M]
    for (std::int64_t m = 0; m < M; ++m) y_n[m] = r_n[m] + (bias != nullptr ? bias[m] : 0.0f);
  }
  if (N == 0 || M == 0 || K == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blas_size(N), blas_size(M), blas_size(K),
              1.0f, x, blas_ld(K), weight, blas_ld(K), 1.0f, y, blas_ld(M));
}

void linear_backward(const float* x, const float* weight, const float* dy, float* dx,
                     float* dweight, float* dbias, std::int64_t N, std::int64_t K, std::int64_t M,
                     bool dx_overwrite) {
  if (N > 0 && M > 0 && K > 0) {
    // dx: [N, K] += dy: [N, M] @ W: [M, K] (beta 0 when overwriting: dx is not read)
    if (dx != nullptr) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blas_size(N), blas_size(K),
                  blas_size(M), 1.0f, dy, blas_ld(M), weight, blas_ld(K),
                  dx_overwrite ? 0.0f : 1.0f, dx, blas_ld(K));
    }
    // dweight: [M, K] += dy^T: [M, N] @ x: [N, K]
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, blas_size(M), blas_size(K), blas_size(N),
                1.0f, dy, blas_ld(M), x, blas_ld(K), 1.0f, dweight, blas_ld(K));
  }
  if (dbias == nullptr) return;
  // dbias: [M] += column sums of dy; each thread owns a block of columns and sums rows in order.
  constexpr std::int64_t kColumnBlock = 64;
  const std::int64_t num_blocks = (M + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for
  for (std::int64_t block = 0; block < num_blocks; ++block) {
    const std::int64_t m_begin = block * kColumnBlock;
    const std::int64_t m_end = std::min(M, m_begin + kColumnBlock);
    double sums[kColumnBlock] = {};  // [m_end - m_begin]
    for (std::int64_t n = 0; n < N; ++n) {
      const float* dy_n = dy + n * M;  // [M]
      for (std::int64_t m = m_begin; m < m_end; ++m) sums[m - m_begin] += dy_n[m];
    }
    for (std::int64_t m = m_begin; m < m_end; ++m)
      dbias[m] += static_cast<float>(sums[m - m_begin]);
  }
}

}  // namespace ulysses::ops::cpu
