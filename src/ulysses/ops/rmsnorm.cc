#include "ulysses/ops/rmsnorm.h"

#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/rmsnorm.h"

namespace ulysses::ops {
namespace {

// x: [..., C] f32 with C > 0; returns C.
std::int64_t check_rows(const Tensor& x, const char* name) {
  check_dtype(x, DType::f32, name);
  UL_CHECK(x.ndim() >= 1 && x.dim(-1) > 0, name, " has shape ", shape_str(x.shape()),
           ", expected [..., C] with C > 0");
  return x.dim(-1);
}

}  // namespace

void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& weight, float eps, Tensor y,
                     Tensor rstd) {
  const std::int64_t C = check_rows(x, "rmsnorm_forward: x");
  const std::int64_t N = x.numel() / C;
  check_dtype(weight, DType::f32, "rmsnorm_forward: weight");
  check_shape(weight, {C}, "rmsnorm_forward: weight");
  check_dtype(y, DType::f32, "rmsnorm_forward: y");
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
  } else {
    UL_FAIL("rmsnorm_forward: no kernel for device ", ctx.device.str());
  }
}

void rmsnorm_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& rstd,
                      const Tensor& dy, Tensor dx, Tensor dweight) {
  const std::int64_t C = check_rows(x, "rmsnorm_backward: x");
  const std::int64_t N = x.numel() / C;
  check_dtype(weight, DType::f32, "rmsnorm_backward: weight");
  check_shape(weight, {C}, "rmsnorm_backward: weight");
  check_dtype(rstd, DType::f32, "rmsnorm_backward: rstd");
  check_shape(rstd, {N}, "rmsnorm_backward: rstd");
  check_dtype(dy, DType::f32, "rmsnorm_backward: dy");
  check_shape(dy, x.shape(), "rmsnorm_backward: dy");
  check_dtype(dx, DType::f32, "rmsnorm_backward: dx");
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
  } else {
    UL_FAIL("rmsnorm_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
