#include "ulysses/ops/adamw.h"

#include "ulysses/core/error.h"
#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/adamw.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/adamw.h"
#endif

namespace ulysses::ops {

namespace {

void check_state(const Context& ctx, const Tensor& t, const Tensor& param, const char* name) {
  UL_CHECK(t.defined(), name, " is undefined");
  check_dtype(t, DType::f32, name);
  check_shape(t, param.shape(), name);
  check_on_context_device(ctx, t, name);
}

}  // namespace

void adamw_step(const Context& ctx, const AdamWConfig& config, std::int64_t step, Tensor param,
                const Tensor& grad, Tensor exp_avg, Tensor exp_avg_sq) {
  ProfileScope scope(ctx, "adamw");
  adamw_step_with_copy(ctx, config, step, param, grad, exp_avg, exp_avg_sq, Tensor());
}

void adamw_step_with_copy(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                          Tensor param, const Tensor& grad, Tensor exp_avg, Tensor exp_avg_sq,
                          Tensor param_copy) {
  ProfileScope scope(ctx, "adamw");
  UL_CHECK(step >= 1, "adamw_step: step must be >= 1 (1-based update count), got ", step);
  UL_CHECK(param.defined(), "adamw_step: param is undefined");
  check_state(ctx, param, param, "adamw_step: param");
  check_state(ctx, grad, param, "adamw_step: grad");
  check_state(ctx, exp_avg, param, "adamw_step: exp_avg");
  check_state(ctx, exp_avg_sq, param, "adamw_step: exp_avg_sq");
  if (param_copy.defined()) {
    UL_CHECK(param_copy.dtype() == DType::f32 || param_copy.dtype() == DType::bf16,
             "adamw_step: param_copy has dtype ", dtype_name(param_copy.dtype()),
             ", expected f32 or bf16");
    check_shape(param_copy, param.shape(), "adamw_step: param_copy");
    check_on_context_device(ctx, param_copy, "adamw_step: param_copy");
  }
  if (ctx.device.is_cpu()) {
    return cpu::adamw_step(config, step, param, grad, exp_avg, exp_avg_sq, param_copy);
  }
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda())
    return cuda::adamw_multi_step(
        ctx, config, step, {AdamWRange{param, grad, exp_avg, exp_avg_sq, param_copy, true}}, 1.0f);
#endif
  UL_FAIL("adamw_step: no kernel for device ", ctx.device.str());
}

void adamw_multi_step(const Context& ctx, const AdamWConfig& config, std::int64_t step,
                      const std::vector<AdamWRange>& ranges, float grad_scale) {
  ProfileScope scope(ctx, "adamw");
  UL_CHECK(step >= 1, "adamw_multi_step: step must be >= 1 (1-based update count), got ", step);
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    const AdamWRange& r = ranges[i];
    const std::string where = "adamw_multi_step: range " + std::to_string(i) + " ";
    UL_CHECK(r.param.defined(), where, "param is undefined");
    const Shape flat = {r.param.numel()};
    const auto check = [&](const Tensor& t, const char* name) {
      const std::string what = where + name;
      UL_CHECK(t.defined(), what, " is undefined");
      check_dtype(t, DType::f32, what.c_str());
      UL_CHECK(t.numel() == r.param.numel(), what, " has ", t.numel(), " elements, param ",
               r.param.numel());
      check_on_context_device(ctx, t, what.c_str());
    };
    check(r.param, "param");
    check(r.grad, "grad");
    check(r.exp_avg, "exp_avg");
    check(r.exp_avg_sq, "exp_avg_sq");
    if (r.param_copy.defined()) {
      UL_CHECK(r.param_copy.dtype() == DType::f32 || r.param_copy.dtype() == DType::bf16, where,
               "param_copy has dtype ", dtype_name(r.param_copy.dtype()), ", expected f32 or bf16");
      UL_CHECK(r.param_copy.numel() == r.param.numel(), where, "param_copy has ",
               r.param_copy.numel(), " elements, param ", r.param.numel());
      check_on_context_device(ctx, r.param_copy, (where + "param_copy").c_str());
    }
    UL_CHECK(r.param_copy.defined() == ranges[0].param_copy.defined() &&
                 (!r.param_copy.defined() || r.param_copy.dtype() == ranges[0].param_copy.dtype()),
             where, "param_copy differs from range 0's (all undefined, or all of one dtype)");
  }
  if (ctx.device.is_cpu()) {
    for (const AdamWRange& r : ranges) {
      AdamWConfig c = config;
      if (!r.weight_decay) c.weight_decay = 0.0f;
      const Shape flat = {r.param.numel()};
      cpu::adamw_step(c, step, r.param.view(flat), r.grad.view(flat), r.exp_avg.view(flat),
                      r.exp_avg_sq.view(flat),
                      r.param_copy.defined() ? r.param_copy.view(flat) : Tensor(), grad_scale);
    }
    return;
  }
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) return cuda::adamw_multi_step(ctx, config, step, ranges, grad_scale);
#endif
  UL_FAIL("adamw_multi_step: no kernel for device ", ctx.device.str());
}

}  // namespace ulysses::ops
