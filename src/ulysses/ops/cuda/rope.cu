#include <algorithm>

#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/qk_norm_rope.h"
#include "ulysses/ops/cuda/rope.h"

namespace ulysses::ops::cuda {

namespace {

struct InvFreq {
  double v[kMaxRopeHalf];
};

// One thread per (t, i).
__global__ void rope_table_kernel(const std::int32_t* positions, InvFreq inv_freq, std::int64_t T_,
                                  std::int64_t half, float* cos_out, float* sin_out) {
  const std::int64_t total = T_ * half;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t idx = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += stride) {
    const std::int64_t t = idx / half, i = idx % half;
    const double angle = __dmul_rn(static_cast<double>(positions[t]), inv_freq.v[i]);
    cos_out[idx] = __double2float_rn(cos(angle));
    sin_out[idx] = __double2float_rn(sin(angle));
  }
}

// One thread per rotation pair (t, h, i), i < D/2. Forward: out = R x; backward: dx += R^T dout.
// The pair is read before it is written, so in-place forward is safe.
template <typename T, bool kBackward>
__global__ void rope_kernel(const float* cos, const float* sin, const T* in, T* out,
                            std::int64_t T_, std::int64_t H, std::int64_t half) {
  const std::int64_t total = T_ * H * half;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t idx = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       idx < total; idx += stride) {
    const std::int64_t i = idx % half;
    const std::int64_t th = idx / half;  // t * H + h
    const std::int64_t t = th / H;
    const float c = cos[t * half + i], s = sin[t * half + i];
    const std::int64_t base = th * 2 * half;
    const float first = to_float(in[base + i]);
    const float second = to_float(in[base + i + half]);
    if (kBackward) {
      out[base + i] = from_float<T>(to_float(out[base + i]) + first * c + second * s);
      out[base + i + half] = from_float<T>(to_float(out[base + i + half]) + second * c - first * s);
    } else {
      out[base + i] = from_float<T>(first * c - second * s);
      out[base + i + half] = from_float<T>(second * c + first * s);
    }
  }
}

template <bool kBackward>
void launch(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& in, Tensor out,
            const char* what) {
  const std::int64_t T_ = in.dim(0), H = in.dim(1), half = in.dim(2) / 2;
  const std::int64_t total = T_ * H * half;
  if (total == 0) return;
  dispatch_float_type(in.dtype(), what, [&]<typename T>() {
    rope_kernel<T, kBackward><<<blocks_for(total, 256), 256, 0, stream_of(ctx)>>>(
        ptr<float>(cos), ptr<float>(sin), ptr<T>(in), ptr<T>(out), T_, H, half);
    UL_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void rope_forward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& x,
                  Tensor out) {
  // The fused q/k kernel without a norm: 16-byte accesses when D / 2 % 8 == 0.
  qk_norm_rope_forward(ctx, cos, sin, x, Tensor(), 0.0f, out, Tensor());
}

void rope_backward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& dout,
                   Tensor dx) {
  launch<true>(ctx, cos, sin, dout, dx, "rope_backward");
}

void rope_table(const Context& ctx, const std::vector<double>& inv_freq, const Tensor& positions,
                Tensor cos, Tensor sin) {
  const auto half = static_cast<std::int64_t>(inv_freq.size());
  UL_CHECK(half <= kMaxRopeHalf, "rope_table: head_dim ", 2 * half,
           " is above the CUDA table's limit of ", 2 * kMaxRopeHalf);
  const std::int64_t T = positions.numel();
  if (T == 0) return;
  InvFreq freq{};
  for (std::int64_t i = 0; i < half; ++i) freq.v[i] = inv_freq[static_cast<std::size_t>(i)];
  const std::int64_t total = T * half;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((total + 255) / 256, 65536));
  rope_table_kernel<<<blocks, 256, 0, stream_of(ctx)>>>(ptr<std::int32_t>(positions), freq, T, half,
                                                        ptr<float>(cos), ptr<float>(sin));
  UL_CUDA_CHECK_LAUNCH();
}

}  // namespace ulysses::ops::cuda
