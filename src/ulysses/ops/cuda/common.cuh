// Helpers shared by the CUDA kernels (device code only; include from .cu files).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ulysses/core/cuda_resources.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

using bf16_t = __nv_bfloat16;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16_t x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16_t from_float<bf16_t>(float x) { return __float2bfloat16(x); }

// Eight elements of T in one or two 16-byte words, for vector loads and stores.
template <typename T>
struct alignas(16) Pack8 {
  T v[8];
};

template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&out)[8]) {
  const Pack8<T> pack = *reinterpret_cast<const Pack8<T>*>(p);
#pragma unroll
  for (int i = 0; i < 8; ++i) out[i] = to_float(pack.v[i]);
}
template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&in)[8]) {
  Pack8<T> pack;
#pragma unroll
  for (int i = 0; i < 8; ++i) pack.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Pack8<T>*>(p) = pack;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ double warp_sum(double x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// The order is fixed, so the result is deterministic. `scratch` holds 32 values.
template <typename A>
__device__ A block_sum(A x, A* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  x = warp_sum(x);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  A total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}
__device__ inline float block_max(float x, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  x = warp_max(x);
  __syncthreads();
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  float m = scratch[0];
  for (int w = 1; w < warps; ++w) m = fmaxf(m, scratch[w]);
  return m;
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

inline cudaStream_t stream_of(const Context& ctx) { return cuda_resources(ctx).stream; }

inline unsigned blocks_for(std::int64_t n, int threads, std::int64_t max_blocks = 65535LL * 16) {
  std::int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return static_cast<unsigned>(b);
}

// Calls f.template operator()<T>() with T = float or bf16_t according to dtype.
template <typename F>
void dispatch_float_type(DType dtype, const char* what, F&& f) {
  if (dtype == DType::f32) {
    f.template operator()<float>();
  } else if (dtype == DType::bf16) {
    f.template operator()<bf16_t>();
  } else {
    UL_FAIL(what, ": no CUDA kernel for dtype ", dtype_name(dtype));
  }
}

template <typename T>
T* ptr(Tensor& t) {
  return reinterpret_cast<T*>(t.raw());
}
template <typename T>
const T* ptr(const Tensor& t) {
  return reinterpret_cast<const T*>(t.raw());
}

}  // namespace ulysses::ops::cuda
