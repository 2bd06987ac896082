#include "ulysses/ops/swiglu.h"

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/swiglu.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/swiglu.h"
#endif

namespace ulysses::ops {
void swiglu_forward(const Context& ctx, const Tensor& gate, const Tensor& up, Tensor out) {
  ProfileScope scope(ctx, "swiglu.fwd");
  check_compute_dtype(ctx, gate, "swiglu_forward: gate");
  UL_CHECK(gate.ndim() == 2, "swiglu_forward: gate has shape ", shape_str(gate.shape()),
           ", expected [N, I]");
  check_same_dtype(up, gate, "swiglu_forward: up", "gate");
  check_shape(up, gate.shape(), "swiglu_forward: up");
  check_same_dtype(out, gate, "swiglu_forward: out", "gate");
  check_shape(out, gate.shape(), "swiglu_forward: out");
  check_on_context_device(ctx, gate, "swiglu_forward: gate");
  check_on_context_device(ctx, up, "swiglu_forward: up");
  check_on_context_device(ctx, out, "swiglu_forward: out");

  if (ctx.device.is_cpu()) {
    cpu::swiglu_forward(gate.data<float>(), up.data<float>(), out.data<float>(), gate.numel());
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::swiglu_forward(ctx, gate, up, out);
#endif
  } else {
    UL_FAIL("swiglu_forward: no kernel for device ", ctx.device.str());
  }
}

void swiglu_backward(const Context& ctx, const Tensor& gate, const Tensor& up, const Tensor& dout,
                     Tensor dgate, Tensor dup, GradWrite write) {
  ProfileScope scope(ctx, "swiglu.bwd");
  check_compute_dtype(ctx, gate, "swiglu_backward: gate");
  UL_CHECK(gate.ndim() == 2, "swiglu_backward: gate has shape ", shape_str(gate.shape()),
           ", expected [N, I]");
  check_same_dtype(up, gate, "swiglu_backward: up", "gate");
  check_shape(up, gate.shape(), "swiglu_backward: up");
  check_same_dtype(dout, gate, "swiglu_backward: dout", "gate");
  check_shape(dout, gate.shape(), "swiglu_backward: dout");
  check_same_dtype(dgate, gate, "swiglu_backward: dgate", "gate");
  check_shape(dgate, gate.shape(), "swiglu_backward: dgate");
  check_same_dtype(dup, gate, "swiglu_backward: dup", "gate");
  check_shape(dup, gate.shape(), "swiglu_backward: dup");
  check_on_context_device(ctx, gate, "swiglu_backward: gate");
  check_on_context_device(ctx, up, "swiglu_backward: up");
  check_on_context_device(ctx, dout, "swiglu_backward: dout");
  check_on_context_device(ctx, dgate, "swiglu_backward: dgate");
  check_on_context_device(ctx, dup, "swiglu_backward: dup");

  if (ctx.device.is_cpu()) {
    cpu::swiglu_backward(gate.data<float>(), up.data<float>(), dout.data<float>(),
                         dgate.data<float>(), dup.data<float>(), gate.numel(),
                         write == GradWrite::overwrite);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::swiglu_backward(ctx, gate, up, dout, dgate, dup, write == GradWrite::overwrite);
#endif
  } else {
    UL_FAIL("swiglu_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
