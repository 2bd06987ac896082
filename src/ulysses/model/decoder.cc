#include "ulysses/model/decoder.h"

#include <algorithm>
#include <cmath>

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/add_rmsnorm.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/embedding.h"
#include "ulysses/ops/linear.h"
#include "ulysses/ops/qk_norm_rope.h"
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

std::int64_t layer_activation_bytes(const ModelConfig& c, std::int64_t T, bool tiled_mlp) {
  const std::int64_t C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t q = c.q_dim(), kv = c.kv_dim();
  std::int64_t floats = 0;
  floats += 3 * T * C + 2 * T;          // x, xn1, x_mid; rstd1, rstd2
  floats += T * C;                      // xn2
  floats += T * (q + 2 * kv);           // q, k, v
  floats += T * q;                      // att
  floats += T * c.num_attention_heads;  // lse
  if (!tiled_mlp) floats += 3 * T * I;  // gate, up, h
  if (c.qk_norm) floats += T * (q + kv) + T * (c.num_attention_heads + c.num_key_value_heads);
  return floats * static_cast<std::int64_t>(dtype_size(DType::f32));
}

namespace {
// One token tile's MLP values: gate(xn2), up(xn2) and h = SwiGLU(gate, up), [n, I] each.
struct MlpValues {
  Tensor gate, up, h;
};

MlpValues mlp_up(const Context& ctx, const LayerWeights& w, const Tensor& xn2, std::int64_t I) {
  const Alloc alloc{ctx};
  const std::int64_t n = xn2.dim(0);
  MlpValues m{alloc.empty({n, I}), alloc.empty({n, I}), alloc.empty({n, I})};
  ops::linear_forward(ctx, xn2, w.gate_proj, Tensor(), m.gate);
  ops::linear_forward(ctx, xn2, w.up_proj, Tensor(), m.up);
  ops::swiglu_forward(ctx, m.gate, m.up, m.h);
  return m;
}

// Backward of one tile: dxn2 = d/dxn2 (written: its old contents are not read), weight
// gradients +=; consumes m. The tile's temporaries are written, never zeroed.
void mlp_backward(const Context& ctx, const LayerWeights& w, const LayerWeights& g, MlpValues m,
                  const Tensor& xn2, const Tensor& dout, Tensor dxn2) {
  using ops::GradWrite;
  const Alloc alloc{ctx};
  const std::int64_t n = xn2.dim(0), I = m.h.dim(1);
  Tensor dh = alloc.empty({n, I});
  ops::linear_backward(ctx, m.h, w.down_proj, dout, dh, g.down_proj, Tensor(),
                       GradWrite::overwrite);
  m.h = Tensor();
  Tensor dgate = alloc.empty({n, I}), dup = alloc.empty({n, I});
  ops::swiglu_backward(ctx, m.gate, m.up, dh, dgate, dup, GradWrite::overwrite);
  m = MlpValues{};
  dh = Tensor();
  ops::linear_backward(ctx, xn2, w.gate_proj, dgate, dxn2, g.gate_proj, Tensor(),
                       GradWrite::overwrite);
  dgate = Tensor();
  ops::linear_backward(ctx, xn2, w.up_proj, dup, dxn2, g.up_proj, Tensor());
}
}  // namespace

Decoder::Decoder(const ModelConfig& config, AttentionStrategy& attention)
    : config_(config), attention_(attention) {}

Tensor Decoder::layer_forward(const Context& ctx, const LayerWeights& w, const ops::RopeTable& rope,
                              const data::SequenceShard& shard, LayerActivations& a, bool recompute,
                              std::int64_t mlp_tile) const {
  const ModelConfig& c = config_;
  const Alloc alloc{ctx};
  const std::int64_t T = a.x.dim(0), C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);

  // Attention block.
  a.rstd1 = alloc.stats({T});
  a.xn1 = alloc.empty({T, C});
  ops::rmsnorm_forward(ctx, a.x, w.input_norm, eps, a.xn1, a.rstd1);
  a.q = alloc.empty({T, Hq, D});
  a.k = alloc.empty({T, Hkv, D});
  a.v = alloc.empty({T, Hkv, D});
  if (c.qk_norm) {
    // Projections go to q_raw/k_raw; q/k = RoPE(RMSNorm over each head's D values), one pass.
    a.q_raw = alloc.empty({T * Hq, D});
    a.k_raw = alloc.empty({T * Hkv, D});
    a.q_rstd = alloc.stats({T * Hq});
    a.k_rstd = alloc.stats({T * Hkv});
    ops::linear_forward(ctx, a.xn1, w.q_proj, w.q_bias, a.q_raw.view({T, Hq * D}));
    ops::linear_forward(ctx, a.xn1, w.k_proj, w.k_bias, a.k_raw.view({T, Hkv * D}));
    ops::qk_norm_rope_forward(ctx, rope, a.q_raw.view({T, Hq, D}), w.q_norm, eps, a.q, a.q_rstd);
    ops::qk_norm_rope_forward(ctx, rope, a.k_raw.view({T, Hkv, D}), w.k_norm, eps, a.k, a.k_rstd);
  } else {
    ops::linear_forward(ctx, a.xn1, w.q_proj, w.q_bias, a.q.view({T, Hq * D}));
    ops::linear_forward(ctx, a.xn1, w.k_proj, w.k_bias, a.k.view({T, Hkv * D}));
    ops::qk_norm_rope_forward(ctx, rope, a.q, Tensor(), eps, a.q, Tensor());
    ops::qk_norm_rope_forward(ctx, rope, a.k, Tensor(), eps, a.k, Tensor());
  }
  ops::linear_forward(ctx, a.xn1, w.v_proj, w.v_bias, a.v.view({T, Hkv * D}));

  // Recomputing a checkpointed layer keeps the attention output and statistics saved by the
  // first forward: attention (the costliest part at long context) never runs twice, unless the
  // step recomputes attention (then att is not kept and this runs again).
  // What the strategy dropped in between (Ulysses: head-sharded copies) comes back by exchanges.
  if (!a.att.defined()) {
    a.att = alloc.empty({T, Hq, D});
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    attention_.forward(ctx, shard, a.q, a.k, a.v, scale, a.att, a.att_saved);
  } else {
    attention_.restore(ctx, shard, a.q, a.k, a.v, a.att, a.att_saved);
  }

  // x_mid = x + o_proj(att): the residual add is the GEMM's epilogue.
  a.x_mid = alloc.empty({T, C});
  ops::linear_forward_residual(ctx, a.att.view({T, Hq * D}), w.o_proj, w.o_bias, a.x, a.x_mid);

  // MLP block: out = x_mid + down(swiglu(gate(xn2), up(xn2))), in token tiles when asked.
  a.rstd2 = alloc.stats({T});
  a.xn2 = alloc.empty({T, C});
  ops::rmsnorm_forward(ctx, a.x_mid, w.post_norm, eps, a.xn2, a.rstd2);
  if (mlp_tile <= 0 || mlp_tile >= T) {
    MlpValues m = mlp_up(ctx, w, a.xn2, I);
    a.gate = m.gate;
    a.up = m.up;
    a.h = m.h;
    if (recompute) return Tensor();  // the backward reads gate, up, h; not the output
    Tensor out = alloc.empty({T, C});
    ops::linear_forward_residual(ctx, a.h, w.down_proj, Tensor(), a.x_mid, out);
    return out;
  }
  if (recompute) return Tensor();  // the tiled backward recomputes its tiles from xn2
  Tensor out = alloc.empty({T, C});
  for (std::int64_t t0 = 0; t0 < T; t0 += mlp_tile) {
    const std::int64_t t1 = std::min(T, t0 + mlp_tile);
    const MlpValues m = mlp_up(ctx, w, a.xn2.rows(t0, t1), I);
    ops::linear_forward_residual(ctx, m.h, w.down_proj, Tensor(), a.x_mid.rows(t0, t1),
                                 out.rows(t0, t1));
  }
  return out;
}

Tensor Decoder::layer_backward(const Context& ctx, const LayerWeights& w, const LayerWeights& g,
                               const ops::RopeTable& rope, const data::SequenceShard& shard,
                               LayerActivations& a, Tensor dout, std::int64_t mlp_tile,
                               bool recomputed) const {
  const ModelConfig& c = config_;
  const Alloc alloc{ctx};
  const std::int64_t T = a.x.dim(0), C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;

  // After a recompute the input norm's output is not kept through the backward: it is rebuilt
  // (bitwise the same: same op, same input) right before the projections' weight gradients.
  if (recomputed) a.xn1 = Tensor();

  // MLP block: out = x_mid + down(swiglu(gate(xn2), up(xn2))); tiles recompute their values.
  // Every row of dxn2 is written by exactly one tile's backward, so it starts unzeroed.
  {
    Tensor dxn2 = alloc.empty({T, C});
    if (a.h.defined()) {
      mlp_backward(ctx, w, g, MlpValues{std::move(a.gate), std::move(a.up), std::move(a.h)}, a.xn2,
                   dout, dxn2);
    } else {
      UL_CHECK(mlp_tile > 0, "layer backward: no MLP values kept and no MLP tile to recompute");
      for (std::int64_t t0 = 0; t0 < T; t0 += mlp_tile) {
        const std::int64_t t1 = std::min(T, t0 + mlp_tile);
        const Tensor xn2 = a.xn2.rows(t0, t1);
        mlp_backward(ctx, w, g, mlp_up(ctx, w, xn2, I), xn2, dout.rows(t0, t1), dxn2.rows(t0, t1));
      }
    }
    a.xn2 = Tensor();
    // dout becomes dL/dx_mid: the residual path plus the norm's gradient, in place.
    ops::add_rmsnorm_backward(ctx, a.x_mid, w.post_norm, a.rstd2, dxn2, dout, dout, g.post_norm);
    a.x_mid = a.rstd2 = Tensor();
  }

  // Attention block: x_mid = x + o_proj(attention(rope(q), rope(k), v)).
  // The strategy writes dq, dk, dv (AttentionStrategy::backward): no zeroing here.
  Tensor dq = alloc.empty({T, Hq, D}), dk = alloc.empty({T, Hkv, D}), dv = alloc.empty({T, Hkv, D});
  {
    Tensor datt = alloc.empty({T, Hq, D});
    ops::linear_backward(ctx, a.att.view({T, Hq * D}), w.o_proj, dout, datt.view({T, Hq * D}),
                         g.o_proj, g.o_bias, ops::GradWrite::overwrite);
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    attention_.backward(ctx, shard, a.q, a.k, a.v, scale, a.att, a.att_saved, datt, dq, dk, dv);
    a.att = a.q = a.k = a.v = Tensor();
    a.att_saved = AttentionSaved{};
  }
  // Undo RoPE (and the q/k norm): gradients w.r.t. the projections, written.
  Tensor dq_proj = alloc.empty({T, Hq, D}), dk_proj = alloc.empty({T, Hkv, D});
  const Tensor q_in = c.qk_norm ? a.q_raw.view({T, Hq, D}) : Tensor();
  const Tensor k_in = c.qk_norm ? a.k_raw.view({T, Hkv, D}) : Tensor();
  ops::qk_norm_rope_backward(ctx, rope, q_in, w.q_norm, a.q_rstd, dq, dq_proj, g.q_norm);
  ops::qk_norm_rope_backward(ctx, rope, k_in, w.k_norm, a.k_rstd, dk, dk_proj, g.k_norm);
  dq = dk = Tensor();
  a.q_raw = a.k_raw = a.q_rstd = a.k_rstd = Tensor();
  if (!a.xn1.defined()) {
    a.xn1 = alloc.empty({T, C});
    ops::rmsnorm_forward(ctx, a.x, w.input_norm, static_cast<float>(c.rms_norm_eps), a.xn1,
                         a.rstd1);
  }
  Tensor dxn1 = alloc.empty({T, C});  // the q projection writes it, k and v add
  ops::linear_backward(ctx, a.xn1, w.q_proj, dq_proj.view({T, Hq * D}), dxn1, g.q_proj, g.q_bias,
                       ops::GradWrite::overwrite);
  dq_proj = Tensor();
  ops::linear_backward(ctx, a.xn1, w.k_proj, dk_proj.view({T, Hkv * D}), dxn1, g.k_proj, g.k_bias);
  dk_proj = Tensor();
  ops::linear_backward(ctx, a.xn1, w.v_proj, dv.view({T, Hkv * D}), dxn1, g.v_proj, g.v_bias);
  dv = Tensor();
  a.xn1 = Tensor();
  // dout becomes dL/dx: the residual path plus the input norm's gradient, in place.
  ops::add_rmsnorm_backward(ctx, a.x, w.input_norm, a.rstd1, dxn1, dout, dout, g.input_norm);
  return dout;
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

  const ops::RopeTable rope = ops::rope_table(ctx, c.rope, c.head_dim, shard.position_ids);

  // x: [T, C] residual stream. With tied embeddings the table stays acquired for the LM head.
  Tensor x = alloc.empty({T, C});
  // Groups are held by AcquiredGroup guards: released explicitly on the normal path (errors
  // propagate), by the guard's destructor when an op throws.
  AcquiredGroup embed_group(store, 0);
  Tensor embed = embed_view(layout, embed_group.params());
  ops::embedding_forward(ctx, {shard.input_ids, shard.input_ids_host}, embed, x);
  if (!c.tie_word_embeddings) {
    embed = Tensor();
    embed_group.release();
  }
  std::vector<LayerActivations> acts(static_cast<std::size_t>(L));
  const bool checkpointing = train && options.gradient_checkpointing;
  UL_CHECK(
      options.checkpoint_layers < 0 || (!options.recompute_attention && !options.activation_store),
      "checkpoint_layers: not with recompute_attention or an activation store");
  // Whether layer l is checkpointed (kept input and attention output, recomputed in backward).
  const auto checkpointed = [&](std::int64_t l) {
    return checkpointing && (options.checkpoint_layers < 0 || l < options.checkpoint_layers);
  };
  const std::int64_t mlp_tile = options.mlp_tile_tokens;
  {
    const PhaseScope phase(ctx, "forward");
    for (std::int64_t l = 0; l < L; ++l) {
      auto& a = acts[static_cast<std::size_t>(l)];
      a.x = x;
      {
        AcquiredGroup group(store, layer_group(l));
        {
          const LayerWeights w = layer_view(c, layout, l, group.params());
          x = layer_forward(ctx, w, rope, shard, a, /*recompute=*/false, mlp_tile);
        }
        group.release();
      }
      if (!train) {
        a = LayerActivations{};
      } else if (checkpointed(l)) {
        // Keep the layer input and (unless attention is recomputed) attention's output and
        // statistics; drop the rest (what the strategy can rebuild by exchanges included).
        LayerActivations kept;
        kept.x = a.x;
        const bool recompute_att =
            options.recompute_attention &&
            (options.recompute_attention_layers < 0 || l < options.recompute_attention_layers);
        if (!recompute_att) {
          kept.att = a.att;
          kept.att_saved = a.att_saved;
          attention_.drop_rebuildable(kept.att_saved);
        }
        a = std::move(kept);
        if (options.activation_store) options.activation_store->stash(ctx, l, a);
      }
    }
  }

  AcquiredGroup final_group_guard(store, final_index);
  FinalWeights final_weights = final_view(c, layout, final_group_guard.params());
  Tensor lm_head = c.tie_word_embeddings ? embed : final_weights.lm_head;
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
  const ops::LossSum loss = ops::lm_head_cross_entropy(
      ctx, xf, lm_head, {shard.shift_labels, shard.shift_labels_host}, grad_scale, dxf, dlm_head);

  Tensor dx;
  if (train) {
    dx = alloc.zeros({T, C});
    ops::rmsnorm_backward(ctx, x, final_weights.norm, final_rstd, dxf, dx, final_grads.norm);
    x = xf = dxf = final_rstd = Tensor();  // not needed by the layers' backward
    // No view of the group's gradient buffer or gathered parameters may outlive grads_done /
    // release: ZeRO-2/3 free them there (the LM head's are the largest of the model).
    final_grads = FinalWeights{};
    dlm_head = Tensor();
    store.grads_done(final_index);
  }
  final_weights = FinalWeights{};
  lm_head = Tensor();
  final_group_guard.release();
  if (!train) {
    embed = Tensor();
    embed_group.release();
    return loss;
  }

  {
    const PhaseScope phase(ctx, "backward");
    for (std::int64_t l = L - 1; l >= 0; --l) {
      auto& a = acts[static_cast<std::size_t>(l)];
      AcquiredGroup group(store, layer_group(l));
      {
        const LayerWeights w = layer_view(c, layout, l, group.params());
        const LayerWeights g = layer_view(c, layout, l, store.grads(layer_group(l)));
        if (checkpointed(l)) {
          if (options.activation_store) options.activation_store->fetch(ctx, l, a);
          const PhaseScope recompute(ctx, "recompute");
          layer_forward(ctx, w, rope, shard, a, /*recompute=*/true, mlp_tile);
        }
        dx = layer_backward(ctx, w, g, rope, shard, a, dx, mlp_tile, checkpointed(l));
      }
      a = LayerActivations{};
      store.grads_done(layer_group(l));
      group.release();
    }
  }
  ops::embedding_backward(ctx, {shard.input_ids, shard.input_ids_host}, dx,
                          embed_view(layout, store.grads(0)));
  store.grads_done(0);
  embed = Tensor();
  embed_group.release();
  return loss;
}

}  // namespace ulysses::model
