#include "ulysses/ops/linear.h"

#include <limits>
#include <string>

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/linear.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/linear.h"
#endif

namespace ulysses::ops {
namespace {

// x: a 2-D matrix of a compute dtype whose dimensions fit BLAS's int.
void check_matrix(const Context& ctx, const Tensor& x, const char* name, const char* expected) {
  check_compute_dtype(ctx, x, name);
  UL_CHECK(x.ndim() == 2, name, " has shape ", shape_str(x.shape()), ", expected ", expected);
  constexpr std::int64_t kBlasMax = std::numeric_limits<int>::max();
  UL_CHECK(x.dim(0) <= kBlasMax && x.dim(1) <= kBlasMax, name, " has shape ", shape_str(x.shape()),
           ": dimensions above ", kBlasMax, " are not supported");
}

// The arguments of y = x W^T + b: shapes, dtypes and devices, in messages naming `op`.
void check_forward(const Context& ctx, const std::string& op, const Tensor& x,
                   const Tensor& weight, const Tensor& bias, const Tensor& y) {
  const auto name = [&](const char* arg) { return op + ": " + arg; };
  check_matrix(ctx, x, name("x").c_str(), "[N, K]");
  check_matrix(ctx, weight, name("weight").c_str(), "[M, K]");
  const std::int64_t N = x.dim(0), K = x.dim(1), M = weight.dim(0);
  check_shape(weight, {M, K}, name("weight").c_str());
  check_same_dtype(weight, x, name("weight").c_str(), "x");
  if (bias.defined()) {
    check_same_dtype(bias, x, name("bias").c_str(), "x");
    check_shape(bias, {M}, name("bias").c_str());
    check_on_context_device(ctx, bias, name("bias").c_str());
  }
  check_same_dtype(y, x, name("y").c_str(), "x");
  check_shape(y, {N, M}, name("y").c_str());
  check_on_context_device(ctx, x, name("x").c_str());
  check_on_context_device(ctx, weight, name("weight").c_str());
  check_on_context_device(ctx, y, name("y").c_str());
}

}  // namespace

void linear_forward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    Tensor y) {
  ProfileScope scope(ctx, "gemm");
  check_forward(ctx, "linear_forward", x, weight, bias, y);
  const std::int64_t N = x.dim(0), K = x.dim(1), M = weight.dim(0);

  if (ctx.device.is_cpu()) {
    cpu::linear_forward(x.data<float>(), weight.data<float>(),
                        bias.defined() ? bias.data<float>() : nullptr, y.data<float>(), N, K, M);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::linear_forward(ctx, x, weight, bias, y);
#endif
  } else {
    UL_FAIL("linear_forward: no kernel for device ", ctx.device.str());
  }
}

void linear_forward_residual(const Context& ctx, const Tensor& x, const Tensor& weight,
                             const Tensor& bias, const Tensor& residual, Tensor y) {
  ProfileScope scope(ctx, "gemm");
  check_forward(ctx, "linear_forward_residual", x, weight, bias, y);
  const std::int64_t N = x.dim(0), K = x.dim(1), M = weight.dim(0);
  check_same_dtype(residual, y, "linear_forward_residual: residual", "y");
  check_shape(residual, {N, M}, "linear_forward_residual: residual");
  check_on_context_device(ctx, residual, "linear_forward_residual: residual");

  if (ctx.device.is_cpu()) {
    cpu::linear_forward_residual(x.data<float>(), weight.data<float>(),
                                 bias.defined() ? bias.data<float>() : nullptr,
                                 residual.data<float>(), y.data<float>(), N, K, M);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::linear_forward_residual(ctx, x, weight, bias, residual, y);
#endif
  } else {
    UL_FAIL("linear_forward_residual: no kernel for device ", ctx.device.str());
  }
}

void linear_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     Tensor dx, Tensor dweight, Tensor dbias, GradWrite dx_write) {
  ProfileScope scope(ctx, "gemm");
  check_matrix(ctx, x, "linear_backward: x", "[N, K]");
  check_matrix(ctx, weight, "linear_backward: weight", "[M, K]");
  const std::int64_t N = x.dim(0);
  const std::int64_t K = x.dim(1);
  const std::int64_t M = weight.dim(0);
  check_shape(weight, {M, K}, "linear_backward: weight");
  check_same_dtype(weight, x, "linear_backward: weight", "x");
  check_same_dtype(dy, x, "linear_backward: dy", "x");
  check_shape(dy, {N, M}, "linear_backward: dy");
  if (dx.defined()) {
    check_same_dtype(dx, x, "linear_backward: dx", "x");
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
                         dbias.defined() ? dbias.data<float>() : nullptr, N, K, M,
                         dx_write == GradWrite::overwrite);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::linear_backward(ctx, x, weight, dy, dx, dweight, dbias, dx_write == GradWrite::overwrite);
#endif
  } else {
    UL_FAIL("linear_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
