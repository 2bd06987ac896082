#include "ulysses/core/counter_rng.h"
#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/random_init.h"

namespace ulysses::ops::cuda {

namespace {

// The multiply by std is a plain f32 multiply (__fmul_rn: never contracted), as on the host.
template <typename T>
__global__ void fill_normal_kernel(T* out, std::int64_t n, std::uint64_t key, std::uint64_t first,
                                   float std) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float z = counter_rng::normal(key, first + static_cast<std::uint64_t>(i));
    out[i] = from_float<T>(__fmul_rn(std, z));
  }
}

template <typename T>
__global__ void fill_constant_kernel(T* out, std::int64_t n, float value) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    out[i] = from_float<T>(value);
}

}  // namespace

void fill_normal(const Context& ctx, Tensor out, std::uint64_t key, std::int64_t first, float std) {
  const std::int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float_type(out.dtype(), "fill_normal", [&]<typename T>() {
    fill_normal_kernel<<<blocks_for(n, 256, 132 * 32), 256, 0, stream_of(ctx)>>>(
        ptr<T>(out), n, key, static_cast<std::uint64_t>(first), std);
    UL_CUDA_CHECK_LAUNCH();
  });
}

void fill_constant(const Context& ctx, Tensor out, float value) {
  const std::int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float_type(out.dtype(), "fill_constant", [&]<typename T>() {
    fill_constant_kernel<<<blocks_for(n, 256, 132 * 32), 256, 0, stream_of(ctx)>>>(ptr<T>(out), n,
                                                                                   value);
    UL_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ulysses::ops::cuda
