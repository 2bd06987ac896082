// Argument validation and device dispatch (CPU; CUDA: cuDNN, masked fill or the reference
// kernel, see block_attention.h) for the block attention and its merge.
#include "ulysses/ops/block_attention.h"

#include <initializer_list>
#include <vector>

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/block_pair.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/block_attention.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/block_attention.h"
#include "ulysses/ops/cuda/cudnn_block_attention.h"
#endif

namespace ulysses::ops {
namespace {

// Checks q, k, v, cu_seqlens and the placement; returns the shape for the kernels.
cpu::BlockAttentionShape check_inputs(const Context& ctx, const Tensor& q, const Tensor& k,
                                      const Tensor& v, const Tensor& cu_seqlens,
                                      const std::vector<std::int32_t>& cu_host,
                                      std::int64_t q_begin, std::int64_t k_begin) {
  check_compute_dtype(ctx, q, "attention_block: q");
  check_same_dtype(k, q, "attention_block: k", "q");
  check_same_dtype(v, q, "attention_block: v", "q");
  check_dtype(cu_seqlens, DType::i32, "attention_block: cu_seqlens");
  UL_CHECK(q.ndim() == 3, "attention_block: q must be [Tq, Hq, D], got shape ",
           shape_str(q.shape()));
  UL_CHECK(k.ndim() == 3, "attention_block: k must be [Tk, Hkv, D], got shape ",
           shape_str(k.shape()));
  const std::int64_t Tq = q.dim(0), Hq = q.dim(1), D = q.dim(2), Tk = k.dim(0), Hkv = k.dim(1);
  UL_CHECK(Hq > 0 && D > 0 && Hkv > 0, "attention_block: q ", shape_str(q.shape()), " and k ",
           shape_str(k.shape()), " need positive head counts and head dimension");
  check_shape(k, {Tk, Hkv, D}, "attention_block: k");
  check_shape(v, {Tk, Hkv, D}, "attention_block: v");
  UL_CHECK(Hq % Hkv == 0, "attention_block: the query head count (", Hq,
           ") must be a multiple of the kv head count (", Hkv, ")");
  UL_CHECK(cu_seqlens.ndim() == 1 && cu_seqlens.dim(0) >= 1,
           "attention_block: cu_seqlens must be [n + 1] with n >= 0, got shape ",
           shape_str(cu_seqlens.shape()));
  UL_CHECK(ctx.attention_block > 0, "attention_block: ctx.attention_block must be positive");
  for (const Tensor* t : {&q, &k, &v, &cu_seqlens})
    check_on_context_device(ctx, *t, "attention_block: input");
  const std::int64_t n = cu_seqlens.dim(0) - 1;
  UL_CHECK(cu_host.empty() || static_cast<std::int64_t>(cu_host.size()) == n + 1,
           "attention_block: cu_host has ", cu_host.size(), " values for cu_seqlens of ", n + 1);
  if (!ctx.device.is_cpu()) return {Tq, Tk, q_begin, k_begin, Hq, Hkv, D, n, ctx.attention_block};
  const std::int32_t* cu = cu_seqlens.data<std::int32_t>();
  for (std::size_t j = 0; j < cu_host.size(); ++j)
    UL_CHECK(cu_host[j] == cu[j], "attention_block: cu_host[", j, "] = ", cu_host[j],
             " differs from cu_seqlens[", j, "] = ", cu[j]);
  UL_CHECK(cu[0] == 0, "attention_block: cu_seqlens[0] must be 0, got ", cu[0]);
  for (std::int64_t j = 0; j < n; ++j)
    UL_CHECK(cu[j + 1] >= cu[j], "attention_block: cu_seqlens must be non-decreasing (entry ",
             j + 1, ")");
  UL_CHECK(q_begin >= 0 && q_begin + Tq <= cu[n], "attention_block: queries [", q_begin, ", ",
           q_begin + Tq, ") outside the sequence of ", cu[n], " tokens");
  UL_CHECK(k_begin >= 0 && k_begin + Tk <= cu[n], "attention_block: keys [", k_begin, ", ",
           k_begin + Tk, ") outside the sequence of ", cu[n], " tokens");
  return {Tq, Tk, q_begin, k_begin, Hq, Hkv, D, n, ctx.attention_block};
}

void check_output(const Context& ctx, const Tensor& t, const Shape& shape, const char* name) {
  check_dtype(t, DType::f32, name);
  check_shape(t, shape, name);
  check_on_context_device(ctx, t, name);
}

#ifdef ULYSSES_HAS_CUDA
// The pair's kind when the fused path may run it (ctx.attention_kernel not builtin, host
// boundaries given); `other` otherwise. Classifying checks the placement against cu_host.
BlockPair fused_candidate(const Context& ctx, const std::vector<std::int32_t>& cu_host,
                          const cpu::BlockAttentionShape& shape) {
  if (ctx.attention_kernel == AttentionKernel::builtin || cu_host.empty()) return {};
  return classify_block_pair(cu_host, shape.query_begin, shape.query_tokens, shape.key_begin,
                             shape.key_tokens);
}

// After cuDNN declined a diagonal or before pair: the reference kernel, unless only cuDNN was
// asked for.
void require_reference(const Context& ctx, const char* what) {
  UL_CHECK(ctx.attention_kernel != AttentionKernel::cudnn, what,
           ": cuDNN attention was requested (--attn-implementation cudnn) but cuDNN cannot run "
           "this block pair (the log says why); use --attn-implementation auto");
}

bool fused_kind(const BlockPair& pair) {
  return pair.kind == BlockPairKind::diagonal || pair.kind == BlockPairKind::before;
}
#endif

}  // namespace

BlockAttentionPath attention_block_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                           const Tensor& v, const Tensor& cu_seqlens,
                                           const std::vector<std::int32_t>& cu_host,
                                           std::int64_t q_begin, std::int64_t k_begin, float scale,
                                           Tensor out, Tensor lse) {
  ProfileScope scope(ctx, "attention_block");
  const cpu::BlockAttentionShape shape =
      check_inputs(ctx, q, k, v, cu_seqlens, cu_host, q_begin, k_begin);
  check_output(ctx, out, q.shape(), "attention_block_forward: out");
  check_output(ctx, lse, {shape.query_heads, shape.query_tokens}, "attention_block_forward: lse");
  if (ctx.device.is_cpu()) {
    cpu::block_attention_forward(shape, q.data<float>(), k.data<float>(), v.data<float>(),
                                 cu_seqlens.data<std::int32_t>(), scale, out.data<float>(),
                                 lse.data<float>());
    return BlockAttentionPath::cpu;
  }
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) {
    const BlockPair pair = fused_candidate(ctx, cu_host, shape);
    if (pair.kind == BlockPairKind::masked && cuda::block_attention_masked_forward(ctx, out, lse))
      return BlockAttentionPath::masked;
    if (fused_kind(pair)) {
      if (cuda::cudnn_block_attention_forward(ctx, q, k, v, cu_seqlens, q_begin, pair, scale, out,
                                              lse))
        return BlockAttentionPath::cudnn;
      require_reference(ctx, "attention_block_forward");
    }
    cuda::block_attention_forward(ctx, q, k, v, cu_seqlens, q_begin, k_begin, scale, out, lse);
    return BlockAttentionPath::reference;
  }
#endif
  UL_FAIL("attention_block_forward: no kernel for device ", ctx.device.str());
}

void attention_merge(const Context& ctx, Tensor out, Tensor lse, const Tensor& block_out,
                     const Tensor& block_lse) {
  ProfileScope scope(ctx, "attention_merge");
  UL_CHECK(out.ndim() == 3, "attention_merge: out must be [T, H, D], got shape ",
           shape_str(out.shape()));
  const std::int64_t T = out.dim(0), H = out.dim(1), D = out.dim(2);
  check_output(ctx, out, {T, H, D}, "attention_merge: out");
  check_output(ctx, block_out, {T, H, D}, "attention_merge: block_out");
  check_output(ctx, lse, {H, T}, "attention_merge: lse");
  check_output(ctx, block_lse, {H, T}, "attention_merge: block_lse");
  if (ctx.device.is_cpu()) {
    cpu::attention_merge(T, H, D, out.data<float>(), lse.data<float>(), block_out.data<float>(),
                         block_lse.data<float>());
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::attention_merge(ctx, out, lse, block_out, block_lse);
#endif
  } else {
    UL_FAIL("attention_merge: no kernel for device ", ctx.device.str());
  }
}

BlockAttentionPath attention_block_backward(const Context& ctx, const Tensor& q, const Tensor& k,
                                            const Tensor& v, const Tensor& cu_seqlens,
                                            const std::vector<std::int32_t>& cu_host,
                                            std::int64_t q_begin, std::int64_t k_begin, float scale,
                                            const Tensor& out, const Tensor& lse,
                                            const Tensor& dout, Tensor dq, Tensor dk, Tensor dv) {
  ProfileScope scope(ctx, "attention_block");
  const cpu::BlockAttentionShape shape =
      check_inputs(ctx, q, k, v, cu_seqlens, cu_host, q_begin, k_begin);
  check_output(ctx, out, q.shape(), "attention_block_backward: out");
  check_same_dtype(dout, q, "attention_block_backward: dout", "q");
  check_shape(dout, q.shape(), "attention_block_backward: dout");
  check_on_context_device(ctx, dout, "attention_block_backward: dout");
  check_output(ctx, dq, q.shape(), "attention_block_backward: dq");
  check_output(ctx, dk, k.shape(), "attention_block_backward: dk");
  check_output(ctx, dv, k.shape(), "attention_block_backward: dv");
  check_output(ctx, lse, {shape.query_heads, shape.query_tokens}, "attention_block_backward: lse");
  if (ctx.device.is_cpu()) {
    cpu::block_attention_backward(shape, q.data<float>(), k.data<float>(), v.data<float>(),
                                  cu_seqlens.data<std::int32_t>(), scale, out.data<float>(),
                                  lse.data<float>(), dout.data<float>(), dq.data<float>(),
                                  dk.data<float>(), dv.data<float>());
    return BlockAttentionPath::cpu;
  }
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) {
    const BlockPair pair = fused_candidate(ctx, cu_host, shape);
    if (pair.kind == BlockPairKind::masked) return BlockAttentionPath::masked;  // no gradient
    if (fused_kind(pair)) {
      if (cuda::cudnn_block_attention_backward(ctx, q, k, v, cu_seqlens, q_begin, pair, scale, out,
                                               lse, dout, dq, dk, dv))
        return BlockAttentionPath::cudnn;
      require_reference(ctx, "attention_block_backward");
    }
    cuda::block_attention_backward(ctx, q, k, v, cu_seqlens, q_begin, k_begin, scale, out, lse,
                                   dout, dq, dk, dv);
    return BlockAttentionPath::reference;
  }
#endif
  UL_FAIL("attention_block_backward: no kernel for device ", ctx.device.str());
}

}  // namespace ulysses::ops
