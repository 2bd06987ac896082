#include <algorithm>
#include <cmath>

#include "ulysses/ops/cuda/adamw.h"
#include "ulysses/ops/cuda/common.cuh"

namespace ulysses::ops::cuda {

namespace {

struct AdamWScalars {
  float beta1, beta2, eps, step_size, bias_correction2_sqrt, decay;
};

// One element's update: the same f32 arithmetic as the CPU kernel (ops/cpu/adamw.cc), shared
// by the one-range and the multi-range kernels so both compute the same bits.
template <typename TC>
__device__ __forceinline__ void adamw_element(const AdamWScalars& s, float decay, float* p,
                                              const float* g, float* m, float* v, TC* copy,
                                              std::int64_t i) {
  const float gi = g[i];
  const float mi = s.beta1 * m[i] + (1.0f - s.beta1) * gi;
  const float vi = s.beta2 * v[i] + (1.0f - s.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float denom = sqrtf(vi) / s.bias_correction2_sqrt + s.eps;
  const float pi = p[i] * decay - s.step_size * mi / denom;
  p[i] = pi;
  if (copy) copy[i] = from_float<TC>(pi);
}

template <typename TC>
__global__ void adamw_kernel(AdamWScalars s, float* p, const float* g, float* m, float* v, TC* copy,
                             std::int64_t n) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    adamw_element(s, s.decay, p, g, m, v, copy, i);
}

constexpr int kMaxRanges = 32;

// Kernel arguments of one multi-tensor launch (32 ranges: under 2 KiB of the 4 KiB limit).
template <typename TC>
struct RangeList {
  float* p[kMaxRanges];
  const float* g[kMaxRanges];
  float* m[kMaxRanges];
  float* v[kMaxRanges];
  TC* copy[kMaxRanges];
  std::int64_t n[kMaxRanges];
  float decay[kMaxRanges];
};

// blockIdx.y: the range; x: a grid-stride loop over its elements. The arithmetic of
// adamw_kernel with the range's decay.
template <typename TC>
__global__ void adamw_multi_kernel(AdamWScalars s, RangeList<TC> list) {
  const int k = blockIdx.y;
  float* p = list.p[k];
  const float* g = list.g[k];
  float* m = list.m[k];
  float* v = list.v[k];
  TC* copy = list.copy[k];
  const float decay = list.decay[k];
  const std::int64_t n = list.n[k];
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride)
    adamw_element(s, decay, p, g, m, v, copy, i);
}

AdamWScalars scalars(const AdamWConfig& config, std::int64_t step) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(config.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(config.beta2), t);
  return AdamWScalars{config.beta1,
                      config.beta2,
                      config.eps,
                      static_cast<float>(config.lr / bias_correction1),
                      static_cast<float>(std::sqrt(bias_correction2)),
                      1.0f - config.lr * config.weight_decay};
}

}  // namespace

void adamw_multi_step(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                      const std::vector<AdamWRange>& ranges) {
  if (ranges.empty()) return;
  const AdamWScalars s = scalars(config, step);
  const DType copy_dtype =
      ranges[0].param_copy.defined() ? ranges[0].param_copy.dtype() : DType::f32;
  dispatch_float_type(copy_dtype, "adamw_multi_step param_copy", [&]<typename TC>() {
    std::size_t next = 0;
    while (next < ranges.size()) {
      RangeList<TC> list{};
      int count = 0;
      std::int64_t longest = 0;
      for (; next < ranges.size() && count < kMaxRanges; ++next) {
        AdamWRange r = ranges[next];  // shares the storage
        if (r.param.numel() == 0) continue;
        list.p[count] = ptr<float>(r.param);
        list.g[count] = ptr<float>(r.grad);
        list.m[count] = ptr<float>(r.exp_avg);
        list.v[count] = ptr<float>(r.exp_avg_sq);
        list.copy[count] = r.param_copy.defined() ? ptr<TC>(r.param_copy) : nullptr;
        list.n[count] = r.param.numel();
        list.decay[count] = r.weight_decay ? s.decay : 1.0f;  // 1 - lr * 0, as adamw_step
        longest = std::max(longest, r.param.numel());
        ++count;
      }
      if (count == 0) break;
      const dim3 grid(blocks_for(longest, 256, 132 * 16 / count + 1), static_cast<unsigned>(count));
      adamw_multi_kernel<<<grid, 256, 0, stream_of(ctx)>>>(s, list);
      UL_CUDA_CHECK_LAUNCH();
    }
  });
}

void adamw_step(const Context& ctx, const AdamWConfig& config, std::int64_t step, Tensor param,
                const Tensor& grad, Tensor exp_avg, Tensor exp_avg_sq, Tensor param_copy) {
  const std::int64_t n = param.numel();
  if (n == 0) return;
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(config.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(config.beta2), t);
  const AdamWScalars s{config.beta1,
                       config.beta2,
                       config.eps,
                       static_cast<float>(config.lr / bias_correction1),
                       static_cast<float>(std::sqrt(bias_correction2)),
                       1.0f - config.lr * config.weight_decay};
  const DType copy_dtype = param_copy.defined() ? param_copy.dtype() : DType::f32;
  dispatch_float_type(copy_dtype, "adamw_step param_copy", [&]<typename TC>() {
    TC* copy = param_copy.defined() ? ptr<TC>(param_copy) : nullptr;
    adamw_kernel<<<blocks_for(n, 256, 132 * 16), 256, 0, stream_of(ctx)>>>(
        s, ptr<float>(param), ptr<float>(grad), ptr<float>(exp_avg), ptr<float>(exp_avg_sq), copy,
        n);
    UL_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ulysses::ops::cuda
