#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/swiglu.h"

namespace ulysses::ops::cuda {

namespace {

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + __expf(-g)); }

// out = silu(gate) * up; packs of 8 when `vector`.
template <typename T>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, T* out, std::int64_t n,
                                      bool vector) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vector) {
    for (std::int64_t p = first; p < n / 8; p += stride) {
      float g[8], u[8];
      load8(gate + p * 8, g);
      load8(up + p * 8, u);
#pragma unroll
      for (int i = 0; i < 8; ++i) g[i] = g[i] * sigmoid(g[i]) * u[i];
      store8(out + p * 8, g);
    }
  } else {
    for (std::int64_t i = first; i < n; i += stride) {
      const float g = to_float(gate[i]);
      out[i] = from_float<T>(g * sigmoid(g) * to_float(up[i]));
    }
  }
}

// dgate += dout * up * silu'(gate); dup += dout * silu(gate) (= when overwrite: not read).
template <typename T>
__global__ void swiglu_backward_kernel(const T* gate, const T* up, const T* dout, T* dgate, T* dup,
                                       std::int64_t n, bool vector, bool overwrite) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vector) {
    for (std::int64_t p = first; p < n / 8; p += stride) {
      float g[8], u[8], d[8], dg[8] = {}, du[8] = {};
      load8(gate + p * 8, g);
      load8(up + p * 8, u);
      load8(dout + p * 8, d);
      if (!overwrite) {
        load8(dgate + p * 8, dg);
        load8(dup + p * 8, du);
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float s = sigmoid(g[i]);
        dg[i] += d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] += d[i] * g[i] * s;
      }
      store8(dgate + p * 8, dg);
      store8(dup + p * 8, du);
    }
  } else {
    for (std::int64_t i = first; i < n; i += stride) {
      const float g = to_float(gate[i]), u = to_float(up[i]), d = to_float(dout[i]);
      const float s = sigmoid(g);
      const float dg = overwrite ? 0.0f : to_float(dgate[i]);
      const float du = overwrite ? 0.0f : to_float(dup[i]);
      dgate[i] = from_float<T>(dg + d * u * s * (1.0f + g * (1.0f - s)));
      dup[i] = from_float<T>(du + d * g * s);
    }
  }
}

}  // namespace

void swiglu_forward(const Context& ctx, const Tensor& gate, const Tensor& up, Tensor out) {
  const std::int64_t n = gate.numel();
  if (n == 0) return;
  dispatch_float_type(gate.dtype(), "swiglu_forward", [&]<typename T>() {
    const bool vector = n % 8 == 0 && aligned16(gate.raw()) && aligned16(up.raw()) &&
                        aligned16(out.raw());
    swiglu_forward_kernel<<<blocks_for(vector ? n / 8 : n, 256), 256, 0, stream_of(ctx)>>>(
        ptr<T>(gate), ptr<T>(up), ptr<T>(out), n, vector);
    UL_CUDA_CHECK_LAUNCH();
  });
}

void swiglu_backward(const Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                     Tensor dgate, Tensor dup, bool overwrite) {
  const std::int64_t n = gate.numel();
  if (n == 0) return;
  dispatch_float_type(gate.dtype(), "swiglu_backward", [&]<typename T>() {
    const bool vector = n % 8 == 0 && aligned16(gate.raw()) && aligned16(up.raw()) &&
                        aligned16(dout.raw()) && aligned16(dgate.raw()) && aligned16(dup.raw());
    swiglu_backward_kernel<<<blocks_for(vector ? n / 8 : n, 256), 256, 0, stream_of(ctx)>>>(
        ptr<T>(gate), ptr<T>(up), ptr<T>(dout), ptr<T>(dgate), ptr<T>(dup), n, vector, overwrite);
    UL_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ulysses::ops::cuda
