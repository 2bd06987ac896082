#include "ulysses/ops/cuda/add_rmsnorm.h"
#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/reduce.cuh"

namespace ulysses::ops::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // one warp per row

// y = x + r (stored), n = y * rstd * w with rstd from y as stored. One warp per row; packs of 8
// (16 bytes of bf16) when `vector`. Each lane re-reads only the y elements it wrote itself.
template <typename T>
__global__ void add_rmsnorm_forward_kernel(const T* x, const T* r, const T* weight, float eps, T* y,
                                           T* n, float* rstd, std::int64_t N, std::int64_t C,
                                           bool vector) {
  const int lane = threadIdx.x % 32;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const std::int64_t base = row * C;
  float sum = 0.0f;
  if (vector) {
    for (std::int64_t c = lane * 8; c < C; c += 256) {
      float a[8], b[8];
      load8(x + base + c, a);
      load8(r + base + c, b);
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        a[i] = to_float(from_float<T>(a[i] + b[i]));  // the stored value
        sum += a[i] * a[i];
      }
      store8(y + base + c, a);
    }
  } else {
    for (std::int64_t c = lane; c < C; c += 32) {
      const T v = from_float<T>(to_float(x[base + c]) + to_float(r[base + c]));
      y[base + c] = v;
      sum += to_float(v) * to_float(v);
    }
  }
  sum = warp_sum(sum);
  const float rs = rsqrtf(sum / static_cast<float>(C) + eps);
  if (vector) {
    for (std::int64_t c = lane * 8; c < C; c += 256) {
      float v[8], w[8];
      load8(y + base + c, v);
      load8(weight + c, w);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = v[i] * rs * w[i];
      store8(n + base + c, v);
    }
  } else {
    for (std::int64_t c = lane; c < C; c += 32)
      n[base + c] = from_float<T>(to_float(y[base + c]) * rs * to_float(weight[c]));
  }
  if (lane == 0) rstd[row] = rs;
}

// dx = dres + rs * w * dn - x * rs^3 * mean(x * w * dn); one warp per row. dx may be dres.
template <typename T>
__global__ void rmsnorm_input_grad_kernel(const T* x, const T* weight, const float* rstd,
                                          const T* dn, const T* dres, T* dx, std::int64_t N,
                                          std::int64_t C, bool vector) {
  const int lane = threadIdx.x % 32;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= N) return;
  const std::int64_t base = row * C;
  float dot = 0.0f;
  if (vector) {
    for (std::int64_t c = lane * 8; c < C; c += 256) {
      float a[8], w[8], g[8];
      load8(x + base + c, a);
      load8(weight + c, w);
      load8(dn + base + c, g);
#pragma unroll
      for (int i = 0; i < 8; ++i) dot += a[i] * w[i] * g[i];
    }
  } else {
    for (std::int64_t c = lane; c < C; c += 32)
      dot += to_float(x[base + c]) * to_float(weight[c]) * to_float(dn[base + c]);
  }
  dot = warp_sum(dot);
  const float rs = rstd[row];
  const float x_coefficient = rs * rs * rs * dot / static_cast<float>(C);
  if (vector) {
    for (std::int64_t c = lane * 8; c < C; c += 256) {
      float a[8], w[8], g[8], d[8];
      load8(x + base + c, a);
      load8(weight + c, w);
      load8(dn + base + c, g);
      load8(dres + base + c, d);
#pragma unroll
      for (int i = 0; i < 8; ++i) d[i] += rs * w[i] * g[i] - a[i] * x_coefficient;
      store8(dx + base + c, d);
    }
  } else {
    for (std::int64_t c = lane; c < C; c += 32) {
      const float g =
          rs * to_float(weight[c]) * to_float(dn[base + c]) - to_float(x[base + c]) * x_coefficient;
      dx[base + c] = from_float<T>(to_float(dres[base + c]) + g);
    }
  }
}

// value(r, c) = dn[r, c] * x[r, c] * rstd[r]
template <typename T>
struct WeightGradValue {
  const T* x;
  const T* dn;
  const float* rstd;
  std::int64_t C;
  __device__ float operator()(std::int64_t r, std::int64_t c) const {
    return to_float(dn[r * C + c]) * to_float(x[r * C + c]) * rstd[r];
  }
};

unsigned row_blocks(std::int64_t N) {
  return static_cast<unsigned>((N + kRowsPerBlock - 1) / kRowsPerBlock);
}

}  // namespace

void add_rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& r, const Tensor& weight,
                         float eps, Tensor y, Tensor n, Tensor rstd) {
  const std::int64_t C = x.dim(-1), N = x.numel() / C;
  if (N == 0) return;
  dispatch_float_type(x.dtype(), "add_rmsnorm_forward", [&]<typename T>() {
    const bool vector = C % 8 == 0 && aligned16(x.raw()) && aligned16(r.raw()) &&
                        aligned16(weight.raw()) && aligned16(y.raw()) && aligned16(n.raw());
    add_rmsnorm_forward_kernel<<<row_blocks(N), 32 * kRowsPerBlock, 0, stream_of(ctx)>>>(
        ptr<T>(x), ptr<T>(r), ptr<T>(weight), eps, ptr<T>(y), ptr<T>(n), ptr<float>(rstd), N, C,
        vector);
    UL_CUDA_CHECK_LAUNCH();
  });
}

void rmsnorm_input_grad(const Context& ctx, const Tensor& x, const Tensor& weight,
                        const Tensor& rstd, const Tensor& dn, const Tensor& dresidual, Tensor dx) {
  const std::int64_t C = x.dim(-1), N = x.numel() / C;
  if (N == 0) return;
  dispatch_float_type(x.dtype(), "rmsnorm backward", [&]<typename T>() {
    const bool vector = C % 8 == 0 && aligned16(x.raw()) && aligned16(weight.raw()) &&
                        aligned16(dn.raw()) && aligned16(dresidual.raw()) && aligned16(dx.raw());
    rmsnorm_input_grad_kernel<<<row_blocks(N), 32 * kRowsPerBlock, 0, stream_of(ctx)>>>(
        ptr<T>(x), ptr<T>(weight), ptr<float>(rstd), ptr<T>(dn), ptr<T>(dresidual), ptr<T>(dx), N,
        C, vector);
    UL_CUDA_CHECK_LAUNCH();
  });
}

void rmsnorm_weight_grad(const Context& ctx, const Tensor& x, const Tensor& rstd, const Tensor& dn,
                         Tensor dweight) {
  const std::int64_t C = x.dim(-1), N = x.numel() / C;
  if (N == 0) return;
  dispatch_float_type(x.dtype(), "rmsnorm weight gradient", [&]<typename T>() {
    column_sum_accumulate(ctx, WeightGradValue<T>{ptr<T>(x), ptr<T>(dn), ptr<float>(rstd), C}, N, C,
                          ptr<float>(dweight));
  });
}

void add_rmsnorm_backward(const Context& ctx, const Tensor& y, const Tensor& weight,
                          const Tensor& rstd, const Tensor& dn, const Tensor& dresidual, Tensor dy,
                          Tensor dweight) {
  rmsnorm_input_grad(ctx, y, weight, rstd, dn, dresidual, dy);
  rmsnorm_weight_grad(ctx, y, rstd, dn, dweight);
}

}  // namespace ulysses::ops::cuda
