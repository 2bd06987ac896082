#include "ulysses/ops/add_rmsnorm.h"

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/rmsnorm.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/add_rmsnorm.h"
#endif

namespace ulysses::ops {
namespace {

// t: a compute tensor of x's dtype and shape on the context's device.
void check_like(const Context& ctx, const Tensor& t, const Tensor& x, const char* name,
                const char* x_name) {
  check_same_dtype(t, x, name, x_name);
  check_shape(t, x.shape(), name);
  check_on_context_device(ctx, t, name);
}

// weight [C] like x, rstd [N] f32; returns C.
std::int64_t check_norm_arguments(const Context& ctx, const Tensor& x, const Tensor& weight,
                                  const Tensor& rstd, const char* where) {
  const std::string w = std::string(where) + ": ";
  check_compute_dtype(ctx, x, (w + "x").c_str());
  UL_CHECK(x.ndim() >= 1 && x.dim(-1) > 0, where, ": input has shape ", shape_str(x.shape()),
           ", expected [..., C] with C > 0");
  check_on_context_device(ctx, x, (w + "input").c_str());
  const std::int64_t C = x.dim(-1);
  check_same_dtype(weight, x, (w + "weight").c_str(), "the input");
  check_shape(weight, {C}, (w + "weight").c_str());
  check_on_context_device(ctx, weight, (w + "weight").c_str());
  check_dtype(rstd, DType::f32, (w + "rstd").c_str());
  check_shape(rstd, {x.numel() / C}, (w + "rstd").c_str());
  check_on_context_device(ctx, rstd, (w + "rstd").c_str());
  return C;
}

}  // namespace

void add_rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& r, const Tensor& weight,
                         float eps, Tensor y, Tensor n, Tensor rstd) {
  ProfileScope scope(ctx, "add_rmsnorm.fwd");
  const std::int64_t C = check_norm_arguments(ctx, x, weight, rstd, "add_rmsnorm_forward");
  check_like(ctx, r, x, "add_rmsnorm_forward: r", "x");
  check_like(ctx, y, x, "add_rmsnorm_forward: y", "x");
  check_like(ctx, n, x, "add_rmsnorm_forward: n", "x");
  UL_CHECK(n.raw() != x.raw() && n.raw() != r.raw() && n.raw() != y.raw(),
           "add_rmsnorm_forward: n must not alias x, r or y");
  UL_CHECK(eps >= 0, "add_rmsnorm_forward: eps is ", eps, ", expected eps >= 0");
  const std::int64_t N = x.numel() / C;
  if (ctx.device.is_cpu()) {
    float* out = y.data<float>();
    const float* a = x.data<float>();
    const float* b = r.data<float>();
#pragma omp parallel for
    for (std::int64_t i = 0; i < N * C; ++i) out[i] = a[i] + b[i];
    cpu::rmsnorm_forward(out, weight.data<float>(), eps, n.data<float>(), rstd.data<float>(), N, C);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::add_rmsnorm_forward(ctx, x, r, weight, eps, y, n, rstd);
#endif
  } else {
    UL_FAIL("add_rmsnorm_forward: no kernel for device ", ctx.device.str());
  }
}

void add_rmsnorm_backward(const Context& ctx, const Tensor& y, const Tensor& weight,
                          const Tensor& rstd, const Tensor& dn, const Tensor& dresidual, Tensor dy,
                          Tensor dweight) {
  ProfileScope scope(ctx, "add_rmsnorm.bwd");
  const std::int64_t C = check_norm_arguments(ctx, y, weight, rstd, "add_rmsnorm_backward");
  check_like(ctx, dn, y, "add_rmsnorm_backward: dn", "y");
  check_like(ctx, dresidual, y, "add_rmsnorm_backward: dresidual", "y");
  check_like(ctx, dy, y, "add_rmsnorm_backward: dy", "y");
  UL_CHECK(dy.raw() != dn.raw(), "add_rmsnorm_backward: dy must not alias dn");
  check_dtype(dweight, DType::f32, "add_rmsnorm_backward: dweight");
  check_shape(dweight, {C}, "add_rmsnorm_backward: dweight");
  check_on_context_device(ctx, dweight, "add_rmsnorm_backward: dweight");
  const std::int64_t N = y.numel() / C;
  if (ctx.device.is_cpu()) {
    if (dy.raw() != dresidual.raw()) dy.copy_from(dresidual);
    cpu::rmsnorm_backward(y.data<float>(), weight.data<float>(), rstd.data<float>(),
                          dn.data<float>(), dy.data<float>(), dweight.data<float>(), N, C);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::add_rmsnorm_backward(ctx, y, weight, rstd, dn, dresidual, dy, dweight);
#endif
  } else {
    UL_FAIL("add_rmsnorm_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
