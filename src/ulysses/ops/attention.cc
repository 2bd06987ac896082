// Argument validation and device dispatch for the causal varlen GQA attention.
#include "ulysses/ops/attention.h"

#include <cstdint>
#include <string>
#include <vector>

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/attention.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/attention.h"
#include "ulysses/ops/cuda/cudnn_attention.h"
#endif

namespace ulysses::ops {
namespace {

// Element type of q, k, v, out and their gradients: f32 on CPU, bf16 on CUDA.
DType attention_dtype(const Context& ctx) {
  return ctx.device.is_cuda() ? DType::bf16 : DType::f32;
}

// Checks q, k, v, cu_seqlens and the block size; returns the shape for the kernels and the
// cu_seqlens values (read on the host).
cpu::AttentionShape check_inputs(const Context& ctx, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const Indices& cu_arg,
                                 std::vector<std::int32_t>* cu_values = nullptr) {
  const Tensor& cu_seqlens = cu_arg.tensor;
  check_dtype(q, attention_dtype(ctx), "attention: q");
  check_dtype(k, attention_dtype(ctx), "attention: k");
  check_dtype(v, attention_dtype(ctx), "attention: v");
  check_dtype(cu_seqlens, DType::i32, "attention: cu_seqlens");
  UL_CHECK(q.ndim() == 3, "attention: q must be [T, Hq, D], got shape ", shape_str(q.shape()));
  UL_CHECK(k.ndim() == 3, "attention: k must be [T, Hkv, D], got shape ", shape_str(k.shape()));
  const std::int64_t T = q.dim(0), Hq = q.dim(1), D = q.dim(2), Hkv = k.dim(1);
  UL_CHECK(Hq > 0 && D > 0, "attention: q has shape ", shape_str(q.shape()),
           "; the head count and head dimension must be positive");
  UL_CHECK(Hkv > 0, "attention: k has shape ", shape_str(k.shape()),
           "; the kv head count must be positive");
  check_shape(k, {T, Hkv, D}, "attention: k");
  check_shape(v, {T, Hkv, D}, "attention: v");
  UL_CHECK(Hq % Hkv == 0, "attention: the query head count (", Hq,
           ") must be a multiple of the kv head count (", Hkv, ")");
  UL_CHECK(cu_seqlens.ndim() == 1 && cu_seqlens.dim(0) >= 1,
           "attention: cu_seqlens must be [n + 1] with n >= 0, got shape ",
           shape_str(cu_seqlens.shape()));
  UL_CHECK(ctx.attention_block > 0, "attention: ctx.attention_block must be positive, got ",
           ctx.attention_block);
  check_on_context_device(ctx, q, "attention: q");
  check_on_context_device(ctx, k, "attention: k");
  check_on_context_device(ctx, v, "attention: v");
  check_on_context_device(ctx, cu_seqlens, "attention: cu_seqlens");
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) {
    UL_CHECK(T < (std::int64_t{1} << 31) / Hq, "attention: ", T, " tokens x ", Hq,
             " heads exceed the CUDA kernels' 32-bit row indexing");
  }
#endif

  // cu_seqlens values on the host (the caller's copy, or read back).
  std::vector<std::int32_t> storage;
  const std::int32_t* cu = host_values(cu_arg, storage, "attention: cu_seqlens").data();
  const std::int64_t n = cu_seqlens.dim(0) - 1;
  UL_CHECK(cu[0] == 0, "attention: cu_seqlens[0] must be 0, got ", cu[0]);
  for (std::int64_t j = 0; j < n; ++j) {
    UL_CHECK(cu[j + 1] >= cu[j], "attention: cu_seqlens must be non-decreasing, but cu_seqlens[",
             j + 1, "] = ", cu[j + 1], " < cu_seqlens[", j, "] = ", cu[j]);
  }
  UL_CHECK(cu[n] == T, "attention: cu_seqlens must end at the token count T = ", T,
           ", but cu_seqlens[", n, "] = ", cu[n]);
  if (cu_values) cu_values->assign(cu, cu + n + 1);
  return {T, Hq, Hkv, D, n, ctx.attention_block};
}

#ifdef ULYSSES_HAS_CUDA
// After cuDNN declined a call (or was not asked): the built-in kernel, or an Error that says why
// neither can run it.
void require_builtin_kernel(const Context& ctx, std::int64_t head_dim) {
  UL_CHECK(ctx.attention_kernel != AttentionKernel::cudnn,
           "attention: cuDNN attention was requested (--attn-implementation cudnn) but cuDNN "
           "cannot run this call (the log says why); use --attn-implementation auto");
  std::string why;
  const bool has_cudnn = cuda::cudnn_version(&why) > 0;
  UL_CHECK(cuda::attention_supports_head_dim(head_dim), "attention: head_dim ", head_dim,
           " has no built-in CUDA kernel (64 and 128 do)",
           has_cudnn ? std::string(" and cuDNN refused the shape")
                     : std::string(" and cuDNN is not available: ") + why);
}
#endif

}  // namespace

void attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Indices& cu_arg, float scale, Tensor out, Tensor lse) {
  ProfileScope scope(ctx, "attention");
  std::vector<std::int32_t> cu;
  const cpu::AttentionShape shape = check_inputs(ctx, q, k, v, cu_arg, &cu);
  const Tensor& cu_seqlens = cu_arg.tensor;
  check_dtype(out, attention_dtype(ctx), "attention_forward: out");
  check_dtype(lse, DType::f32, "attention_forward: lse");
  check_shape(out, q.shape(), "attention_forward: out");
  check_shape(lse, {shape.query_heads, shape.tokens}, "attention_forward: lse");
  check_on_context_device(ctx, out, "attention_forward: out");
  check_on_context_device(ctx, lse, "attention_forward: lse");

  if (ctx.device.is_cpu()) {
    cpu::attention_forward(shape, q.data<float>(), k.data<float>(), v.data<float>(),
                           cu_seqlens.data<std::int32_t>(), scale, out.data<float>(),
                           lse.data<float>());
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    for (const Tensor* t : std::initializer_list<const Tensor*>{&q, &k, &v, &out})
      UL_CHECK(reinterpret_cast<std::uintptr_t>(t->raw()) % 16 == 0,
               "attention_forward: CUDA tensors must be 16-byte aligned");
    if (ctx.attention_kernel != AttentionKernel::builtin &&
        cuda::cudnn_attention_forward(ctx, q, k, v, cu_seqlens, cu, scale, out, lse))
      return;
    require_builtin_kernel(ctx, shape.head_dim);
    cuda::attention_forward(ctx, q, k, v, cu_seqlens, scale, out, lse);
#endif
  } else {
    UL_FAIL("attention_forward: no kernel for device ", ctx.device.str());
  }
}

void attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Indices& cu_arg, float scale, const Tensor& out, const Tensor& lse,
                        const Tensor& dout, Tensor dq, Tensor dk, Tensor dv, GradWrite write) {
  ProfileScope scope(ctx, "attention");
  std::vector<std::int32_t> cu;
  const cpu::AttentionShape shape = check_inputs(ctx, q, k, v, cu_arg, &cu);
  const Tensor& cu_seqlens = cu_arg.tensor;
  const struct {
    const Tensor& tensor;
    const Shape& shape;
    const char* name;
  } others[] = {
      {out, q.shape(), "attention_backward: out"}, {dout, q.shape(), "attention_backward: dout"},
      {dq, q.shape(), "attention_backward: dq"},   {dk, k.shape(), "attention_backward: dk"},
      {dv, k.shape(), "attention_backward: dv"},
  };
  for (const auto& other : others) {
    check_dtype(other.tensor, attention_dtype(ctx), other.name);
    check_shape(other.tensor, other.shape, other.name);
    check_on_context_device(ctx, other.tensor, other.name);
  }
  check_dtype(lse, DType::f32, "attention_backward: lse");
  check_shape(lse, {shape.query_heads, shape.tokens}, "attention_backward: lse");
  check_on_context_device(ctx, lse, "attention_backward: lse");

  const bool overwrite = write == GradWrite::overwrite;
  // The kernels that accumulate start from zero when overwriting (cuDNN writes itself).
  const auto zero_outputs = [&] {
    dq.zero_();
    dk.zero_();
    dv.zero_();
  };
  if (ctx.device.is_cpu()) {
    if (overwrite) zero_outputs();
    cpu::attention_backward(shape, q.data<float>(), k.data<float>(), v.data<float>(),
                            cu_seqlens.data<std::int32_t>(), scale, out.data<float>(),
                            lse.data<float>(), dout.data<float>(), dq.data<float>(),
                            dk.data<float>(), dv.data<float>());
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    for (const Tensor* t :
         std::initializer_list<const Tensor*>{&q, &k, &v, &out, &dout, &dq, &dk, &dv})
      UL_CHECK(reinterpret_cast<std::uintptr_t>(t->raw()) % 16 == 0,
               "attention_backward: CUDA tensors must be 16-byte aligned");
    if (ctx.attention_kernel != AttentionKernel::builtin &&
        cuda::cudnn_attention_backward(ctx, q, k, v, cu_seqlens, cu, scale, out, lse, dout, dq, dk,
                                       dv, overwrite))
      return;
    require_builtin_kernel(ctx, shape.head_dim);
    if (overwrite) zero_outputs();
    cuda::attention_backward(ctx, q, k, v, cu_seqlens, scale, out, lse, dout, dq, dk, dv);
#endif
  } else {
    UL_FAIL("attention_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
