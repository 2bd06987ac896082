#include <algorithm>

#include "ulysses/core/host_upload.h"
#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/cross_entropy.h"
#include "ulysses/ops/cuda/matmul.cuh"

namespace ulysses::ops::cuda {

namespace {

constexpr int kThreads = 1024;

// x_tile[i] = x[rows[i]] for i < n.
template <typename T>
__global__ void gather_rows_kernel(const T* x, const std::int32_t* rows, T* x_tile,
                                   std::int64_t C) {
  const std::int64_t i = blockIdx.x;
  const T* src = x + static_cast<std::int64_t>(rows[i]) * C;
  for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) x_tile[i * C + c] = src[c];
}

// dx[rows[i]] += dx_tile[i] for i < n (rows are distinct).
template <typename T>
__global__ void scatter_add_rows_kernel(const float* dx_tile, const std::int32_t* rows, T* dx,
                                        std::int64_t C) {
  const std::int64_t i = blockIdx.x;
  T* dst = dx + static_cast<std::int64_t>(rows[i]) * C;
  for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x)
    dst[c] = from_float<T>(to_float(dst[c]) + dx_tile[i * C + c]);
}

// Four logits of a row into the running (max m, sum s of exp(l - m)) of one thread.
__device__ __forceinline__ void online_add4(float4 l, float& m, float& s) {
  const float mx = fmaxf(fmaxf(l.x, l.y), fmaxf(l.z, l.w));
  if (mx > m) {
    s = m == -INFINITY ? 0.0f : s * __expf(m - mx);
    m = mx;
  }
  if (m != -INFINITY)
    s += (__expf(l.x - m) + __expf(l.y - m)) + (__expf(l.z - m) + __expf(l.w - m));
}

__device__ __forceinline__ void store4(float* p, float a, float b, float c, float d) {
  *reinterpret_cast<float4*>(p) = make_float4(a, b, c, d);
}
__device__ __forceinline__ void store4(bf16_t* p, float a, float b, float c, float d) {
  struct alignas(8) Four {
    __nv_bfloat162 lo, hi;
  };
  *reinterpret_cast<Four*>(p) = Four{__floats2bfloat162_rn(a, b), __floats2bfloat162_rn(c, d)};
}

// One block per row i of the tile: loss[i] = logsumexp(logits_i) - logits_i[label];
// with backward, dlogits_i = grad_scale * (softmax(logits_i) - onehot(label)). Two passes over
// the row (the online max and sum, then the gradient), 16-byte loads when V % 4 == 0 (rows
// then stay 16-byte aligned), a scalar path otherwise.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    softmax_loss_kernel(const float* logits, const std::int32_t* labels, const std::int32_t* rows,
                        std::int64_t V, float grad_scale, bool backward, T* dlogits,
                        float* row_loss) {
  __shared__ float scratch[32];
  const std::int64_t i = blockIdx.x;
  const float* row = logits + i * V;
  const bool vec = V % 4 == 0;
  const std::int64_t V4 = vec ? V / 4 : 0;
  // Online max and sum of exp over this thread's elements, then combined over the block.
  float m = -INFINITY, s = 0.0f;
  const float4* row4 = reinterpret_cast<const float4*>(row);
  for (std::int64_t v = threadIdx.x; v < V4; v += blockDim.x) online_add4(row4[v], m, s);
  for (std::int64_t v = 4 * V4 + threadIdx.x; v < V; v += blockDim.x) {
    const float l = row[v];
    online_add4(make_float4(l, -INFINITY, -INFINITY, -INFINITY), m, s);
  }
  const float row_max = block_max(m, scratch);
  const float sum = block_sum(m == -INFINITY ? 0.0f : s * __expf(m - row_max), scratch);
  const std::int32_t label = labels[rows[i]];
  const float lse = row_max + logf(sum);
  if (threadIdx.x == 0) row_loss[i] = lse - row[label];
  if (!backward) return;
  const float scale = grad_scale / sum;
  T* drow = dlogits + i * V;
  for (std::int64_t v = threadIdx.x; v < V4; v += blockDim.x) {
    const float4 l = row4[v];
    float g[4] = {scale * __expf(l.x - row_max), scale * __expf(l.y - row_max),
                  scale * __expf(l.z - row_max), scale * __expf(l.w - row_max)};
    const std::int64_t lane = label - 4 * v;
    if (lane >= 0 && lane < 4) g[lane] -= grad_scale;
    store4(drow + 4 * v, g[0], g[1], g[2], g[3]);
  }
  for (std::int64_t v = 4 * V4 + threadIdx.x; v < V; v += blockDim.x) {
    float g = scale * __expf(row[v] - row_max);
    if (v == label) g -= grad_scale;
    drow[v] = from_float<T>(g);
  }
}

__global__ void sum_losses_kernel(const float* row_loss, std::int64_t n, double* out) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += row_loss[i];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) *out = sum;
}

}  // namespace

LossSum lm_head_cross_entropy(const Context& ctx, const Tensor& x, const Tensor& weight,
                              const Tensor& labels, const std::vector<std::int32_t>& valid_rows,
                              float grad_scale, Tensor dx, Tensor dweight) {
  const auto num_valid = static_cast<std::int64_t>(valid_rows.size());
  if (num_valid == 0) return LossSum(0.0, 0);
  const std::int64_t C = x.dim(1), V = weight.dim(0);
  const bool backward = grad_scale != 0.0f;
  const std::int64_t tile = std::min(ctx.loss_tile_tokens, num_valid);
  const DType dtype = x.dtype();
  const cudaStream_t stream = stream_of(ctx);

  const Tensor rows = upload_ints(ctx, valid_rows);  // through the staging ring: no host wait
  Tensor x_tile = Tensor::empty({tile, C}, dtype, ctx.device);
  Tensor logits = Tensor::empty({tile, V}, DType::f32, ctx.device);
  Tensor dlogits = backward ? Tensor::empty({tile, V}, dtype, ctx.device) : Tensor();
  Tensor dx_tile = backward ? Tensor::empty({tile, C}, DType::f32, ctx.device) : Tensor();
  Tensor row_loss = Tensor::empty({num_valid}, DType::f32, ctx.device);
  Tensor total = Tensor::empty({1}, DType::i64, ctx.device);  // one double

  dispatch_float_type(dtype, "lm_head_cross_entropy", [&]<typename T>() {
    for (std::int64_t begin = 0; begin < num_valid; begin += tile) {
      const std::int64_t n = std::min(tile, num_valid - begin);
      const std::int32_t* tile_rows = ptr<std::int32_t>(rows) + begin;
      gather_rows_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(ptr<T>(x), tile_rows,
                                                                       ptr<T>(x_tile), C);
      UL_CUDA_CHECK_LAUNCH();
      // logits^T [V, n] = W [V, C] x_tile^T [C, n]  (row-major logits [n, V])
      gemm(ctx, true, false, V, n, C, weight.raw(), C, x_tile.raw(), C, dtype, logits.raw(), V,
           DType::f32, 1.0f, 0.0f);
      softmax_loss_kernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
          ptr<float>(logits), ptr<std::int32_t>(labels), tile_rows, V, grad_scale, backward,
          backward ? ptr<T>(dlogits) : nullptr, ptr<float>(row_loss) + begin);
      UL_CUDA_CHECK_LAUNCH();
      if (!backward) continue;
      // dx_tile^T [C, n] = W^T [C, V] dlogits^T [V, n]
      gemm(ctx, false, false, C, n, V, weight.raw(), C, dlogits.raw(), V, dtype, dx_tile.raw(), C,
           DType::f32, 1.0f, 0.0f);
      scatter_add_rows_kernel<<<static_cast<unsigned>(n), 256, 0, stream>>>(
          ptr<float>(dx_tile), tile_rows, ptr<T>(dx), C);
      UL_CUDA_CHECK_LAUNCH();
      // dW^T [C, V] += x_tile^T [C, n] dlogits [n, V]
      gemm(ctx, false, true, C, V, n, x_tile.raw(), C, dlogits.raw(), V, dtype, dweight.raw(), C,
           DType::f32, 1.0f, 1.0f);
    }
  });
  double* total_data = reinterpret_cast<double*>(total.raw());
  sum_losses_kernel<<<1, 256, 0, stream>>>(ptr<float>(row_loss), num_valid, total_data);
  UL_CUDA_CHECK_LAUNCH();
  return LossSum(ctx, total, num_valid);  // read when the caller asks for it
}

}  // namespace ulysses::ops::cuda
