// Whole-model checks on tiny configurations: analytic gradients against finite differences for
// every architecture variant, and gradient checkpointing giving bitwise identical results.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <map>

#include "test_util.h"
#include "ulysses/core/counter_rng.h"
#include "ulysses/core/op_profiler.h"
#include "ulysses/data/packer.h"
#include "ulysses/model/decoder.h"
#include "ulysses/model/params.h"
#include "ulysses/parallel/attention_strategies.h"

namespace ulysses::model {
namespace {

using testing::relative_error;

ModelConfig tiny_config(const std::string& type) {
  ModelConfig c = preset_config("tiny");
  c.model_type = parse_model_type(type, "tiny_config");
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 4;
  c.vocab_size = 19;
  c.qk_norm = type == "qwen3";
  c.qkv_bias = type == "qwen2" || type == "llama";
  c.o_bias = type == "llama";
  c.tie_word_embeddings = type == "qwen3";
  if (type == "llama") {
    c.rope.type = ops::RopeType::llama3;
    c.rope.factor = 8;
    c.rope.original_max_position_embeddings = 8;
  }
  return c;
}

// Two documents (5 and 6 tokens) plus 1 padding token, with one masked prompt token.
data::PackedSequence sample_sequence(std::int64_t vocab) {
  data::PackedSequence s;
  Rng rng(11);
  auto doc = [&](int n) {
    data::Document d;
    for (int i = 0; i < n; ++i)
      d.tokens.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab))));
    d.labels = d.tokens;
    return d;
  };
  data::Document first = doc(5);
  first.labels[1] = -100;
  data::append_document(s, first);
  data::append_document(s, doc(6));
  data::pad_sequence(s, 12);
  return s;
}

// Randomizes every parameter (norm weights around 1, biases small) so every path matters.
void randomize(ParamBuffers& params, std::uint64_t seed) {
  Rng rng(seed);
  for (auto& flat : params.flat()) {
    float* p = flat.data<float>();
    for (std::int64_t i = 0; i < flat.numel(); ++i) p[i] = 0.5f * rng.normal();
  }
  for (const auto& group : params.layout().groups())
    for (const auto& spec : group.params)
      if (spec.name.find("norm") != std::string::npos) {
        Tensor t = params.get(spec.name);
        for (std::int64_t i = 0; i < t.numel(); ++i)
          t.data<float>()[i] = 1.0f + 0.1f * rng.normal();
      }
}

class ModelGradient : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelGradient, MatchesFiniteDifferences) {
  const ModelConfig c = tiny_config(GetParam());
  ParamBuffers params(c), grads(c);
  randomize(params, 5);
  auto attention = parallel::make_local_attention();
  Decoder decoder(c, *attention);
  Context ctx;
  ctx.loss_tile_tokens = 5;  // several tiles
  ctx.attention_block = 4;   // several blocks, a partial last one
  const auto sequence = sample_sequence(c.vocab_size);
  const auto shard = data::make_full_shard(sequence);
  const double n = static_cast<double>(sequence.valid_labels());
  ASSERT_GT(n, 0);

  const ops::LossSum loss =
      decoder.forward_backward(ctx, params, &grads, shard, static_cast<float>(1.0 / n), {});
  EXPECT_EQ(loss.valid_count(), static_cast<std::int64_t>(n));
  ASSERT_TRUE(std::isfinite(loss.loss_sum()));

  auto mean_loss = [&] {
    return decoder.forward_backward(ctx, params, nullptr, shard, 0.0f, {}).loss_sum() / n;
  };
  for (std::size_t g = 0; g < params.flat().size(); ++g) {
    const auto numeric = testing::numerical_gradient(params.flat()[g], mean_loss, 1e-2);
    const auto analytic = testing::as_doubles(grads.flat()[g]);
    EXPECT_LT(relative_error(analytic, numeric), 2e-2)
        << model_type_name(c.model_type) << " group " << params.layout().groups()[g].name;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, ModelGradient,
                         ::testing::Values("llama", "qwen2", "qwen3", "mistral"));

TEST(Model, GradientCheckpointingIsBitwiseIdentical) {
  const ModelConfig c = tiny_config("qwen3");
  ParamBuffers params(c), grads_plain(c), grads_ckpt(c);
  randomize(params, 9);
  auto attention = parallel::make_local_attention();
  Decoder decoder(c, *attention);
  Context ctx;
  const auto shard = data::make_full_shard(sample_sequence(c.vocab_size));
  StepOptions checkpointing;
  checkpointing.gradient_checkpointing = true;
  const auto a = decoder.forward_backward(ctx, params, &grads_plain, shard, 0.1f, {});
  const auto b = decoder.forward_backward(ctx, params, &grads_ckpt, shard, 0.1f, checkpointing);
  EXPECT_EQ(a.loss_sum(), b.loss_sum());
  for (std::size_t g = 0; g < grads_plain.flat().size(); ++g) {
    const auto x = grads_plain.flat()[g].to_floats();
    const auto y = grads_ckpt.flat()[g].to_floats();
    ASSERT_EQ(x, y) << "group " << g;
  }
}

// Counts the attention forwards it forwards to the local strategy.
class CountingAttention final : public parallel::AttentionStrategy {
 public:
  std::string name() const override { return "counting"; }
  void forward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
               const Tensor& k, const Tensor& v, float scale, Tensor out,
               parallel::AttentionSaved& saved) override {
    ++forwards;
    inner->forward(ctx, shard, q, k, v, scale, out, saved);
  }
  void backward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
                const Tensor& k, const Tensor& v, float scale, const Tensor& out,
                const parallel::AttentionSaved& saved, const Tensor& dout, Tensor dq, Tensor dk,
                Tensor dv) override {
    inner->backward(ctx, shard, q, k, v, scale, out, saved, dout, dq, dk, dv);
  }
  std::unique_ptr<parallel::AttentionStrategy> inner = parallel::make_local_attention();
  int forwards = 0;
};

TEST(Model, GradientCheckpointingNeverRecomputesAttention) {
  const ModelConfig c = tiny_config("qwen3");
  ParamBuffers params(c), grads(c);
  randomize(params, 2);
  CountingAttention attention;
  Decoder decoder(c, attention);
  Context ctx;
  StepOptions checkpointing;
  checkpointing.gradient_checkpointing = true;
  decoder.forward_backward(ctx, params, &grads,
                           data::make_full_shard(sample_sequence(c.vocab_size)), 0.1f,
                           checkpointing);
  EXPECT_EQ(attention.forwards, c.num_hidden_layers);
}

// Gradients of one step, flattened per group.
std::vector<std::vector<float>> step_grads(const ModelConfig& c, const ParamBuffers& params,
                                           const StepOptions& options, float* loss_sum,
                                           AttentionStrategy* attention = nullptr) {
  auto local = parallel::make_local_attention();
  Decoder decoder(c, attention ? *attention : *local);
  ParamBuffers grads(c);
  Context ctx;
  const auto shard = data::make_full_shard(sample_sequence(c.vocab_size));
  *loss_sum = static_cast<float>(
      decoder.forward_backward(ctx, params, &grads, shard, 0.1f, options).loss_sum());
  std::vector<std::vector<float>> out;
  for (const Tensor& g : grads.flat()) out.push_back(g.to_floats());
  return out;
}

TEST(Model, TiledMlpEqualsUntiled) {
  // Tiles of 5 tokens over a 12-token shard (the last tile is short), with and without
  // checkpointing: same loss, gradients equal up to the order of the weight-gradient sums.
  for (const char* type : {"llama", "qwen3"}) {
    const ModelConfig c = tiny_config(type);
    ParamBuffers params(c);
    randomize(params, 21);
    for (bool ckpt : {false, true}) {
      StepOptions plain, tiled;
      plain.gradient_checkpointing = tiled.gradient_checkpointing = ckpt;
      tiled.mlp_tile_tokens = 5;
      float la = 0, lb = 0;
      const auto a = step_grads(c, params, plain, &la);
      const auto b = step_grads(c, params, tiled, &lb);
      EXPECT_EQ(la, lb) << type;
      for (std::size_t g = 0; g < a.size(); ++g) {
        std::vector<double> x(a[g].begin(), a[g].end()), y(b[g].begin(), b[g].end());
        EXPECT_LT(relative_error(y, x), 1e-5) << type << " ckpt " << ckpt << " group " << g;
      }
    }
  }
}

TEST(Model, CheckpointLayersAreBitwiseIdenticalAndRecomputeOnlyTheirLayers) {
  // checkpoint_layers N: layers 0 .. N-1 are checkpointed, the rest keep everything. Every N
  // gives the bits of full checkpointing (and of none); the recompute phase runs the
  // projections of exactly N layers, untiled and with a tiled MLP.
  const ModelConfig c = tiny_config("qwen3");
  const std::int64_t L = c.num_hidden_layers;
  ASSERT_GE(L, 2);
  ParamBuffers params(c);
  randomize(params, 6);
  const auto shard = data::make_full_shard(sample_sequence(c.vocab_size));
  auto attention = parallel::make_local_attention();
  Decoder decoder(c, *attention);
  for (const std::int64_t mlp_tile : {std::int64_t{0}, std::int64_t{5}}) {
    StepOptions none;
    none.mlp_tile_tokens = mlp_tile;
    float l_none = 0;
    const auto g_none = step_grads(c, params, none, &l_none);
    std::int64_t recompute_gemms_all = -1;
    for (const std::int64_t n : {std::int64_t{-1}, std::int64_t{0}, std::int64_t{1}, L - 1, L}) {
      StepOptions o = none;
      o.gradient_checkpointing = true;
      o.checkpoint_layers = n;
      Context ctx;
      ctx.profiler = std::make_shared<OpProfiler>();
      ParamBuffers grads(c);
      const float loss = static_cast<float>(
          decoder.forward_backward(ctx, params, &grads, shard, 0.1f, o).loss_sum());
      EXPECT_EQ(loss, l_none) << n;
      for (std::size_t g = 0; g < grads.flat().size(); ++g)
        ASSERT_EQ(grads.flat()[g].to_floats(), g_none[g])
            << "checkpoint_layers " << n << " group " << g;
      std::int64_t recompute_gemms = 0;
      for (const auto& row : ctx.profiler->totals())
        if (row.phase == "recompute" && row.kind == "gemm") recompute_gemms = row.calls;
      if (n < 0) {
        recompute_gemms_all = recompute_gemms;
        EXPECT_GT(recompute_gemms_all, 0);
        EXPECT_EQ(recompute_gemms_all % L, 0);
      } else {
        EXPECT_EQ(recompute_gemms, recompute_gemms_all / L * n) << "checkpoint_layers " << n;
      }
    }
  }
  StepOptions bad;
  bad.gradient_checkpointing = bad.recompute_attention = true;
  bad.checkpoint_layers = 1;
  ParamBuffers grads(c);
  EXPECT_THROW(decoder.forward_backward(Context{}, params, &grads, shard, 0.1f, bad), Error);
}

TEST(Model, RecomputedAttentionIsBitwiseIdenticalAndRunsAttentionTwice) {
  const ModelConfig c = tiny_config("qwen3");
  ParamBuffers params(c);
  randomize(params, 4);
  StepOptions keep, recompute;
  keep.gradient_checkpointing = recompute.gradient_checkpointing = true;
  recompute.recompute_attention = true;
  CountingAttention counting;
  float la = 0, lb = 0;
  const auto a = step_grads(c, params, keep, &la);
  const auto b = step_grads(c, params, recompute, &lb, &counting);
  EXPECT_EQ(la, lb);
  EXPECT_EQ(a, b);
  EXPECT_EQ(counting.forwards, 2 * c.num_hidden_layers);
}

// Moves the kept tensors into host copies and back, checking the call order of the contract.
class CopyingActivationStore final : public ActivationStore {
 public:
  explicit CopyingActivationStore(std::int64_t layers) : layers_(layers) {}
  void stash(const Context&, std::int64_t layer, LayerActivations& kept) override {
    EXPECT_EQ(layer, next_stash_++);
    Slot& s = slots_[layer];
    s.x = kept.x.clone();
    if (kept.att.defined()) s.att = kept.att.clone();
    kept.x = kept.att = Tensor();
  }
  void fetch(const Context&, std::int64_t layer, LayerActivations& kept) override {
    EXPECT_EQ(next_stash_, layers_) << "fetch before every layer was stashed";
    EXPECT_EQ(layer, layers_ - 1 - fetched_++);
    EXPECT_FALSE(kept.x.defined());
    kept.x = slots_.at(layer).x;
    kept.att = slots_.at(layer).att;
    slots_.erase(layer);
  }
  std::int64_t fetched() const { return fetched_; }

 private:
  struct Slot {
    Tensor x, att;
  };
  std::int64_t layers_, next_stash_ = 0, fetched_ = 0;
  std::map<std::int64_t, Slot> slots_;
};

TEST(Model, ActivationStoreKeepsResultsBitwiseIdentical) {
  for (bool recompute_attention : {false, true}) {
    const ModelConfig c = tiny_config("llama");
    ParamBuffers params(c);
    randomize(params, 8);
    StepOptions kept, stored;
    kept.gradient_checkpointing = stored.gradient_checkpointing = true;
    kept.recompute_attention = stored.recompute_attention = recompute_attention;
    CopyingActivationStore store(c.num_hidden_layers);
    stored.activation_store = &store;
    float la = 0, lb = 0;
    const auto a = step_grads(c, params, kept, &la);
    const auto b = step_grads(c, params, stored, &lb);
    EXPECT_EQ(la, lb);
    EXPECT_EQ(a, b);
    EXPECT_EQ(store.fetched(), c.num_hidden_layers);
  }
}

TEST(Model, PackedDocumentsDoNotInteract) {
  // The loss of a packed sequence equals the sum of the losses of its documents run alone.
  const ModelConfig c = tiny_config("llama");
  ParamBuffers params(c);
  randomize(params, 3);
  auto attention = parallel::make_local_attention();
  Decoder decoder(c, *attention);
  Context ctx;
  const auto packed = sample_sequence(c.vocab_size);
  double separate = 0;
  for (std::size_t d = 0; d + 1 < packed.cu_seqlens.size(); ++d) {
    data::PackedSequence alone;
    data::Document doc;
    for (auto i = packed.cu_seqlens[d]; i < packed.cu_seqlens[d + 1]; ++i) {
      doc.tokens.push_back(packed.input_ids[static_cast<std::size_t>(i)]);
    }
    alone.cu_seqlens = {0, static_cast<std::int32_t>(doc.tokens.size())};
    alone.input_ids = doc.tokens;
    for (std::size_t i = 0; i < doc.tokens.size(); ++i)
      alone.position_ids.push_back(static_cast<std::int32_t>(i));
    alone.shift_labels.assign(packed.shift_labels.begin() + packed.cu_seqlens[d],
                              packed.shift_labels.begin() + packed.cu_seqlens[d + 1]);
    separate += decoder.forward_backward(ctx, params, nullptr, data::make_full_shard(alone), 0, {})
                    .loss_sum();
  }
  const double together =
      decoder.forward_backward(ctx, params, nullptr, data::make_full_shard(packed), 0, {})
          .loss_sum();
  EXPECT_NEAR(together, separate, 1e-5 * std::fabs(separate));
}

}  // namespace
}  // namespace ulysses::model

namespace ulysses::model {
namespace {

// Every value is the counter-based draw of (seed, parameter name, element index): the same for
// any thread count, and element i of a tensor is std * counter_rng::normal(key, i).
TEST(ModelInit, SameValuesForAnyThreadCountAndCounterBasedDraws) {
  ModelConfig c = tiny_config("llama");
  c.vocab_size = 4096;
  c.hidden_size = 512;  // embed_tokens: 2M values
  c.intermediate_size = 1024;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  ParamBuffers one(c, Device::cpu());
  init_weights(one, 7);
  omp_set_num_threads(4);
  ParamBuffers four(c, Device::cpu());
  init_weights(four, 7);
  omp_set_num_threads(threads);
  for (std::size_t g = 0; g < one.flat().size(); ++g)
    EXPECT_EQ(one.flat()[g].to_floats(), four.flat()[g].to_floats()) << "group " << g;
  const Tensor embed = one.get("model.embed_tokens.weight");
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a of the name, as params.cc
  for (const unsigned char ch : std::string("model.embed_tokens.weight"))
    hash = (hash ^ ch) * 1099511628211ull;
  const std::uint64_t key = counter_rng::key(7, hash);
  for (const std::int64_t i : {0, 1, 999, (1 << 20) - 1, 1 << 20, (1 << 21) - 1})
    ASSERT_EQ(embed.data<float>()[i],
              0.02f * counter_rng::normal(key, static_cast<std::uint64_t>(i)))
        << i;
  EXPECT_NE(embed.data<float>()[1 << 20], embed.data<float>()[0]);
  // Norm weights are ones.
  const auto norm = one.get("model.norm.weight").to_floats();
  EXPECT_EQ(norm, std::vector<float>(norm.size(), 1.0f));
}

}  // namespace
}  // namespace ulysses::model
