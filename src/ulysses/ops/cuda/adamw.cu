#include <algorithm>
#include <cmath>
#include <cstdint>

#include "ulysses/ops/cuda/adamw.h"
#include "ulysses/ops/cuda/common.cuh"

namespace ulysses::ops::cuda {

namespace {

struct AdamWScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size, bias_correction2_sqrt,
      decay, grad_scale;
};

// One element's update in the CPU kernel's operations and order (ops/cpu/adamw.cc), each
// rounded on its own: the _rn intrinsics are never fused into an FMA, so every kernel and every
// vector width computes the same bits, equal to the CPU's.
__device__ __forceinline__ float adamw_value(const AdamWScalars& s, float decay, float p, float g,
                                             float& m, float& v) {
  const float gi = __fmul_rn(g, s.grad_scale);
  m = __fadd_rn(__fmul_rn(s.beta1, m), __fmul_rn(s.one_minus_beta1, gi));
  v = __fadd_rn(__fmul_rn(s.beta2, v), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), s.bias_correction2_sqrt), s.eps);
  return __fsub_rn(__fmul_rn(p, decay), __fdiv_rn(__fmul_rn(s.step_size, m), denom));
}

constexpr int kMaxRanges = 32;

// Kernel arguments of one launch (32 ranges: under 2.5 KiB of the 4 KiB limit). head[k]:
// elements [0, head) and the tail after the last whole quad go one by one, the quads between
// with 16-byte loads (head == n: the range's pointers are not co-aligned, all one by one).
template <typename TC>
struct RangeList {
  float* p[kMaxRanges];
  const float* g[kMaxRanges];
  float* m[kMaxRanges];
  float* v[kMaxRanges];
  TC* copy[kMaxRanges];
  std::int64_t n[kMaxRanges];
  std::int64_t head[kMaxRanges];
  float decay[kMaxRanges];
};

template <typename TC>
struct alignas(4 * sizeof(TC)) Quad {
  TC v[4];
};

// blockIdx.y: the range; x: grid-stride loops over its quads, then its single elements.
template <typename TC>
__global__ void adamw_kernel(AdamWScalars s, RangeList<TC> list) {
  const int k = blockIdx.y;
  float* p = list.p[k];
  const float* g = list.g[k];
  float* m = list.m[k];
  float* v = list.v[k];
  TC* copy = list.copy[k];
  const float decay = list.decay[k];
  const std::int64_t n = list.n[k], head = list.head[k];
  const std::int64_t quads = (n - head) / 4, tail = head + 4 * quads;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (std::int64_t q = first; q < quads; q += stride) {
    const std::int64_t i = head + 4 * q;
    float4 pv = *reinterpret_cast<const float4*>(p + i);
    const float4 gv = *reinterpret_cast<const float4*>(g + i);
    float4 mv = *reinterpret_cast<const float4*>(m + i);
    float4 vv = *reinterpret_cast<const float4*>(v + i);
    pv.x = adamw_value(s, decay, pv.x, gv.x, mv.x, vv.x);
    pv.y = adamw_value(s, decay, pv.y, gv.y, mv.y, vv.y);
    pv.z = adamw_value(s, decay, pv.z, gv.z, mv.z, vv.z);
    pv.w = adamw_value(s, decay, pv.w, gv.w, mv.w, vv.w);
    *reinterpret_cast<float4*>(p + i) = pv;
    *reinterpret_cast<float4*>(m + i) = mv;
    *reinterpret_cast<float4*>(v + i) = vv;
    if (copy) {
      const Quad<TC> c{
          {from_float<TC>(pv.x), from_float<TC>(pv.y), from_float<TC>(pv.z), from_float<TC>(pv.w)}};
      *reinterpret_cast<Quad<TC>*>(copy + i) = c;
    }
  }
  const std::int64_t singles = head + (n - tail);
  for (std::int64_t j = first; j < singles; j += stride) {
    const std::int64_t i = j < head ? j : tail + (j - head);
    const float pi = adamw_value(s, decay, p[i], g[i], m[i], v[i]);
    p[i] = pi;
    if (copy) copy[i] = from_float<TC>(pi);
  }
}

AdamWScalars scalars(const AdamWConfig& config, std::int64_t step, float grad_scale) {
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(config.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(config.beta2), t);
  return AdamWScalars{config.beta1,
                      1.0f - config.beta1,
                      config.beta2,
                      1.0f - config.beta2,
                      config.eps,
                      static_cast<float>(config.lr / bias_correction1),
                      static_cast<float>(std::sqrt(bias_correction2)),
                      1.0f - config.lr * config.weight_decay,
                      grad_scale};
}

// Elements before the first index at which every pointer is 16-byte aligned for a quad (f32:
// 16 bytes, the copy: 4 elements), or n when the pointers' phases differ.
std::int64_t head_of(std::int64_t n, const void* copy, std::size_t copy_size,
                     std::initializer_list<const float*> f32) {
  const auto phase = [](const void* ptr, std::size_t size) {
    return static_cast<std::int64_t>((reinterpret_cast<std::uintptr_t>(ptr) / size) % 4);
  };
  const std::int64_t first = phase(*f32.begin(), sizeof(float));
  for (const float* ptr : f32)
    if (phase(ptr, sizeof(float)) != first) return n;
  if (copy && phase(copy, copy_size) != first) return n;
  return std::min(n, (4 - first) % 4);
}

}  // namespace

void adamw_multi_step(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                      const std::vector<AdamWRange>& ranges, float grad_scale) {
  if (ranges.empty()) return;
  const AdamWScalars s = scalars(config, step, grad_scale);
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
        const std::int64_t n = r.param.numel();
        if (n == 0) continue;
        list.p[count] = ptr<float>(r.param);
        list.g[count] = ptr<float>(r.grad);
        list.m[count] = ptr<float>(r.exp_avg);
        list.v[count] = ptr<float>(r.exp_avg_sq);
        list.copy[count] = r.param_copy.defined() ? ptr<TC>(r.param_copy) : nullptr;
        list.n[count] = n;
        list.head[count] = head_of(n, list.copy[count], sizeof(TC),
                                   {list.p[count], list.g[count], list.m[count], list.v[count]});
        list.decay[count] = r.weight_decay ? s.decay : 1.0f;  // 1 - lr * 0
        // Threads a range needs: one per quad plus one per single element.
        longest = std::max(longest, (n - list.head[count]) / 4 + list.head[count] + 3);
        ++count;
      }
      if (count == 0) break;
      const dim3 grid(blocks_for(longest, 256, 132 * 16 / count + 1), static_cast<unsigned>(count));
      adamw_kernel<<<grid, 256, 0, stream_of(ctx)>>>(s, list);
      UL_CUDA_CHECK_LAUNCH();
    }
  });
}

}  // namespace ulysses::ops::cuda
