#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/reduce.cuh"
#include "ulysses/ops/cuda/rmsnorm.h"

namespace ulysses::ops::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row

// One warp per row. vector: C % 8 == 0 and every pointer 16-byte aligned.
template <typename T>
__global__ void rmsnorm_forward_kernel(const T* x, const T* weight, float eps, T* y, float* rstd,
                                       std::int64_t N, std::int64_t C, bool vector) {
  const int lane = threadIdx.x % 32;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const T* x_row = x + row * C;
  T* y_row = y + row * C;
  float sum = 0.0f;
  if (vector) {
    for (std::int64_t c = lane * 8; c < C; c += 256) {
      float v[8];
      load8(x_row + c, v);
#pragma unroll
      for (int i = 0; i < 8; ++i) sum += v[i] * v[i];
    }
  } else {
    for (std::int64_t c = lane; c < C; c += 32) {
      const float v = to_float(x_row[c]);
      sum += v * v;
    }
  }
  sum = warp_sum(sum);
  const float r = rsqrtf(sum / static_cast<float>(C) + eps);
  if (vector) {
    for (std::int64_t c = lane * 8; c < C; c += 256) {
      float v[8], w[8];
      load8(x_row + c, v);
      load8(weight + c, w);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = v[i] * r * w[i];
      store8(y_row + c, v);
    }
  } else {
    for (std::int64_t c = lane; c < C; c += 32)
      y_row[c] = from_float<T>(to_float(x_row[c]) * r * to_float(weight[c]));
  }
  if (lane == 0) rstd[row] = r;
}

// dx += r * w * dy - x * r^3 * mean(x * w * dy); one warp per row.
template <typename T>
__global__ void rmsnorm_backward_dx_kernel(const T* x, const T* weight, const float* rstd,
                                           const T* dy, T* dx, std::int64_t N, std::int64_t C) {
  const int lane = threadIdx.x % 32;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const T* x_row = x + row * C;
  const T* dy_row = dy + row * C;
  T* dx_row = dx + row * C;
  float dot = 0.0f;
  for (std::int64_t c = lane; c < C; c += 32)
    dot += to_float(x_row[c]) * to_float(weight[c]) * to_float(dy_row[c]);
  dot = warp_sum(dot);
  const float r = rstd[row];
  const float x_coefficient = r * r * r * dot / static_cast<float>(C);
  for (std::int64_t c = lane; c < C; c += 32) {
    const float g = r * to_float(weight[c]) * to_float(dy_row[c]) - to_float(x_row[c]) * x_coefficient;
    dx_row[c] = from_float<T>(to_float(dx_row[c]) + g);
  }
}

// value(r, c) = dy[r, c] * x[r, c] * rstd[r]
template <typename T>
struct WeightGradValue {
  const T* x;
  const T* dy;
  const float* rstd;
  std::int64_t C;
  __device__ float operator()(std::int64_t r, std::int64_t c) const {
    return to_float(dy[r * C + c]) * to_float(x[r * C + c]) * rstd[r];
  }
};

}  // namespace

void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& weight, float eps,
                     Tensor y, Tensor rstd) {
  const std::int64_t C = x.dim(-1), N = x.numel() / C;
  if (N == 0) return;
  dispatch_float_type(x.dtype(), "rmsnorm_forward", [&]<typename T>() {
    const bool vector =
        C % 8 == 0 && aligned16(x.raw()) && aligned16(weight.raw()) && aligned16(y.raw());
    const auto blocks = static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
    rmsnorm_forward_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream_of(ctx)>>>(
        ptr<T>(x), ptr<T>(weight), eps, ptr<T>(y), ptr<float>(rstd), N, C, vector);
    UL_CUDA_CHECK_LAUNCH();
  });
}

void rmsnorm_backward(const Context& ctx, const Tensor& x, const Tensor& weight,
                      const Tensor& rstd, const Tensor& dy, Tensor dx, Tensor dweight) {
  const std::int64_t C = x.dim(-1), N = x.numel() / C;
  if (N == 0) return;
  dispatch_float_type(x.dtype(), "rmsnorm_backward", [&]<typename T>() {
    const auto blocks = static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
    rmsnorm_backward_dx_kernel<<<blocks, 32 * kRowsPerBlock, 0, stream_of(ctx)>>>(
        ptr<T>(x), ptr<T>(weight), ptr<float>(rstd), ptr<T>(dy), ptr<T>(dx), N, C);
    UL_CUDA_CHECK_LAUNCH();
    column_sum_accumulate(ctx, WeightGradValue<T>{ptr<T>(x), ptr<T>(dy), ptr<float>(rstd), C}, N,
                          C, ptr<float>(dweight));
  });
}

}  // namespace ulysses::ops::cuda
