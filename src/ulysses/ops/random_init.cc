#include "ulysses/ops/random_init.h"

#include "ulysses/core/counter_rng.h"
#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/random_init.h"
#endif

namespace ulysses::ops {
namespace {

void check_out(const Context& ctx, const Tensor& out, const char* where) {
  UL_CHECK(out.defined(), where, ": out is undefined");
  UL_CHECK(out.dtype() == DType::f32 || out.dtype() == DType::bf16, where, ": out has dtype ",
           dtype_name(out.dtype()), ", expected f32 or bf16");
  check_on_context_device(ctx, out, where);
}

template <typename F>
void fill_host(Tensor out, F value) {
  const std::int64_t n = out.numel();
  if (out.dtype() == DType::f32) {
    float* p = out.data<float>();
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) p[i] = value(i);
  } else {
    bf16* p = out.data<bf16>();
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) p[i] = float_to_bf16(value(i));
  }
}

}  // namespace

void fill_normal(const Context& ctx, Tensor out, std::uint64_t key, std::int64_t first, float std) {
  ProfileScope scope(ctx, "init");
  check_out(ctx, out, "fill_normal");
  UL_CHECK(first >= 0, "fill_normal: first is ", first, ", expected >= 0");
  if (ctx.device.is_cpu()) {
    const auto u = static_cast<std::uint64_t>(first);
    return fill_host(out, [&](std::int64_t i) {
      return std * counter_rng::normal(key, u + static_cast<std::uint64_t>(i));
    });
  }
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) return cuda::fill_normal(ctx, out, key, first, std);
#endif
  UL_FAIL("fill_normal: no kernel for device ", ctx.device.str());
}

void fill_constant(const Context& ctx, Tensor out, float value) {
  ProfileScope scope(ctx, "init");
  check_out(ctx, out, "fill_constant");
  if (ctx.device.is_cpu()) return fill_host(out, [&](std::int64_t) { return value; });
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) return cuda::fill_constant(ctx, out, value);
#endif
  UL_FAIL("fill_constant: no kernel for device ", ctx.device.str());
}

}  // namespace ulysses::ops
