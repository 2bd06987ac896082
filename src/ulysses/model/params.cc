#include "ulysses/model/params.h"

#include <algorithm>
#include <functional>

#include "ulysses/core/counter_rng.h"
#include "ulysses/core/cuda_context.h"
#include "ulysses/ops/random_init.h"

namespace ulysses::model {

namespace {

void add(ParamGroup& group, const std::string& name, const Shape& shape, bool decay) {
  group.params.push_back({name, shape, group.numel, decay});
  group.numel += shape_numel(shape);
}

std::uint64_t name_hash(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a: stable across platforms
  for (const unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

bool is_norm(const std::string& name) { return name.find("norm") != std::string::npos; }
bool is_bias(const std::string& name) { return name.ends_with(".bias"); }

}  // namespace

ParamLayout::ParamLayout(const ModelConfig& c) {
  const std::int64_t C = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const std::int64_t q = c.q_dim(), kv = c.kv_dim();

  ParamGroup embed{"embed", {}, 0};
  add(embed, "model.embed_tokens.weight", {c.vocab_size, C}, true);
  groups_.push_back(embed);

  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    ParamGroup layer{"layers." + std::to_string(i), {}, 0};
    add(layer, p + "input_layernorm.weight", {C}, false);
    add(layer, p + "self_attn.q_proj.weight", {q, C}, true);
    if (c.qkv_bias) add(layer, p + "self_attn.q_proj.bias", {q}, false);
    add(layer, p + "self_attn.k_proj.weight", {kv, C}, true);
    if (c.qkv_bias) add(layer, p + "self_attn.k_proj.bias", {kv}, false);
    add(layer, p + "self_attn.v_proj.weight", {kv, C}, true);
    if (c.qkv_bias) add(layer, p + "self_attn.v_proj.bias", {kv}, false);
    add(layer, p + "self_attn.o_proj.weight", {C, q}, true);
    if (c.o_bias) add(layer, p + "self_attn.o_proj.bias", {C}, false);
    if (c.qk_norm) {
      add(layer, p + "self_attn.q_norm.weight", {D}, false);
      add(layer, p + "self_attn.k_norm.weight", {D}, false);
    }
    add(layer, p + "post_attention_layernorm.weight", {C}, false);
    add(layer, p + "mlp.gate_proj.weight", {I, C}, true);
    add(layer, p + "mlp.up_proj.weight", {I, C}, true);
    add(layer, p + "mlp.down_proj.weight", {C, I}, true);
    groups_.push_back(layer);
  }

  ParamGroup final_group{"final", {}, 0};
  add(final_group, "model.norm.weight", {C}, false);
  if (!c.tie_word_embeddings) add(final_group, "lm_head.weight", {c.vocab_size, C}, true);
  groups_.push_back(final_group);
}

std::int64_t ParamLayout::numel() const {
  std::int64_t n = 0;
  for (const auto& g : groups_) n += g.numel;
  return n;
}

const ParamSpec* ParamLayout::find(const std::string& name, std::size_t* group_index) const {
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    for (const auto& spec : groups_[g].params) {
      if (spec.name == name) {
        if (group_index) *group_index = g;
        return &spec;
      }
    }
  }
  return nullptr;
}

ParamBuffers::ParamBuffers(const ModelConfig& config, Device device, DType dtype)
    : config_(config), layout_(config) {
  UL_CHECK(dtype == DType::f32 || dtype == DType::bf16, "ParamBuffers: dtype ", dtype_name(dtype),
           " is not supported (f32 or bf16)");
  for (const auto& group : layout_.groups())
    flat_.push_back(Tensor::zeros({group.numel}, dtype, device));
}

Tensor param_view(const ParamGroup& group, const Tensor& flat, const std::string& name) {
  for (const auto& spec : group.params)
    if (spec.name == name)
      return flat.rows(spec.offset, spec.offset + shape_numel(spec.shape)).view(spec.shape);
  UL_FAIL("parameter '", name, "' is not in group ", group.name);
}

Tensor embed_view(const ParamLayout& layout, const Tensor& flat) {
  return param_view(layout.groups().front(), flat, "model.embed_tokens.weight");
}

LayerWeights layer_view(const ModelConfig& c, const ParamLayout& layout, std::int64_t i,
                        const Tensor& flat) {
  const ParamGroup& group = layout.groups()[layer_group(i)];
  const std::string p = "model.layers." + std::to_string(i) + ".";
  auto get = [&](const std::string& name) { return param_view(group, flat, p + name); };
  LayerWeights l;
  l.input_norm = get("input_layernorm.weight");
  l.q_proj = get("self_attn.q_proj.weight");
  l.k_proj = get("self_attn.k_proj.weight");
  l.v_proj = get("self_attn.v_proj.weight");
  l.o_proj = get("self_attn.o_proj.weight");
  if (c.qkv_bias) {
    l.q_bias = get("self_attn.q_proj.bias");
    l.k_bias = get("self_attn.k_proj.bias");
    l.v_bias = get("self_attn.v_proj.bias");
  }
  if (c.o_bias) l.o_bias = get("self_attn.o_proj.bias");
  if (c.qk_norm) {
    l.q_norm = get("self_attn.q_norm.weight");
    l.k_norm = get("self_attn.k_norm.weight");
  }
  l.post_norm = get("post_attention_layernorm.weight");
  l.gate_proj = get("mlp.gate_proj.weight");
  l.up_proj = get("mlp.up_proj.weight");
  l.down_proj = get("mlp.down_proj.weight");
  return l;
}

FinalWeights final_view(const ModelConfig& c, const ParamLayout& layout, const Tensor& flat) {
  const ParamGroup& group = layout.groups()[final_group(c)];
  FinalWeights f;
  f.norm = param_view(group, flat, "model.norm.weight");
  if (!c.tie_word_embeddings) f.lm_head = param_view(group, flat, "lm_head.weight");
  return f;
}

Tensor ParamBuffers::get(const std::string& name) const {
  std::size_t g = 0;
  const ParamSpec* spec = layout_.find(name, &g);
  UL_CHECK(spec, "unknown parameter '", name, "' for model_type ",
           model_type_name(config_.model_type));
  return param_view(layout_.groups()[g], flat_[g], name);
}

void ParamBuffers::zero() {
  for (auto& t : flat_) t.zero_();
}

void init_group_range(const Context& ctx, const ParamGroup& group, Tensor out, std::int64_t lo,
                      std::uint64_t seed, float std) {
  UL_CHECK(out.ndim() == 1, "init_group_range: out has shape ", shape_str(out.shape()),
           ", expected a 1-D range of the group's flat buffer");
  UL_CHECK(lo >= 0, "init_group_range: lo is ", lo, ", expected >= 0");
  const std::int64_t hi = lo + out.numel();
  // Parameters in offset order; what none of them covers (gaps, padding) is zero.
  std::vector<const ParamSpec*> specs;
  for (const auto& spec : group.params) specs.push_back(&spec);
  std::sort(specs.begin(), specs.end(),
            [](const ParamSpec* a, const ParamSpec* b) { return a->offset < b->offset; });
  std::int64_t covered = lo;  // [lo, covered) is written
  const auto zero_until = [&](std::int64_t end) {
    if (end > covered) ops::fill_constant(ctx, out.rows(covered - lo, end - lo), 0.0f);
    covered = std::max(covered, end);
  };
  for (const ParamSpec* spec : specs) {
    const std::int64_t begin = std::max(lo, spec->offset);
    const std::int64_t end = std::min(hi, spec->offset + shape_numel(spec->shape));
    if (end <= begin) continue;
    zero_until(begin);
    Tensor part = out.rows(begin - lo, end - lo);
    if (is_norm(spec->name)) {
      ops::fill_constant(ctx, part, 1.0f);
    } else if (is_bias(spec->name)) {
      ops::fill_constant(ctx, part, 0.0f);
    } else {
      const std::uint64_t key = counter_rng::key(seed, name_hash(spec->name));
      ops::fill_normal(ctx, part, key, begin - spec->offset, std);
    }
    covered = std::max(covered, end);
  }
  zero_until(hi);
}

void init_weights(const Context& ctx, ParamBuffers& params, std::uint64_t seed, float std) {
  const auto& groups = params.layout().groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    UL_CHECK(params.flat()[g].device() == ctx.device, "init_weights: the parameters are on ",
             params.flat()[g].device().str(), " but the context is on ", ctx.device.str());
    init_group_range(ctx, groups[g], params.flat()[g], 0, seed, std);
  }
}

void init_weights(ParamBuffers& params, std::uint64_t seed, float std) {
  const Device device = params.flat().empty() ? Device::cpu() : params.flat()[0].device();
  if (device.is_cpu()) return init_weights(Context{}, params, seed, std);
  const Context ctx = make_cuda_context(device.index);
  init_weights(ctx, params, seed, std);
  synchronize(ctx);
}

}  // namespace ulysses::model
