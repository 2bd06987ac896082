// The Llama/Qwen decoder: forward and backward over one sequence shard, llm.c style (explicit
// per-layer functions, no autograd tape).
//
// The decoder knows nothing of devices or ranks: it calls ops on tensors and the
// AttentionStrategy for attention. Activations kept for backward are listed in
// LayerActivations; with gradient checkpointing only each checkpointed layer's input is kept
// (every layer, unless StepOptions::checkpoint_layers keeps the last ones whole) and the rest
// is recomputed, layer by layer, during backward — except attention, whose output and saved
// statistics are kept (unless StepOptions::recompute_attention), so attention forward never
// runs twice. The results are bitwise identical because the recomputation runs the same code on
// the same inputs. Where the kept tensors wait between forward and backward is an
// ActivationStore's business (resident by default; pinned host memory with activation offload).
//
// The MLP may run in token tiles (StepOptions::mlp_tile_tokens): then no [T, intermediate]
// tensor exists whole; forward computes each tile's output and drops its gate/up/SwiGLU values,
// and backward recomputes them tile by tile from the kept post-attention norm output.
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/data/sequence.h"
#include "ulysses/model/attention_strategy.h"
#include "ulysses/model/config.h"
#include "ulysses/model/param_store.h"
#include "ulysses/model/params.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::model {

// Everything one layer keeps for its backward (T = local tokens).
struct LayerActivations {
  Tensor x;               // [T, C] layer input (residual stream)
  Tensor rstd1;           // [T]
  Tensor xn1;             // [T, C] input_layernorm output
  Tensor q_raw, k_raw;    // [T*Hq, D], [T*Hkv, D] projections before q/k norm (qwen3 only)
  Tensor q_rstd, k_rstd;  // [T*Hq], [T*Hkv] (qwen3 only)
  Tensor q, k, v;         // [T, Hq, D], [T, Hkv, D], [T, Hkv, D] attention inputs (RoPE'd)
  Tensor att;             // [T, Hq, D] attention output
  AttentionSaved att_saved;
  Tensor x_mid;        // [T, C] residual after attention
  Tensor rstd2;        // [T]
  Tensor xn2;          // [T, C] post_attention_layernorm output
  Tensor gate, up, h;  // [T, I] MLP gate/up projections and SwiGLU output (untiled MLP)
};

// Where gradient checkpointing's kept tensors (a layer's input x and, unless attention is
// recomputed, its output att; att_saved stays where it is) wait between the layer's forward and
// its recompute. stash is called for layers 0, 1, ..., L-1 right after each layer's forward;
// fetch for L-1, ..., 0 right before each recompute, and must give back bit-identical tensors.
// A store may move the tensors elsewhere in between (kept.x / kept.att undefined meanwhile) and
// bring layer l - 1 back while layer l computes. A store may be reused across steps: within a
// step every stashed layer is fetched once, in reverse order, before the next step's stashes.
class ActivationStore {
 public:
  virtual ~ActivationStore() = default;
  virtual void stash(const Context& ctx, std::int64_t layer, LayerActivations& kept) = 0;
  virtual void fetch(const Context& ctx, std::int64_t layer, LayerActivations& kept) = 0;
};

struct StepOptions {
  bool gradient_checkpointing = false;
  // Checkpointing without attention's output: the recompute runs attention forward again
  // (costlier, but the kept activations shrink to the layer inputs).
  bool recompute_attention = false;
  // With recompute_attention: only layers 0 .. N-1 recompute (-1: every layer); the others keep
  // attention's output, as without it.
  std::int64_t recompute_attention_layers = -1;
  // With gradient_checkpointing: only layers 0 .. N-1 are checkpointed (-1: every layer); the
  // last L - N keep what a layer keeps without checkpointing and skip the recompute (faster,
  // more memory; with a tiled MLP their gate/up values are still recomputed per tile in the
  // backward, as without checkpointing). Not with recompute_attention or an activation_store
  // (those spend time to save memory; this spends memory to save time).
  std::int64_t checkpoint_layers = -1;
  // MLP token tile (0: the whole shard at once).
  std::int64_t mlp_tile_tokens = 0;
  // Where checkpointed activations wait (null: they stay where they were computed).
  ActivationStore* activation_store = nullptr;
};

// Bytes of activations one layer keeps for its backward without checkpointing for T local
// tokens (f32 elements; the memory plan scales them to the compute dtype). With a tiled MLP the
// [T, I] tensors are not kept.
std::int64_t layer_activation_bytes(const ModelConfig& config, std::int64_t tokens,
                                    bool tiled_mlp = false);

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
  ops::LossSum forward_backward(const Context& ctx, const ParamBuffers& params, ParamBuffers* grads,
                                const data::SequenceShard& shard, float grad_scale,
                                const StepOptions& options) const;

 private:
  // Full forward (returns the layer output) or, with `recompute`, the checkpointing recompute:
  // only what the backward reads is rebuilt (the MLP output and, with a tiled MLP, the MLP itself
  // are skipped; an undefined Tensor is returned).
  Tensor layer_forward(const Context& ctx, const LayerWeights& w, const ops::RopeTable& rope,
                       const data::SequenceShard& shard, LayerActivations& a, bool recompute,
                       std::int64_t mlp_tile) const;
  // Given dL/d(layer output) in dout (overwritten: it becomes dL/d(layer input), which is
  // returned), accumulates the weight gradients; frees the activations as they are used.
  // `recomputed`: the activations come from a checkpointing recompute (the input norm's output
  // is then rebuilt late instead of living through the whole backward).
  Tensor layer_backward(const Context& ctx, const LayerWeights& w, const LayerWeights& g,
                        const ops::RopeTable& rope, const data::SequenceShard& shard,
                        LayerActivations& a, Tensor dout, std::int64_t mlp_tile,
                        bool recomputed) const;

  ModelConfig config_;
  AttentionStrategy& attention_;
};

}  // namespace ulysses::model
