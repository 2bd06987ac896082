#include "ulysses/ops/qk_norm_rope.h"

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/rmsnorm.h"
#include "ulysses/ops/cpu/rope.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/qk_norm_rope.h"
#endif

namespace ulysses::ops {
namespace {

// x: [T, H, D] with D even, a [T, D/2] table, and weight [D] / rstd [T * H] when weight is
// defined (both undefined otherwise).
void check_arguments(const Context& ctx, const RopeTable& table, const Tensor& x,
                     const Tensor& weight, const Tensor& rstd, const char* where) {
  const std::string w = std::string(where) + ": ";
  check_compute_dtype(ctx, x, (w + "x").c_str());
  UL_CHECK(x.ndim() == 3 && x.dim(2) > 0 && x.dim(2) % 2 == 0, where, ": x has shape ",
           shape_str(x.shape()), ", expected [T, H, D] with D even");
  check_on_context_device(ctx, x, (w + "x").c_str());
  const Shape table_shape = {x.dim(0), x.dim(2) / 2};
  check_dtype(table.cos, DType::f32, (w + "table cos").c_str());
  check_shape(table.cos, table_shape, (w + "table cos").c_str());
  check_on_context_device(ctx, table.cos, (w + "table cos").c_str());
  check_dtype(table.sin, DType::f32, (w + "table sin").c_str());
  check_shape(table.sin, table_shape, (w + "table sin").c_str());
  check_on_context_device(ctx, table.sin, (w + "table sin").c_str());
  if (!weight.defined()) {
    UL_CHECK(!rstd.defined(), where, ": rstd is given without a norm weight (RoPE only)");
    return;
  }
  check_same_dtype(weight, x, (w + "weight").c_str(), "x");
  check_shape(weight, {x.dim(2)}, (w + "weight").c_str());
  check_on_context_device(ctx, weight, (w + "weight").c_str());
  check_dtype(rstd, DType::f32, (w + "rstd").c_str());
  check_shape(rstd, {x.dim(0) * x.dim(1)}, (w + "rstd").c_str());
  check_on_context_device(ctx, rstd, (w + "rstd").c_str());
}

}  // namespace

void qk_norm_rope_forward(const Context& ctx, const RopeTable& table, const Tensor& x,
                          const Tensor& weight, float eps, Tensor out, Tensor rstd) {
  ProfileScope scope(ctx, "qk_norm_rope.fwd");
  check_arguments(ctx, table, x, weight, rstd, "qk_norm_rope_forward");
  check_same_dtype(out, x, "qk_norm_rope_forward: out", "x");
  check_shape(out, x.shape(), "qk_norm_rope_forward: out");
  check_on_context_device(ctx, out, "qk_norm_rope_forward: out");
  UL_CHECK(eps >= 0, "qk_norm_rope_forward: eps is ", eps, ", expected eps >= 0");
  const std::int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  if (ctx.device.is_cpu()) {
    if (weight.defined()) {
      cpu::rmsnorm_forward(x.data<float>(), weight.data<float>(), eps, out.data<float>(),
                           rstd.data<float>(), T * H, D);
      cpu::rope_forward(table.cos.data<float>(), table.sin.data<float>(), out.data<float>(),
                        out.data<float>(), T, H, D);
    } else {
      cpu::rope_forward(table.cos.data<float>(), table.sin.data<float>(), x.data<float>(),
                        out.data<float>(), T, H, D);
    }
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::qk_norm_rope_forward(ctx, table.cos, table.sin, x, weight, eps, out, rstd);
#endif
  } else {
    UL_FAIL("qk_norm_rope_forward: no kernel for device ", ctx.device.str());
  }
}

void qk_norm_rope_backward(const Context& ctx, const RopeTable& table, const Tensor& x,
                           const Tensor& weight, const Tensor& rstd, const Tensor& dout, Tensor dx,
                           Tensor dweight) {
  ProfileScope scope(ctx, "qk_norm_rope.bwd");
  check_arguments(ctx, table, dout, weight, rstd, "qk_norm_rope_backward");
  check_same_dtype(dx, dout, "qk_norm_rope_backward: dx", "dout");
  check_shape(dx, dout.shape(), "qk_norm_rope_backward: dx");
  check_on_context_device(ctx, dx, "qk_norm_rope_backward: dx");
  UL_CHECK(dx.raw() != dout.raw(), "qk_norm_rope_backward: dx must not alias dout");
  if (weight.defined()) {
    check_same_dtype(x, dout, "qk_norm_rope_backward: x", "dout");
    check_shape(x, dout.shape(), "qk_norm_rope_backward: x");
    check_on_context_device(ctx, x, "qk_norm_rope_backward: x");
    check_dtype(dweight, DType::f32, "qk_norm_rope_backward: dweight");
    check_shape(dweight, {dout.dim(2)}, "qk_norm_rope_backward: dweight");
    check_on_context_device(ctx, dweight, "qk_norm_rope_backward: dweight");
  }
  const std::int64_t T = dout.dim(0), H = dout.dim(1), D = dout.dim(2);
  if (ctx.device.is_cpu()) {
    if (weight.defined()) {
      Tensor dn = Tensor::zeros(dout.shape(), DType::f32);
      cpu::rope_backward(table.cos.data<float>(), table.sin.data<float>(), dout.data<float>(),
                         dn.data<float>(), T, H, D);
      dx.zero_();
      cpu::rmsnorm_backward(x.data<float>(), weight.data<float>(), rstd.data<float>(),
                            dn.data<float>(), dx.data<float>(), dweight.data<float>(), T * H, D);
    } else {
      dx.zero_();
      cpu::rope_backward(table.cos.data<float>(), table.sin.data<float>(), dout.data<float>(),
                         dx.data<float>(), T, H, D);
    }
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::qk_norm_rope_backward(ctx, table.cos, table.sin, x, weight, rstd, dout, dx, dweight);
#endif
  } else {
    UL_FAIL("qk_norm_rope_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
