// ZeRO stages 0-3 under mpirun (1, 2 and 4 ranks; layouts: see layouts()): every rank runs the
// decoder with a ZeroState as its parameter store on its own token shards, and
// every rank also computes the single-process reference itself (all ranks' sequences through a
// ResidentParamStore, plain AdamW with global-norm clipping). Same grad norms, losses and
// parameters (relative 1e-5), bit-identical parameters on every rank.
#include "ulysses/parallel/zero.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "dist_util.h"
#include "test_util.h"
#include "ulysses/io/hf_checkpoint.h"
#include "ulysses/model/decoder.h"
#include "ulysses/ops/adamw.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/parallel/attention_strategies.h"

namespace ulysses::parallel {
namespace {

using ulysses::testing::relative_error;
using ulysses::testing::world;

constexpr std::int64_t kSteps = 3;
constexpr std::int64_t kMicroSteps = 2;  // sequences per rank per step (gradient accumulation)
constexpr std::uint64_t kSeed = 11;

// Odd hidden size and vocabulary, so group sizes are not multiples of the ZeRO group size and
// the shards are padded.
model::ModelConfig tiny_config(bool tied) {
  model::ModelConfig c = model::preset_config("tiny");
  c.hidden_size = 27;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 61;
  c.tie_word_embeddings = tied;
  return c;
}

ops::AdamWConfig adamw_config() {
  ops::AdamWConfig a;
  a.weight_decay = 0.1f;
  return a;
}

float lr_at(std::int64_t step) { return 1e-2f * static_cast<float>(step) / kSteps; }

// Sequence `index` of step `step`: two documents of 7 and 5 tokens.
data::PackedSequence make_sequence(std::int64_t step, std::int64_t index, std::int64_t vocab) {
  Rng rng =
      Rng::derive(kSeed, {static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(index)});
  return testing::random_documents(rng, {7, 5}, vocab);
}

// Sequences of one step: micro-step a, data-parallel rank d -> index a * D + d.
std::vector<data::PackedSequence> step_sequences(std::int64_t step, std::int64_t D,
                                                 std::int64_t vocab) {
  std::vector<data::PackedSequence> out;
  for (std::int64_t i = 0; i < kMicroSteps * D; ++i) out.push_back(make_sequence(step, i, vocab));
  return out;
}

float grad_scale(const std::vector<data::PackedSequence>& batch) {
  std::int64_t n = 0;
  for (const auto& s : batch) n += s.valid_labels();
  return static_cast<float>(1.0 / static_cast<double>(n));
}

std::vector<double> flatten(const model::ParamBuffers& p) {
  std::vector<double> out;
  for (const auto& flat : p.flat())
    for (const float v : flat.to_floats()) out.push_back(v);
  return out;
}

struct History {
  std::vector<double> losses, norms;
  std::vector<double> params;
};

// The plain optimizer step of the reference, written out independently of the ZeroState:
// global norm over every group, torch's clipping rule, AdamW per parameter (weight decay where
// the ParamSpec says so).
double reference_norm(const Context& ctx, const model::ParamBuffers& grads) {
  double sum = 0;
  for (const auto& flat : grads.flat()) sum += ops::sum_of_squares(ctx, flat);
  return std::sqrt(sum);
}

void reference_update(const Context& ctx, model::ParamBuffers& params, model::ParamBuffers& grads,
                      model::ParamBuffers& exp_avg, model::ParamBuffers& exp_avg_sq, double norm,
                      double max_grad_norm, std::int64_t step, float lr) {
  if (max_grad_norm > 0 && max_grad_norm / (norm + 1e-6) < 1.0)
    for (auto& flat : grads.flat())
      ops::scale_inplace(ctx, flat, static_cast<float>(max_grad_norm / (norm + 1e-6)));
  for (const auto& group : params.layout().groups()) {
    for (const auto& spec : group.params) {
      ops::AdamWConfig hyper = adamw_config();
      hyper.lr = lr;
      if (!spec.weight_decay) hyper.weight_decay = 0.0f;
      ops::adamw_step(ctx, hyper, step, params.get(spec.name), grads.get(spec.name),
                      exp_avg.get(spec.name), exp_avg_sq.get(spec.name));
    }
  }
}

// The single-process reference: every sequence of the step (D data-parallel groups) through
// resident buffers.
History reference_run(const model::ModelConfig& config, double max_grad_norm, std::int64_t D) {
  const Context ctx;
  auto attention = make_local_attention();
  const model::Decoder decoder(config, *attention);
  model::ParamBuffers params(config), grads(config), exp_avg(config), exp_avg_sq(config);
  model::init_weights(params, kSeed);
  History h;
  for (std::int64_t step = 1; step <= kSteps; ++step) {
    const auto batch = step_sequences(step, D, config.vocab_size);
    grads.zero();
    double loss = 0;
    for (const auto& s : batch)
      loss += decoder
                  .forward_backward(ctx, params, &grads, data::make_full_shard(s),
                                    grad_scale(batch), {})
                  .loss_sum();
    h.losses.push_back(loss * grad_scale(batch));
    const double norm = reference_norm(ctx, grads);
    h.norms.push_back(norm);
    reference_update(ctx, params, grads, exp_avg, exp_avg_sq, norm, max_grad_norm, step,
                     lr_at(step));
  }
  h.params = flatten(params);
  return h;
}

// Sum of every rank's double in rank order (identical on all ranks).
double sum_over_world(double value) {
  Tensor mine = Tensor::empty({1}, DType::i64);  // [1]
  std::memcpy(mine.data<std::int64_t>(), &value, sizeof value);
  Tensor all = Tensor::empty({world().size()}, DType::i64);  // [world]
  world().all_gather(mine, all);
  double sum = 0;
  for (int i = 0; i < world().size(); ++i) {
    double v;
    std::memcpy(&v, all.data<std::int64_t>() + i, sizeof v);
    sum += v;
  }
  return sum;
}

// One optimizer step of this rank's token shards through the ZeroState; returns the loss.
double zero_step(ZeroState& zero, const Mesh& mesh, const model::Decoder& decoder,
                 std::int64_t step, double max_grad_norm, double* norm) {
  const Context ctx;
  const std::int64_t D = mesh.dp_size(), P = mesh.sp_size(), r = mesh.sp_rank();
  const auto batch = step_sequences(step, D, zero.config().vocab_size);
  zero.begin_step();
  double loss = 0;
  for (std::int64_t a = 0; a < kMicroSteps; ++a) {
    const auto& s = batch[static_cast<std::size_t>(a * D + mesh.dp_index())];
    const std::int64_t T = s.length() / P;
    loss += decoder
                .forward_backward(ctx, zero, data::make_shard(s, r * T, (r + 1) * T),
                                  grad_scale(batch), {})
                .loss_sum();
  }
  *norm = zero.finish_step(ctx, step, lr_at(step), max_grad_norm);
  return sum_over_world(loss) * grad_scale(batch);
}

// Every rank's gathered parameters are bit-identical to rank 0's.
void expect_identical_on_every_rank(const model::ParamBuffers& params, const std::string& what) {
  for (const auto& flat : params.flat()) {
    Tensor root = flat.clone();
    world().broadcast(root, 0);
    EXPECT_EQ(std::memcmp(root.raw(), flat.raw(), flat.nbytes()), 0)
        << what << ": rank " << world().rank() << " differs from rank 0";
  }
}

std::int64_t full_bytes(const model::ModelConfig& config) {
  return 4 * model::ParamLayout(config).numel();
}

void check_stage(const model::ModelConfig& config, std::int64_t sp, std::int64_t replicas,
                 int stage, double max_grad_norm, const History& expected,
                 const std::string& what) {
  SCOPED_TRACE(what);
  ParallelConfig layout;
  layout.sp_size = sp;
  layout.dp_replicate_size = replicas;
  layout.dp_shard_size = world().size() / replicas / sp;
  Mesh mesh(world(), layout);
  ASSERT_EQ(mesh.zero_group().size(), world().size() / replicas);
  ASSERT_EQ(mesh.replicate_group().size(), replicas);
  auto attention = sp == 1 ? make_local_attention()
                           : make_ulysses_attention(mesh.sp_group(), config.num_attention_heads,
                                                    config.num_key_value_heads);
  const model::Decoder decoder(config, *attention);
  model::ParamBuffers init(config);
  model::init_weights(init, kSeed);

  ZeroState zero(config, mesh, ZeroConfig{stage, false, false}, adamw_config());
  zero.set_parameters(init);
  History got;
  for (std::int64_t step = 1; step <= kSteps; ++step) {
    double norm = 0;
    got.losses.push_back(zero_step(zero, mesh, decoder, step, max_grad_norm, &norm));
    got.norms.push_back(norm);
    if (stage >= 2) {  // never all full gradients at once; stage 3: never all parameters
      EXPECT_GT(zero.peak_transient().grads, 0);
      EXPECT_LT(zero.peak_transient().grads, full_bytes(config));
      // The plan's bound covers what the step really held (overlap on or off).
      const ZeroMemory formula =
          zero_memory_formula(config, ZeroConfig{stage, false, false}, mesh.zero_group().size(),
                              parallel::Precision::fp32);
      EXPECT_LE(zero.peak_transient().grads + zero.peak_transient().params, formula.transient);
      if (stage == 3) {
        EXPECT_GT(zero.peak_transient().params, 0);
        EXPECT_LT(zero.peak_transient().params, full_bytes(config));
      }
    }
  }
  for (std::int64_t i = 0; i < kSteps; ++i) {
    EXPECT_NEAR(got.losses[i], expected.losses[i], 1e-6 * expected.losses[i]) << "step " << i + 1;
    EXPECT_NEAR(got.norms[i], expected.norms[i], 1e-5 * expected.norms[i]) << "step " << i + 1;
  }
  model::ParamBuffers params(config);
  zero.gather_parameters(params);
  EXPECT_LT(relative_error(flatten(params), expected.params), 1e-5);
  expect_identical_on_every_rank(params, what);

  const ZeroMemory memory = zero.memory();
  const ZeroMemory formula = zero_memory_formula(config, stage, mesh.zero_group().size());
  EXPECT_EQ(memory.params, formula.params);
  EXPECT_EQ(memory.grads, formula.grads);
  EXPECT_EQ(memory.optimizer, formula.optimizer);

  // Resume: a fresh ZeroState loaded from this one's state takes the same next step.
  std::map<std::string, Tensor> saved;
  for (const auto& [name, tensor] : zero.state_tensors()) saved[name] = tensor.clone();
  ZeroState resumed(config, mesh, ZeroConfig{stage, false, false}, adamw_config());
  resumed.load_state_tensors(saved);
  double norm_a = 0, norm_b = 0;
  const double loss_a = zero_step(zero, mesh, decoder, kSteps + 1, max_grad_norm, &norm_a);
  const double loss_b = zero_step(resumed, mesh, decoder, kSteps + 1, max_grad_norm, &norm_b);
  EXPECT_EQ(loss_a, loss_b);
  EXPECT_EQ(norm_a, norm_b);
  model::ParamBuffers a(config), b(config);
  zero.gather_parameters(a);
  resumed.gather_parameters(b);
  EXPECT_EQ(flatten(a), flatten(b)) << "resumed state differs";
}

struct Layout {
  std::int64_t sp, replicas;
};

// Layouts of this world: sp 1 (dp_shard = world); with 4 ranks also dp_replicate 2 x dp_shard 2,
// sp 2 x dp_shard 2 and sp 2 x dp_replicate 2; with 2 ranks also sp 2.
std::vector<Layout> layouts() {
  std::vector<Layout> out = {{1, 1}};
  if (world().size() == 4) out.insert(out.end(), {{1, 2}, {2, 1}, {2, 2}});
  if (world().size() == 2) out.push_back({2, 1});
  return out;
}

TEST(Zero, EveryStageEqualsSingleProcessTraining) {
  for (const bool tied : {false, true}) {
    const model::ModelConfig config = tiny_config(tied);
    for (const Layout layout : layouts()) {
      const std::int64_t D = world().size() / layout.sp;
      // Clipping active (max below the first norm); also off in the first layout.
      const History probe = reference_run(config, 0.0, D);
      std::vector<double> max_norms = {0.5 * probe.norms.front()};
      if (layout.sp == 1 && layout.replicas == 1) max_norms.push_back(0.0);
      for (const double max_grad_norm : max_norms) {
        const History expected =
            max_grad_norm > 0 ? reference_run(config, max_grad_norm, D) : probe;
        for (int stage = 0; stage <= 3; ++stage) {
          const std::string what = std::string(tied ? "tied" : "untied") + " stage " +
                                   std::to_string(stage) + " sp " + std::to_string(layout.sp) +
                                   " replicas " + std::to_string(layout.replicas) +
                                   " max_grad_norm " + std::to_string(max_grad_norm);
          check_stage(config, layout.sp, layout.replicas, stage, max_grad_norm, expected, what);
        }
      }
    }
  }
}

// Shard-only setup (the trainer's): every rank asks the source only for what it keeps (at
// stage 3 its shard of each group, else the full groups it holds), and the state equals the
// one set from the whole f32 model: the same state tensors, bit for bit, and the same
// parameters handed to the decoder, on every stage and offload flag.
TEST(Zero, ShardOnlySetupEqualsSettingTheWholeModel) {
  const model::ModelConfig config = tiny_config(false);
  const model::ParamLayout layout(config);
  model::ParamBuffers full(config);
  model::init_weights(full, kSeed, 0.02f);
  Mesh mesh(world(), ParallelConfig{1, world().size(), 1});
  struct Variant {
    int stage;
    bool offload_optimizer, offload_params;
  };
  for (const Variant v :
       {Variant{0, false, false}, Variant{1, false, false}, Variant{2, false, false},
        Variant{3, false, false}, Variant{1, true, false}, Variant{3, true, true}}) {
    const std::string what = "stage " + std::to_string(v.stage) +
                             (v.offload_optimizer ? " +offload-optimizer" : "") +
                             (v.offload_params ? " +offload-params" : "");
    SCOPED_TRACE(what);
    const ZeroConfig zc{v.stage, v.offload_optimizer, v.offload_params};
    ZeroState whole(config, mesh, zc, adamw_config()), sharded(config, mesh, zc, adamw_config());
    whole.set_parameters(full);
    std::vector<std::pair<std::int64_t, std::int64_t>> asked(layout.groups().size(), {-1, -1});
    sharded.set_parameters([&](std::size_t g, std::int64_t lo, Tensor out) {
      EXPECT_EQ(asked[g].first, -1) << "group " << g << " asked for twice";
      asked[g] = {lo, lo + out.numel()};
      model::init_group_range(Context{}, layout.groups()[g], out, lo, kSeed, 0.02f);
    });
    const int Z = v.stage == 0 ? 1 : world().size();
    for (std::size_t g = 0; g < layout.groups().size(); ++g) {
      const std::int64_t s = (layout.groups()[g].numel + Z - 1) / Z;
      const std::pair<std::int64_t, std::int64_t> own =
          v.stage == 3 ? std::pair{s * world().rank(), s * (world().rank() + 1)}
                       : std::pair{std::int64_t{0}, s * Z};
      EXPECT_EQ(asked[g], own) << "group " << g;
    }
    const auto a = whole.state_tensors(), b = sharded.state_tensors();
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].second.nbytes(), b[i].second.nbytes()) << a[i].first;
      EXPECT_EQ(std::memcmp(a[i].second.raw(), b[i].second.raw(), a[i].second.nbytes()), 0)
          << a[i].first;
    }
    for (std::size_t g = 0; g < layout.groups().size(); ++g) {  // collective at stage 3
      const Tensor pa = whole.acquire(g), pb = sharded.acquire(g);
      EXPECT_EQ(pa.to_floats(), pb.to_floats()) << "group " << g;
      EXPECT_EQ(pb.to_floats(), full.flat()[g].to_floats()) << "group " << g;
      whole.release(g);
      sharded.release(g);
    }
  }
}

// Loading a Hugging Face model shard by shard (each rank reads only its ranges of the
// safetensors, as the trainer does) gives the state of loading the whole model on every rank.
TEST(Zero, HfWeightsReadShardByShardEqualTheWholeLoad) {
  for (const std::string name : {"llama", "qwen3"}) {  // untied, tied
    SCOPED_TRACE(name);
    const std::filesystem::path dir = std::filesystem::path(ULYSSES_TEST_DATA) / "golden" / name;
    const model::ModelConfig config = model::resolve_model_config(dir.string());
    model::ParamBuffers full(config);
    io::load_hf_weights(dir, full);
    const io::HfWeightReader reader(dir, config);
    Mesh mesh(world(), ParallelConfig{1, world().size(), 1});
    for (int stage = 0; stage <= 3; ++stage) {
      const ZeroConfig zc{stage, stage >= 1, stage == 3};
      ZeroState whole(config, mesh, zc, adamw_config()), sharded(config, mesh, zc, adamw_config());
      whole.set_parameters(full);
      sharded.set_parameters(
          [&](std::size_t g, std::int64_t lo, Tensor out) { reader.read_group_range(g, lo, out); });
      const auto a = whole.state_tensors(), b = sharded.state_tensors();
      ASSERT_EQ(a.size(), b.size());
      for (std::size_t i = 0; i < a.size(); ++i)
        EXPECT_EQ(a[i].second.to_floats(), b[i].second.to_floats())
            << "stage " << stage << " " << a[i].first;
      model::ParamBuffers back(config);
      sharded.gather_parameters(back);  // collective at stage 3
      for (std::size_t g = 0; g < full.flat().size(); ++g)
        EXPECT_EQ(back.flat()[g].to_floats(), full.flat()[g].to_floats())
            << "stage " << stage << " group " << g;
    }
  }
}

TEST(Zero, MeshGroupsFollowTheRankFormula) {
  if (world().size() != 4) GTEST_SKIP() << "needs 4 ranks";
  // replicate 2 x shard 1 x sp 2: rank = (replica * dp_shard + shard) * sp + sp_rank.
  Mesh mesh(world(), ParallelConfig{2, 1, 2});
  const int r = world().rank();
  EXPECT_EQ(mesh.zero_group().world_ranks(), (std::vector<int>{r / 2 * 2, r / 2 * 2 + 1}));
  EXPECT_EQ(mesh.replicate_group().world_ranks(), (std::vector<int>{r % 2, r % 2 + 2}));
}

}  // namespace
}  // namespace ulysses::parallel
