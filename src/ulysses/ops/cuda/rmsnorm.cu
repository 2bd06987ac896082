#include "ulysses/ops/cuda/add_rmsnorm.h"
#include "ulysses/ops/cuda/common.cuh"
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

}  // namespace

void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor y,
                     Tensor rstd) {
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

void rmsnorm_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                      const Tensor& dy, Tensor dx, Tensor dweight) {
  // dx += ...: the shared row kernel with dx as its own residual gradient (16-byte accesses).
  rmsnorm_input_grad(ctx, x, weight, rstd, dy, dx, dx);
  rmsnorm_weight_grad(ctx, x, rstd, dy, dweight);
}

}  // namespace ulysses::ops::cuda
