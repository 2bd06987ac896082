#include "ulysses/ops/elementwise.h"

#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/elementwise.h"

namespace ulysses::ops {
void add_inplace(const Context& ctx, Tensor y, const Tensor& x) {
  check_dtype(y, DType::f32, "add_inplace: y");
  check_dtype(x, DType::f32, "add_inplace: x");
  check_shape(x, y.shape(), "add_inplace: x");
  check_on_context_device(ctx, y, "add_inplace: y");
  check_on_context_device(ctx, x, "add_inplace: x");

  if (ctx.device.is_cpu()) {
    cpu::add_inplace(y.data<float>(), x.data<float>(), y.numel());
  } else {
    UL_FAIL("add_inplace: no kernel for device ", ctx.device.str());
  }
}

void scale_inplace(const Context& ctx, Tensor x, float factor) {
  check_dtype(x, DType::f32, "scale_inplace: x");
  check_on_context_device(ctx, x, "scale_inplace: x");

  if (ctx.device.is_cpu()) {
    cpu::scale_inplace(x.data<float>(), factor, x.numel());
  } else {
    UL_FAIL("scale_inplace: no kernel for device ", ctx.device.str());
  }
}

double sum_of_squares(const Context& ctx, const Tensor& x) {
  check_dtype(x, DType::f32, "sum_of_squares: x");
  check_on_context_device(ctx, x, "sum_of_squares: x");

  if (ctx.device.is_cpu()) return cpu::sum_of_squares(x.data<float>(), x.numel());
  UL_FAIL("sum_of_squares: no kernel for device ", ctx.device.str());
}

}  // namespace ulysses::ops
