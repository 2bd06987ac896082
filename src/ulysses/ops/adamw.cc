#include "ulysses/ops/adamw.h"

#include "ulysses/core/error.h"
#include "ulysses/ops/cpu/adamw.h"

namespace ulysses::ops {

namespace {

void check_state(const Context& ctx, const Tensor& t, const Tensor& param, const char* name) {
  UL_CHECK(t.defined(), name, " is undefined");
  check_dtype(t, DType::f32, name);
  check_shape(t, param.shape(), name);
  UL_CHECK(t.device() == ctx.device, name, " is on ", t.device().str(), " but ctx.device is ",
           ctx.device.str());
}

}  // namespace

void adamw_step(const Context& ctx, const AdamWConfig& config, std::int64_t step, Tensor param,
                const Tensor& grad, Tensor exp_avg, Tensor exp_avg_sq) {
  UL_CHECK(step >= 1, "adamw_step: step must be >= 1 (1-based update count), got ", step);
  UL_CHECK(param.defined(), "adamw_step: param is undefined");
  check_state(ctx, param, param, "adamw_step: param");
  check_state(ctx, grad, param, "adamw_step: grad");
  check_state(ctx, exp_avg, param, "adamw_step: exp_avg");
  check_state(ctx, exp_avg_sq, param, "adamw_step: exp_avg_sq");
  if (ctx.device.is_cpu()) return cpu::adamw_step(config, step, param, grad, exp_avg, exp_avg_sq);
  UL_FAIL("adamw_step: no kernel for device ", ctx.device.str());
}

}  // namespace ulysses::ops
