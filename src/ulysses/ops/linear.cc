#include "ulysses/ops/linear.h"

#include <limits>

#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/linear.h"

namespace ulysses::ops {
namespace {

// x: a 2-D f32 matrix whose dimensions fit BLAS's int.
void check_matrix(const Tensor& x, const char* name, const char* expected) {
  check_dtype(x, DType::f32, name);
  UL_CHECK(x.ndim() == 2, name, " has shape ", shape_str(x.shape()), ", expected ", expected);
  constexpr std::int64_t kBlasMax = std::numeric_limits<int>::max();
  UL_CHECK(x.dim(0) <= kBlasMax && x.dim(1) <= kBlasMax, name, " has shape ", shape_str(x.shape()),
           ": dimensions above ", kBlasMax, " are not supported");
}

}  // namespace

void linear_forward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    Tensor y) {
  check_matrix(x, "linear_forward: x", "[N, K]");
  check_matrix(weight, "linear_forward: weight", "[M, K]");
  const std::int64_t N = x.dim(0);
  const std::int64_t K = x.dim(1);
  const std::int64_t M = weight.dim(0);
  check_shape(weight, {M, K}, "linear_forward: weight");
  if (bias.defined()) {
    check_dtype(bias, DType::f32, "linear_forward: bias");
    check_shape(bias, {M}, "linear_forward: bias");
    check_on_context_device(ctx, bias, "linear_forward: bias");
  }
  check_dtype(y, DType::f32, "linear_forward: y");
  check_shape(y, {N, M}, "linear_forward: y");
  check_on_context_device(ctx, x, "linear_forward: x");
  check_on_context_device(ctx, weight, "linear_forward: weight");
  check_on_context_device(ctx, y, "linear_forward: y");

  if (ctx.device.is_cpu()) {
    cpu::linear_forward(x.data<float>(), weight.data<float>(),
                        bias.defined() ? bias.data<float>() : nullptr, y.data<float>(), N, K, M);
  } else {
    UL_FAIL("linear_forward: no kernel for device ", ctx.device.str());
  }
}

void linear_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     Tensor dx, Tensor dweight, Tensor dbias) {
  check_matrix(x, "linear_backward: x", "[N, K]");
  check_matrix(weight, "linear_backward: weight", "[M, K]");
  const std::int64_t N = x.dim(0);
  const std::int64_t K = x.dim(1);
  const std::int64_t M = weight.dim(0);
  check_shape(weight, {M, K}, "linear_backward: weight");
  check_dtype(dy, DType::f32, "linear_backward: dy");
  check_shape(dy, {N, M}, "linear_backward: dy");
  if (dx.defined()) {
    check_dtype(dx, DType::f32, "linear_backward: dx");
    check_shape(dx, {N, K}, "linear_backward: dx");
    check_on_context_device(ctx, dx, "linear_backward: dx");
  }
  check_dtype(dweight, DType::f32, "linear_backward: dweight");
  check_shape(dweight, {M, K}, "linear_backward: dweight");
  if (dbias.defined()) {
    check_dtype(dbias, DType::f32, "linear_backward: dbias");
    check_shape(dbias, {M}, "linear_backward: dbias");
    check_on_context_device(ctx, dbias, "linear_backward: dbias");
  }
  check_on_context_device(ctx, x, "linear_backward: x");
  check_on_context_device(ctx, weight, "linear_backward: weight");
  check_on_context_device(ctx, dy, "linear_backward: dy");
  check_on_context_device(ctx, dweight, "linear_backward: dweight");

  if (ctx.device.is_cpu()) {
    cpu::linear_backward(x.data<float>(), weight.data<float>(), dy.data<float>(),
                         dx.defined() ? dx.data<float>() : nullptr, dweight.data<float>(),
                         dbias.defined() ? dbias.data<float>() : nullptr, N, K, M);
  } else {
    UL_FAIL("linear_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
