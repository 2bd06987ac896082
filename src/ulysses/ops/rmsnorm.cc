#include "ulysses/ops/rmsnorm.h"

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/rmsnorm.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/rmsnorm.h"
#endif

namespace ulysses::ops {
namespace {

// x: [..., C] (a compute dtype) with C > 0; returns C.
std::int64_t check_rows(const Context& ctx, const Tensor& x, const char* name) {
  check_compute_dtype(ctx, x, name);
  UL_CHECK(x.ndim() >= 1 && x.dim(-1) > 0, name, " has shape ", shape_str(x.shape()),
           ", expected [..., C] with C > 0");
  return x.dim(-1);
}

}  // namespace

void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor y,
                     Tensor rstd) {
  ProfileScope scope(ctx, "rmsnorm.fwd");
  const std::int64_t C = check_rows(ctx, x, "rmsnorm_forward: x");
  const std::int64_t N = x.numel() / C;
  check_same_dtype(weight, x, "rmsnorm_forward: weight", "x");
  check_shape(weight, {C}, "rmsnorm_forward: weight");
  check_same_dtype(y, x, "rmsnorm_forward: y", "x");
  check_shape(y, x.shape(), "rmsnorm_forward: y");
  check_dtype(rstd, DType::f32, "rmsnorm_forward: rstd");
  check_shape(rstd, {N}, "rmsnorm_forward: rstd");
  UL_CHECK(eps >= 0, "rmsnorm_forward: eps is ", eps, ", expected eps >= 0");
  check_on_context_device(ctx, x, "rmsnorm_forward: x");
  check_on_context_device(ctx, weight, "rmsnorm_forward: weight");
  check_on_context_device(ctx, y, "rmsnorm_forward: y");
  check_on_context_device(ctx, rstd, "rmsnorm_forward: rstd");

  if (ctx.device.is_cpu()) {
    cpu::rmsnorm_forward(x.data<float>(), weight.data<float>(), eps, y.data<float>(),
                         rstd.data<float>(), N, C);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::rmsnorm_forward(ctx, x, weight, eps, y, rstd);
#endif
  } else {
    UL_FAIL("rmsnorm_forward: no kernel for device ", ctx.device.str());
  }
}

void rmsnorm_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                      const Tensor& dy, Tensor dx, Tensor dweight) {
  ProfileScope scope(ctx, "rmsnorm.bwd");
  const std::int64_t C = check_rows(ctx, x, "rmsnorm_backward: x");
  const std::int64_t N = x.numel() / C;
  check_same_dtype(weight, x, "rmsnorm_backward: weight", "x");
  check_shape(weight, {C}, "rmsnorm_backward: weight");
  check_dtype(rstd, DType::f32, "rmsnorm_backward: rstd");
  check_shape(rstd, {N}, "rmsnorm_backward: rstd");
  check_same_dtype(dy, x, "rmsnorm_backward: dy", "x");
  check_shape(dy, x.shape(), "rmsnorm_backward: dy");
  check_same_dtype(dx, x, "rmsnorm_backward: dx", "x");
  check_shape(dx, x.shape(), "rmsnorm_backward: dx");
  check_dtype(dweight, DType::f32, "rmsnorm_backward: dweight");
  check_shape(dweight, {C}, "rmsnorm_backward: dweight");
  UL_CHECK(dx.raw() != dy.raw(), "rmsnorm_backward: dx must not alias dy");
  check_on_context_device(ctx, x, "rmsnorm_backward: x");
  check_on_context_device(ctx, weight, "rmsnorm_backward: weight");
  check_on_context_device(ctx, rstd, "rmsnorm_backward: rstd");
  check_on_context_device(ctx, dy, "rmsnorm_backward: dy");
  check_on_context_device(ctx, dx, "rmsnorm_backward: dx");
  check_on_context_device(ctx, dweight, "rmsnorm_backward: dweight");

  if (ctx.device.is_cpu()) {
    cpu::rmsnorm_backward(x.data<float>(), weight.data<float>(), rstd.data<float>(),
                          dy.data<float>(), dx.data<float>(), dweight.data<float>(), N, C);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::rmsnorm_backward(ctx, x, weight, rstd, dy, dx, dweight);
#endif
  } else {
    UL_FAIL("rmsnorm_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
