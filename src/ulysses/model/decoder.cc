#include "ulysses/model/decoder.h"

#include <cmath>

#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/embedding.h"
#include "ulysses/ops/linear.h"
#include "ulysses/ops/rmsnorm.h"
#include "ulysses/ops/rope.h"
#include "ulysses/ops/swiglu.h"

namespace ulysses::model {

namespace {
// Activations and their gradients use the context's compute dtype (f32 on CPU, bf16 on CUDA).
struct Alloc {
  const Context& ctx;
  Tensor empty(const Shape& shape) const {
    return Tensor::empty(shape, ctx.compute_dtype, ctx.device);
  }
  Tensor zeros(const Shape& shape) const {
    return Tensor::zeros(shape, ctx.compute_dtype, ctx.device);
  }
  // Normalization statistics stay f32 on every device.
  Tensor stats(const Shape& shape) const { return Tensor::empty(shape, DType::f32, ctx.device); }
};
}  // namespace

std::int64_t layer_activation_bytes(const ModelConfig& c, std::int64_t T) {
  const std::int64_t C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t q = c.q_dim(), kv = c.kv_dim();
  std::int64_t floats = 0;
  floats += 3 * T * C + 2 * T;          // x, xn1, x_mid; rstd1, rstd2
  floats += T * C;                      // xn2
  floats += T * (q + 2 * kv);           // q, k, v
  floats += T * q;                      // att
  floats += T * c.num_attention_heads;  // lse
  floats += 3 * T * I;                  // gate, up, h
  if (c.qk_norm) floats += T * (q + kv) + T * (c.num_attention_heads + c.num_key_value_heads);
  return floats * 4;
}

Decoder::Decoder(const ModelConfig& config, AttentionStrategy& attention)
    : config_(config), attention_(attention) {}

Tensor Decoder::layer_forward(const Context& ctx, const LayerWeights& w, const ops::RopeTable& rope,
                              const data::SequenceShard& shard, LayerActivations& a) const {
  const ModelConfig& c = config_;
  const Alloc alloc{ctx};
  const std::int64_t T = a.x.dim(0), C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;

  // Attention block.
  a.rstd1 = alloc.stats({T});
  a.xn1 = alloc.empty({T, C});
  ops::rmsnorm_forward(ctx, a.x, w.input_norm, static_cast<float>(c.rms_norm_eps), a.xn1, a.rstd1);
  a.q = alloc.empty({T, Hq, D});
  a.k = alloc.empty({T, Hkv, D});
  a.v = alloc.empty({T, Hkv, D});
  if (c.qk_norm) {
    // Projections go to q_raw/k_raw; q/k = RMSNorm over each head's D values.
    a.q_raw = alloc.empty({T * Hq, D});
    a.k_raw = alloc.empty({T * Hkv, D});
    a.q_rstd = alloc.stats({T * Hq});
    a.k_rstd = alloc.stats({T * Hkv});
    ops::linear_forward(ctx, a.xn1, w.q_proj, w.q_bias, a.q_raw.view({T, Hq * D}));
    ops::linear_forward(ctx, a.xn1, w.k_proj, w.k_bias, a.k_raw.view({T, Hkv * D}));
    const float eps = static_cast<float>(c.rms_norm_eps);
    ops::rmsnorm_forward(ctx, a.q_raw, w.q_norm, eps, a.q.view({T * Hq, D}), a.q_rstd);
    ops::rmsnorm_forward(ctx, a.k_raw, w.k_norm, eps, a.k.view({T * Hkv, D}), a.k_rstd);
  } else {
    ops::linear_forward(ctx, a.xn1, w.q_proj, w.q_bias, a.q.view({T, Hq * D}));
    ops::linear_forward(ctx, a.xn1, w.k_proj, w.k_bias, a.k.view({T, Hkv * D}));
  }
  ops::linear_forward(ctx, a.xn1, w.v_proj, w.v_bias, a.v.view({T, Hkv * D}));
  ops::rope_forward(ctx, rope, a.q, a.q);
  ops::rope_forward(ctx, rope, a.k, a.k);

  // Recomputing a checkpointed layer keeps the attention output and statistics saved by the
  // first forward: attention (the costliest part at long context) never runs twice.
  // What the strategy dropped in between (Ulysses: head-sharded copies) comes back by exchanges.
  if (!a.att.defined()) {
    a.att = alloc.empty({T, Hq, D});
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    attention_.forward(ctx, shard, a.q, a.k, a.v, scale, a.att, a.att_saved);
  } else {
    attention_.restore(ctx, shard, a.q, a.k, a.v, a.att, a.att_saved);
  }

  a.x_mid = alloc.empty({T, C});
  ops::linear_forward(ctx, a.att.view({T, Hq * D}), w.o_proj, w.o_bias, a.x_mid);
  ops::add_inplace(ctx, a.x_mid, a.x);

  // MLP block.
  a.rstd2 = alloc.stats({T});
  a.xn2 = alloc.empty({T, C});
  ops::rmsnorm_forward(ctx, a.x_mid, w.post_norm, static_cast<float>(c.rms_norm_eps), a.xn2,
                       a.rstd2);
  a.gate = alloc.empty({T, I});
  a.up = alloc.empty({T, I});
  a.h = alloc.empty({T, I});
  ops::linear_forward(ctx, a.xn2, w.gate_proj, Tensor(), a.gate);
  ops::linear_forward(ctx, a.xn2, w.up_proj, Tensor(), a.up);
  ops::swiglu_forward(ctx, a.gate, a.up, a.h);
  Tensor out = alloc.empty({T, C});
  ops::linear_forward(ctx, a.h, w.down_proj, Tensor(), out);
  ops::add_inplace(ctx, out, a.x_mid);
  return out;
}

Tensor Decoder::layer_backward(const Context& ctx, const LayerWeights& w, const LayerWeights& g,
                               const ops::RopeTable& rope, const data::SequenceShard& shard,
                               const LayerActivations& a, const Tensor& dout) const {
  const ModelConfig& c = config_;
  const Alloc alloc{ctx};
  const std::int64_t T = a.x.dim(0), C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;

  // MLP block: out = x_mid + down(swiglu(gate(xn2), up(xn2))).
  Tensor dx_mid = dout.clone();  // [T, C] residual path
  Tensor dh = alloc.zeros({T, I});
  ops::linear_backward(ctx, a.h, w.down_proj, dout, dh, g.down_proj, Tensor());
  Tensor dgate = alloc.zeros({T, I}), dup = alloc.zeros({T, I});
  ops::swiglu_backward(ctx, a.gate, a.up, dh, dgate, dup);
  Tensor dxn2 = alloc.zeros({T, C});
  ops::linear_backward(ctx, a.xn2, w.gate_proj, dgate, dxn2, g.gate_proj, Tensor());
  ops::linear_backward(ctx, a.xn2, w.up_proj, dup, dxn2, g.up_proj, Tensor());
  ops::rmsnorm_backward(ctx, a.x_mid, w.post_norm, a.rstd2, dxn2, dx_mid, g.post_norm);

  // Attention block: x_mid = x + o_proj(attention(rope(q), rope(k), v)).
  Tensor dx = dx_mid.clone();  // [T, C] residual path
  Tensor datt = alloc.zeros({T, Hq, D});
  ops::linear_backward(ctx, a.att.view({T, Hq * D}), w.o_proj, dx_mid, datt.view({T, Hq * D}),
                       g.o_proj, g.o_bias);
  Tensor dq = alloc.zeros({T, Hq, D}), dk = alloc.zeros({T, Hkv, D}), dv = alloc.zeros({T, Hkv, D});
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  attention_.backward(ctx, shard, a.q, a.k, a.v, scale, a.att, a.att_saved, datt, dq, dk, dv);
  // Undo RoPE: gradients w.r.t. the (normed) projections.
  Tensor dq_pre = alloc.zeros({T, Hq, D}), dk_pre = alloc.zeros({T, Hkv, D});
  ops::rope_backward(ctx, rope, dq, dq_pre);
  ops::rope_backward(ctx, rope, dk, dk_pre);
  Tensor dq_proj = dq_pre, dk_proj = dk_pre;
  if (c.qk_norm) {
    dq_proj = alloc.zeros({T * Hq, D});
    dk_proj = alloc.zeros({T * Hkv, D});
    ops::rmsnorm_backward(ctx, a.q_raw, w.q_norm, a.q_rstd, dq_pre.view({T * Hq, D}), dq_proj,
                          g.q_norm);
    ops::rmsnorm_backward(ctx, a.k_raw, w.k_norm, a.k_rstd, dk_pre.view({T * Hkv, D}), dk_proj,
                          g.k_norm);
  }
  Tensor dxn1 = alloc.zeros({T, C});
  ops::linear_backward(ctx, a.xn1, w.q_proj, dq_proj.view({T, Hq * D}), dxn1, g.q_proj, g.q_bias);
  ops::linear_backward(ctx, a.xn1, w.k_proj, dk_proj.view({T, Hkv * D}), dxn1, g.k_proj, g.k_bias);
  ops::linear_backward(ctx, a.xn1, w.v_proj, dv.view({T, Hkv * D}), dxn1, g.v_proj, g.v_bias);
  ops::rmsnorm_backward(ctx, a.x, w.input_norm, a.rstd1, dxn1, dx, g.input_norm);
  return dx;
}

ops::LossSum Decoder::forward_backward(const Context& ctx, const ParamBuffers& params,
                                       ParamBuffers* grads, const data::SequenceShard& shard,
                                       float grad_scale, const StepOptions& options) const {
  ResidentParamStore store(params, grads);
  return forward_backward(ctx, store, shard, grad_scale, options);
}

ops::LossSum Decoder::forward_backward(const Context& ctx, ParamStore& store,
                                       const data::SequenceShard& shard, float grad_scale,
                                       const StepOptions& options) const {
  const ModelConfig& c = config_;
  const ParamLayout& layout = store.layout();
  const bool train = grad_scale != 0.0f;
  const Alloc alloc{ctx};
  const std::int64_t T = shard.local_length(), C = c.hidden_size;
  const std::int64_t L = c.num_hidden_layers;
  const std::size_t final_index = final_group(c);

  const ops::RopeTable rope = ops::rope_table(c.rope, c.head_dim, shard.position_ids);

  // x: [T, C] residual stream. With tied embeddings the table stays acquired for the LM head.
  Tensor x = alloc.empty({T, C});
  Tensor embed = embed_view(layout, store.acquire(0));
  ops::embedding_forward(ctx, shard.input_ids, embed, x);
  if (!c.tie_word_embeddings) {
    embed = Tensor();
    store.release(0);
  }
  std::vector<LayerActivations> acts(static_cast<std::size_t>(L));
  for (std::int64_t l = 0; l < L; ++l) {
    auto& a = acts[static_cast<std::size_t>(l)];
    a.x = x;
    {
      const LayerWeights w = layer_view(c, layout, l, store.acquire(layer_group(l)));
      x = layer_forward(ctx, w, rope, shard, a);
    }
    store.release(layer_group(l));
    if (!train) {
      a = LayerActivations{};
    } else if (options.gradient_checkpointing) {
      // Keep the layer input and attention's output and statistics; drop the rest (what the
      // strategy can rebuild by exchanges included).
      LayerActivations kept;
      kept.x = a.x;
      kept.att = a.att;
      kept.att_saved = a.att_saved;
      attention_.drop_rebuildable(kept.att_saved);
      a = std::move(kept);
    }
  }

  FinalWeights final_weights = final_view(c, layout, store.acquire(final_index));
  const Tensor lm_head = c.tie_word_embeddings ? embed : final_weights.lm_head;
  Tensor final_rstd = alloc.stats({T});
  Tensor xf = alloc.empty({T, C});  // [T, C] final norm output
  ops::rmsnorm_forward(ctx, x, final_weights.norm, static_cast<float>(c.rms_norm_eps), xf,
                       final_rstd);
  Tensor dxf = train ? alloc.zeros({T, C}) : Tensor();
  Tensor dlm_head;
  FinalWeights final_grads;
  if (train) {
    final_grads = final_view(c, layout, store.grads(final_index));
    dlm_head = c.tie_word_embeddings ? embed_view(layout, store.grads(0)) : final_grads.lm_head;
  }
  const ops::LossSum loss =
      ops::lm_head_cross_entropy(ctx, xf, lm_head, shard.shift_labels, grad_scale, dxf, dlm_head);

  Tensor dx;
  if (train) {
    dx = alloc.zeros({T, C});
    ops::rmsnorm_backward(ctx, x, final_weights.norm, final_rstd, dxf, dx, final_grads.norm);
    final_grads = FinalWeights{};
    store.grads_done(final_index);
  }
  final_weights = FinalWeights{};
  store.release(final_index);
  if (!train) {
    if (c.tie_word_embeddings) store.release(0);
    return loss;
  }

  for (std::int64_t l = L - 1; l >= 0; --l) {
    auto& a = acts[static_cast<std::size_t>(l)];
    {
      const LayerWeights w = layer_view(c, layout, l, store.acquire(layer_group(l)));
      const LayerWeights g = layer_view(c, layout, l, store.grads(layer_group(l)));
      if (options.gradient_checkpointing) layer_forward(ctx, w, rope, shard, a);
      dx = layer_backward(ctx, w, g, rope, shard, a, dx);
    }
    a = LayerActivations{};
    store.grads_done(layer_group(l));
    store.release(layer_group(l));
  }
  ops::embedding_backward(ctx, shard.input_ids, dx, embed_view(layout, store.grads(0)));
  store.grads_done(0);
  if (c.tie_word_embeddings) store.release(0);
  return loss;
}

}  // namespace ulysses::model
