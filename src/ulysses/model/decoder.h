// The Llama/Qwen decoder: forward and backward over one sequence shard, llm.c style (explicit
// per-layer functions, no autograd tape).
//
// The decoder knows nothing of devices or ranks: it calls ops on tensors and the
// AttentionStrategy for attention. Activations kept for backward are listed in
// LayerActivations; with gradient checkpointing only each layer's input is kept and the rest
// is recomputed, layer by layer, during backward — except attention, whose output and saved
// statistics are kept, so attention forward never runs twice. The results are bitwise identical
// because the recomputation runs the same code on the same inputs.
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/data/sequence.h"
#include "ulysses/model/config.h"
#include "ulysses/model/param_store.h"
#include "ulysses/model/params.h"
#include "ulysses/ops/cross_entropy.h"
#include "ulysses/model/attention_strategy.h"

namespace ulysses::model {

// Everything one layer keeps for its backward (T = local tokens).
struct LayerActivations {
  Tensor x;                 // [T, C] layer input (residual stream)
  Tensor rstd1;             // [T]
  Tensor xn1;               // [T, C] input_layernorm output
  Tensor q_raw, k_raw;      // [T*Hq, D], [T*Hkv, D] projections before q/k norm (qwen3 only)
  Tensor q_rstd, k_rstd;    // [T*Hq], [T*Hkv] (qwen3 only)
  Tensor q, k, v;           // [T, Hq, D], [T, Hkv, D], [T, Hkv, D] attention inputs (RoPE'd)
  Tensor att;               // [T, Hq, D] attention output
  AttentionSaved att_saved;
  Tensor x_mid;             // [T, C] residual after attention
  Tensor rstd2;             // [T]
  Tensor xn2;               // [T, C] post_attention_layernorm output
  Tensor gate, up, h;       // [T, I] MLP gate/up projections and SwiGLU output
};

// Bytes of activations kept per layer for T local tokens (f32), for the memory plan.
std::int64_t layer_activation_bytes(const ModelConfig& config, std::int64_t tokens);

struct StepOptions {
  bool gradient_checkpointing = false;
};

class Decoder {
 public:
  Decoder(const ModelConfig& config, AttentionStrategy& attention);

  // Forward over the shard, then the LM head + cross-entropy on shard.shift_labels (tiled).
  // When grad_scale != 0, backward runs too and d(grad_scale * loss_sum) is ACCUMULATED into
  // the store's gradient buffers. Parameters are acquired from the store group by group and
  // released as soon as they are no longer needed.
  // Returns this shard's loss sum and valid-label count.
  ops::LossSum forward_backward(const Context& ctx, ParamStore& store,
                                const data::SequenceShard& shard, float grad_scale,
                                const StepOptions& options) const;
  // Everything resident: `grads` may be null when grad_scale == 0.
  ops::LossSum forward_backward(const Context& ctx, const ParamBuffers& params,
                                ParamBuffers* grads, const data::SequenceShard& shard,
                                float grad_scale, const StepOptions& options) const;

 private:
  Tensor layer_forward(const Context& ctx, const LayerWeights& w, const ops::RopeTable& rope,
                       const data::SequenceShard& shard, LayerActivations& a) const;
  // Given dL/d(layer output), returns dL/d(layer input) and accumulates weight gradients.
  Tensor layer_backward(const Context& ctx, const LayerWeights& w, const LayerWeights& g,
                        const ops::RopeTable& rope, const data::SequenceShard& shard,
                        const LayerActivations& a, const Tensor& dout) const;

  ModelConfig config_;
  AttentionStrategy& attention_;
};

}  // namespace ulysses::model
