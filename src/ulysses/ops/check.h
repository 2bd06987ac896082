// Argument checks shared by the public op functions (ops/X.cc).
#pragma once

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// The tensor lives on the context's device.
inline void check_on_context_device(const Context& ctx, const Tensor& t, const char* name) {
  UL_CHECK(t.device() == ctx.device, name, " is on ", t.device().str(),
           " but the context device is ", ctx.device.str());
}

}  // namespace ulysses::ops
