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

namespace ulysses::ops {

// Weights and activations ("compute tensors"): f32 on CPU; f32 or bf16 on CUDA. An op's compute
// tensors share one dtype (check_same_dtype); statistics and weight gradients are f32.
inline void check_compute_dtype(const Context& ctx, const Tensor& t, const char* name) {
  if (!ctx.device.is_cuda()) return check_dtype(t, DType::f32, name);
  UL_CHECK(t.defined(), name, " is undefined");
  UL_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::bf16, name, " has dtype ",
           dtype_name(t.dtype()), ", expected f32 or bf16 on ", ctx.device.str());
}

// t has the dtype of `like` (another argument of the op, named like_name).
inline void check_same_dtype(const Tensor& t, const Tensor& like, const char* name,
                             const char* like_name) {
  UL_CHECK(t.defined(), name, " is undefined");
  UL_CHECK(t.dtype() == like.dtype(), name, " has dtype ", dtype_name(t.dtype()), " but ",
           like_name, " has dtype ", dtype_name(like.dtype()), "; they must match");
}

}  // namespace ulysses::ops
