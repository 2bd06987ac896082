// Parameter layout, storage and Hugging Face names.
//
// Parameters are grouped into units that are used together: "embed" (the embedding table),
// "layers.{i}" (one decoder layer) and "final" (final norm and, when untied, lm_head). Each
// group lives in ONE flat f32 buffer; every parameter is a view into it. The same layout holds
// gradients and optimizer state, so a whole layer can be reduced, sharded (ZeRO) or gathered
// with one call. The decoder reaches parameters group by group through a ParamStore
// (model/param_store.h) and per-group views (layer_view, embed_view, final_view).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/rng.h"
#include "ulysses/core/tensor.h"
#include "ulysses/model/config.h"

namespace ulysses::model {

struct ParamSpec {
  std::string name;  // Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
  Shape shape;
  std::int64_t offset = 0;   // element offset inside its group's flat buffer
  bool weight_decay = true;  // false for norm weights and biases
};

struct ParamGroup {
  std::string name;  // "embed", "layers.0", ..., "final"
  std::vector<ParamSpec> params;
  std::int64_t numel = 0;
};

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& config);

  const std::vector<ParamGroup>& groups() const { return groups_; }
  std::int64_t numel() const;
  // Spec and group index of a parameter by HF name (nullptr when unknown).
  const ParamSpec* find(const std::string& name, std::size_t* group_index = nullptr) const;

 private:
  std::vector<ParamGroup> groups_;
};

// Weights of one decoder layer (views; undefined for parts the architecture lacks).
struct LayerWeights {
  Tensor input_norm;                      // [C]
  Tensor q_proj, k_proj, v_proj, o_proj;  // [Hq*D, C], [Hkv*D, C], [Hkv*D, C], [C, Hq*D]
  Tensor q_bias, k_bias, v_bias, o_bias;  // [Hq*D], [Hkv*D], [Hkv*D], [C]
  Tensor q_norm, k_norm;                  // [D] (qwen3)
  Tensor post_norm;                       // [C]
  Tensor gate_proj, up_proj, down_proj;   // [I, C], [I, C], [C, I]
};

// Views of one group's parameters inside its flat buffer `flat` ([group.numel]).
Tensor param_view(const ParamGroup& group, const Tensor& flat, const std::string& name);
// Group indices: 0 = embed, 1 + i = layer i, num_hidden_layers + 1 = final.
inline std::size_t layer_group(std::int64_t layer) { return static_cast<std::size_t>(layer) + 1; }
inline std::size_t final_group(const ModelConfig& c) {
  return static_cast<std::size_t>(c.num_hidden_layers) + 1;
}
Tensor embed_view(const ParamLayout& layout, const Tensor& flat);
LayerWeights layer_view(const ModelConfig& config, const ParamLayout& layout, std::int64_t layer,
                        const Tensor& flat);
struct FinalWeights {
  Tensor norm;     // [C]
  Tensor lm_head;  // [V, C]; undefined when tie_word_embeddings (use the embedding table)
};
FinalWeights final_view(const ModelConfig& config, const ParamLayout& layout, const Tensor& flat);

// Flat buffers for every group of a layout (parameters, gradients or optimizer moments).
// dtype: f32 (master weights, gradients, moments) or bf16 (the compute copy of the weights on
// CUDA).
class ParamBuffers {
 public:
  ParamBuffers(const ModelConfig& config, Device device = Device::cpu(), DType dtype = DType::f32);

  const ModelConfig& config() const { return config_; }
  const ParamLayout& layout() const { return layout_; }
  std::vector<Tensor>& flat() { return flat_; }
  const std::vector<Tensor>& flat() const { return flat_; }
  // View of one parameter by HF name; Error naming it when unknown.
  Tensor get(const std::string& name) const;
  void zero();

 private:
  ModelConfig config_;
  ParamLayout layout_;
  std::vector<Tensor> flat_;  // one [numel] tensor per group (f32 unless constructed bf16)
};

// Initialization as Transformers does for these models: normal(0, std) for embeddings and
// projections, ones for norm weights, zeros for biases. Element i of parameter P is
// std * counter_rng::normal(key(seed, hash(P's name)), i) (core/counter_rng.h): independent of
// layout, rank, thread count and device, and the same f32 value on CPU and GPU. The buffers may
// live on any device; bf16 buffers get the f32 values rounded to nearest even. Without a
// context, CUDA buffers are filled through a temporary CUDA context and waited for.
void init_weights(ParamBuffers& params, std::uint64_t seed, float std = 0.02f);
// The same on ctx's device and stream (the buffers must live there), asynchronously on CUDA.
void init_weights(const Context& ctx, ParamBuffers& params, std::uint64_t seed, float std = 0.02f);

// Elements [lo, lo + out.numel()) of group `group`'s flat buffer, exactly the values
// init_weights puts there, written into `out` (a 1-D f32 or bf16 tensor on ctx's device); for a
// ZeRO rank that draws only its shard. Elements past the group's end (shard padding) are zero.
// Error when lo < 0.
void init_group_range(const Context& ctx, const ParamGroup& group, Tensor out, std::int64_t lo,
                      std::uint64_t seed, float std = 0.02f);

}  // namespace ulysses::model
