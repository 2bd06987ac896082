// Ulysses sequence parallelism and data parallelism are exactly single-rank training: run under
// mpirun with 1, 2 and 4 ranks; every rank also computes the single-rank reference itself.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "dist_util.h"
#include "test_util.h"
#include "train_util.h"
#include "ulysses/data/packer.h"
#include "ulysses/model/decoder.h"
#include "ulysses/ops/attention.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/parallel/mesh.h"
#include "ulysses/parallel/ulysses_exchange.h"
#include "ulysses/train/trainer.h"

namespace ulysses {
namespace {

using testing::relative_error;
using testing::world;

// A tiny HF model directory with the given head layout (written by each rank for itself).
std::string model_dir(std::int64_t heads, std::int64_t kv_heads, const std::string& type) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ulysses_dist_" + type + std::to_string(heads) + "_" +
                    std::to_string(kv_heads) + "_r" + std::to_string(world().rank()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"model_type": ")" << type << R"(", "hidden_size": 32, "intermediate_size": 48,
       "num_hidden_layers": 2, "num_attention_heads": )"
      << heads << R"(, "num_key_value_heads": )" << kv_heads
      << R"(, "head_dim": 8, "vocab_size": 128, "rms_norm_eps": 1e-6, "rope_theta": 10000})";
  return dir.string();
}

train::TrainConfig base_config(const std::string& model) {
  train::TrainConfig c;
  c.model = model;
  c.max_seq_length = 64;
  c.copy_min_length = 5;
  c.copy_max_length = 20;
  c.max_steps = 3;
  c.learning_rate = 1e-2;
  c.warmup_steps = 1;
  c.weight_decay = 0.1;
  c.output_dir = "";
  c.quiet = true;
  c.seed = 3;
  return c;
}

using testing::train_run;
using testing::TrainResult;

void expect_same_training(const train::TrainConfig& parallel, const std::string& what) {
  auto self = comm::make_self_communicator();
  train::TrainConfig single = parallel;
  const std::int64_t dp = world().size() / parallel.sp_size;
  single.sp_size = 1;
  single.dp_shard_size = 1;
  single.per_device_train_batch_size = parallel.per_device_train_batch_size * dp;
  const TrainResult expected = train_run(single, self.get());
  const TrainResult got = train_run(parallel, &world());
  ASSERT_EQ(got.losses.size(), expected.losses.size());
  for (std::size_t i = 0; i < got.losses.size(); ++i)
    EXPECT_NEAR(got.losses[i], expected.losses[i], 1e-6 * expected.losses[i])
        << what << " step " << i + 1;
  EXPECT_LT(relative_error(got.params, expected.params), 1e-5) << what;
}

struct Layout {
  std::int64_t heads, kv_heads;
  const char* type;
};

TEST(UlyssesTraining, EqualsSingleRankForEveryLayout) {
  // kv heads split (4 kv heads: divisible by sp 2 and 4) and replicated (1 kv head).
  for (const Layout layout :
       {Layout{4, 4, "llama"}, Layout{4, 1, "qwen3"}, Layout{4, 2, "qwen2"}}) {
    const std::string model = model_dir(layout.heads, layout.kv_heads, layout.type);
    for (std::int64_t sp = 1; sp <= world().size(); sp *= 2) {
      if (world().size() % sp != 0) continue;
      for (const bool packing : {true, false}) {
        for (const std::int64_t accumulation : {1, 2}) {
          train::TrainConfig c = base_config(model);
          c.sp_size = sp;
          c.packing = packing;
          c.gradient_accumulation_steps = accumulation;
          c.per_device_train_batch_size = 2;
          const std::string what =
              std::string(layout.type) + " kv " + std::to_string(layout.kv_heads) + " sp " +
              std::to_string(sp) + " dp " + std::to_string(world().size() / sp) +
              (packing ? " packed" : " unpacked") + " ga " + std::to_string(accumulation);
          SCOPED_TRACE(what);
          expect_same_training(c, what);
          if (sp > 1 && packing && accumulation == 1) {
            // The two-part pipelining (opt-in) computes the same.
            c.sp_pipeline = true;
            expect_same_training(c, what + " pipelined");
          }
        }
      }
    }
  }
}

// --grad-reduce-dtype bfloat16: the all-reduce rounds every rank's gradient and the sum to bf16
// (relative 2^-9), so training follows the f32 reduction closely but not exactly: losses within
// 1e-3 and parameters within 1e-3 after 3 steps, and the gradients really went through bf16
// (the parameters differ from the f32 run's).
TEST(UlyssesTraining, Bf16GradientReductionFollowsF32) {
  if (world().size() == 1) GTEST_SKIP() << "one rank: no reduction";
  train::TrainConfig c = base_config(model_dir(4, 2, "qwen2"));
  c.sp_size = world().size();
  c.per_device_train_batch_size = 2;
  const TrainResult f32 = train_run(c, &world());
  c.grad_reduce_dtype = "bfloat16";
  const TrainResult bf16 = train_run(c, &world());
  ASSERT_EQ(bf16.losses.size(), f32.losses.size());
  for (std::size_t i = 0; i < f32.losses.size(); ++i)
    EXPECT_NEAR(bf16.losses[i], f32.losses[i], 1e-3 * f32.losses[i]) << "step " << i + 1;
  const double difference = relative_error(bf16.params, f32.params);
  EXPECT_LT(difference, 1e-3);
  EXPECT_GT(difference, 0.0) << "bf16 reduction left no trace: was it applied?";
}

TEST(ZeroTraining, EveryStageEqualsSingleRank) {
  // sp x dp_shard (ZeRO over both) and dp_replicate (replicas all-reduce their shards).
  const std::string model = model_dir(4, 2, "qwen3");
  struct ZeroLayout {
    std::int64_t sp, replicate;
  };
  for (const ZeroLayout layout : {ZeroLayout{2, 1}, ZeroLayout{1, 2}, ZeroLayout{2, 2}}) {
    if (world().size() % (layout.sp * layout.replicate) != 0) continue;
    for (std::int64_t stage = 0; stage <= 3; ++stage) {
      for (const bool offload : {false, true}) {
        if (offload && stage == 0) continue;
        train::TrainConfig c = base_config(model);
        c.sp_size = layout.sp;
        c.dp_replicate_size = layout.replicate;
        c.zero_stage = stage;
        c.offload_optimizer = offload;
        c.offload_params = offload && stage == 3;
        c.per_device_train_batch_size = 1;
        c.gradient_accumulation_steps = 2;
        const std::string what = "zero " + std::to_string(stage) + (offload ? " offload" : "") +
                                 " sp " + std::to_string(layout.sp) + " replicate " +
                                 std::to_string(layout.replicate);
        SCOPED_TRACE(what);
        auto self = comm::make_self_communicator();
        train::TrainConfig single = c;
        single.sp_size = 1;
        single.dp_replicate_size = 1;
        single.zero_stage = 0;
        single.offload_optimizer = single.offload_params = false;
        single.per_device_train_batch_size = world().size() / c.sp_size;
        const TrainResult expected = train_run(single, self.get());
        const TrainResult got = train_run(c, &world());
        for (std::size_t i = 0; i < got.losses.size(); ++i)
          EXPECT_NEAR(got.losses[i], expected.losses[i], 1e-5 * expected.losses[i]) << what;
        EXPECT_LT(relative_error(got.params, expected.params), 1e-5) << what;
      }
    }
  }
}

TEST(ZeroTraining, Stage3ResumeIsBitExact) {
  train::TrainConfig c = base_config(model_dir(4, 2, "qwen3"));
  c.sp_size = world().size() >= 2 ? 2 : 1;
  c.zero_stage = 3;
  c.max_steps = 4;
  c.per_device_train_batch_size = 1;
  const auto root = std::filesystem::temp_directory_path() / "ulysses_zero_resume";
  if (world().rank() == 0) std::filesystem::remove_all(root);
  world().barrier();
  train::TrainConfig straight = c;
  straight.output_dir = (root / "straight").string();
  const TrainResult expected = train_run(straight, &world());
  c.output_dir = (root / "resumed").string();
  {
    train::Trainer first(c, world());
    for (std::int64_t s = 1; s <= 2; ++s) first.train_step(s);
    first.save_checkpoint(2);
  }
  c.resume_from_checkpoint = "latest";
  const TrainResult resumed = train_run(c, &world());
  ASSERT_EQ(resumed.losses.size(), 2u);
  EXPECT_EQ(resumed.losses[0], expected.losses[2]);
  EXPECT_EQ(resumed.losses[1], expected.losses[3]);
  EXPECT_EQ(resumed.params, expected.params);
  world().barrier();
  if (world().rank() == 0) std::filesystem::remove_all(root);
}

TEST(UlyssesTraining, JsonlDataWithMaskedPromptsEqualsSingleRank) {
  train::TrainConfig c = base_config(model_dir(4, 2, "qwen3"));
  c.data = std::string(ULYSSES_TEST_DATA) + "/tiny_docs.jsonl";
  c.sp_size = world().size() <= 4 ? world().size() : 1;
  c.per_device_train_batch_size = 1;
  c.max_steps = 4;  // more documents than the file: wraps into a second, reshuffled epoch
  expect_same_training(c, "jsonl sp " + std::to_string(c.sp_size));
}

TEST(UlyssesLayout, ExchangesAreInversesAndSliceTheFullTensor) {
  comm::Communicator& group = world();
  const std::int64_t P = group.size(), r = group.rank(), T = 3, D = 5;
  for (const std::int64_t kv_heads : {std::int64_t{4}, std::int64_t{1}, std::int64_t{2}}) {
    if (kv_heads % P != 0 && P % kv_heads != 0) continue;
    Rng rng(17 + static_cast<std::uint64_t>(kv_heads));  // same full tensor on every rank
    const Tensor full = testing::random_tensor({P * T, kv_heads, D}, rng);
    const Tensor local = full.rows(r * T, (r + 1) * T).clone();
    const auto chunks = parallel::kv_head_chunks(kv_heads, P);
    Context ctx;
    const Tensor heads =
        parallel::sequence_to_heads(ctx, group, local, chunks.first_head, chunks.chunk);
    // Equals the full tensor's slice of this rank's heads.
    const auto f = full.to_floats();
    const auto h = heads.to_floats();
    for (std::int64_t t = 0; t < P * T; ++t)
      for (std::int64_t c = 0; c < chunks.chunk; ++c)
        for (std::int64_t d = 0; d < D; ++d)
          ASSERT_EQ(
              h[static_cast<std::size_t>((t * chunks.chunk + c) * D + d)],
              f[static_cast<std::size_t>(
                  (t * kv_heads + chunks.first_head[static_cast<std::size_t>(r)] + c) * D + d)]);
    if (kv_heads % P == 0) {  // split: head -> sequence restores the shard exactly
      Tensor back = testing::poisoned({T, kv_heads, D});
      parallel::heads_to_sequence(ctx, group, heads, chunks.first_head, chunks.chunk, back, false);
      EXPECT_EQ(back.to_floats(), local.to_floats());
    } else {  // replicated: accumulating back sums the P / kv replicas of each head
      Tensor back = Tensor::zeros({T, kv_heads, D}, DType::f32);
      parallel::heads_to_sequence(ctx, group, heads, chunks.first_head, chunks.chunk, back, true);
      const auto l = local.to_floats();
      const auto b = back.to_floats();
      for (std::size_t i = 0; i < l.size(); ++i)
        ASSERT_FLOAT_EQ(b[i], static_cast<float>(P / kv_heads) * l[i]);
    }
  }
}

// Rank r's shard (T tokens) of a sequence with the given document boundaries, for calling a
// strategy directly: attention sees only the boundaries, so the tokens are placeholders.
data::SequenceShard attention_shard(const std::vector<std::int32_t>& cu_seqlens, std::int64_t r,
                                    std::int64_t T) {
  const auto S = static_cast<std::size_t>(cu_seqlens.back());
  data::PackedSequence seq;
  seq.input_ids.assign(S, 0);
  seq.position_ids.assign(S, 0);
  seq.shift_labels.assign(S, -100);
  seq.cu_seqlens = cu_seqlens;
  return data::make_shard(seq, r * T, (r + 1) * T);
}

TEST(UlyssesAttention, PackedDocumentsCrossingShardsMatchEachDocumentAlone) {
  comm::Communicator& group = world();
  const std::int64_t P = group.size(), r = group.rank();
  const std::int64_t S = 16, H = 4, Hkv = 2, D = 8;
  if (H % P != 0) return;
  Rng rng(5);
  const Tensor q = testing::random_tensor({S, H, D}, rng);
  const Tensor k = testing::random_tensor({S, Hkv, D}, rng);
  const Tensor v = testing::random_tensor({S, Hkv, D}, rng);
  // Documents of 5 and 11 tokens: the boundary at 5 falls inside a shard for P = 2 and 4.
  const std::int64_t T = S / P;
  const auto shard = attention_shard({0, 5, 16}, r, T);
  Context ctx;
  ctx.attention_block = 4;
  auto ulysses = parallel::make_ulysses_attention(group, H, Hkv);
  parallel::AttentionSaved saved;
  Tensor out = testing::poisoned({T, H, D});
  ulysses->forward(ctx, shard, q.rows(r * T, (r + 1) * T).clone(),
                   k.rows(r * T, (r + 1) * T).clone(), v.rows(r * T, (r + 1) * T).clone(), 0.35f,
                   out, saved);
  // Reference: each document alone through the plain op.
  Tensor expected = Tensor::empty({S, H, D}, DType::f32);
  for (const auto& [begin, end] : {std::pair<std::int64_t, std::int64_t>{0, 5}, {5, 16}}) {
    const std::int64_t n = end - begin;
    Tensor lse = Tensor::empty({H, n}, DType::f32);
    ops::attention_forward(ctx, q.rows(begin, end).clone(), k.rows(begin, end).clone(),
                           v.rows(begin, end).clone(),
                           Tensor::from_ints({0, static_cast<std::int32_t>(n)}, {2}), 0.35f,
                           expected.rows(begin, end), lse);
  }
  EXPECT_LT(relative_error(out, expected.rows(r * T, (r + 1) * T).clone()), 1e-6);
}

// Checkpointing drops the head-sharded copies between forward and recompute; restore rebuilds
// them bit for bit from the local q, k, v and output.
TEST(UlyssesAttention, RestoreRebuildsWhatCheckpointingDrops) {
  comm::Communicator& group = world();
  const std::int64_t P = group.size(), r = group.rank();
  const std::int64_t S = 16, H = 4, D = 8, T = S / P;
  for (const std::int64_t Hkv : {std::int64_t{2}, std::int64_t{1}}) {
    if (H % P != 0 || (Hkv % P != 0 && P % Hkv != 0)) continue;
    for (const bool pipelined : {false, true}) {
      auto ulysses = parallel::make_ulysses_attention(group, H, Hkv, pipelined);
      SCOPED_TRACE(ulysses->name() + ", kv heads " + std::to_string(Hkv));
      Rng rng(11);
      const Tensor q = testing::random_tensor({S, H, D}, rng);
      const Tensor k = testing::random_tensor({S, Hkv, D}, rng);
      const Tensor v = testing::random_tensor({S, Hkv, D}, rng);
      const auto shard = attention_shard({0, 7, 16}, r, T);
      Context ctx;
      const Tensor ql = q.rows(r * T, (r + 1) * T).clone(), kl = k.rows(r * T, (r + 1) * T).clone(),
                   vl = v.rows(r * T, (r + 1) * T).clone();
      Tensor out = Tensor::empty({T, H, D}, DType::f32);
      parallel::AttentionSaved saved;
      ulysses->forward(ctx, shard, ql, kl, vl, 0.35f, out, saved);
      const parallel::AttentionSaved original{saved.lse, saved.q.clone(), saved.k.clone(),
                                              saved.v.clone(), saved.out.clone()};
      ulysses->drop_rebuildable(saved);
      EXPECT_FALSE(saved.q.defined() || saved.k.defined() || saved.v.defined() ||
                   saved.out.defined());
      EXPECT_TRUE(saved.lse.defined());
      ulysses->restore(ctx, shard, ql, kl, vl, out, saved);
      EXPECT_EQ(saved.q.to_floats(), original.q.to_floats());
      EXPECT_EQ(saved.k.to_floats(), original.k.to_floats());
      EXPECT_EQ(saved.v.to_floats(), original.v.to_floats());
      EXPECT_EQ(saved.out.to_floats(), original.out.to_floats());
    }
  }
}

TEST(UlyssesTraining, GradientCheckpointingIsBitwiseIdentical) {
  if (world().size() == 1) GTEST_SKIP() << "one rank: tests/model_test.cc";
  for (const std::int64_t kv_heads : {4, 1}) {
    train::TrainConfig c = base_config(model_dir(4, kv_heads, "qwen3"));
    c.sp_size = world().size();
    const TrainResult plain = train_run(c, &world());
    c.gradient_checkpointing = true;
    const TrainResult checkpointed = train_run(c, &world());
    EXPECT_EQ(plain.losses, checkpointed.losses) << "kv heads " << kv_heads;
    EXPECT_TRUE(plain.params == checkpointed.params) << "kv heads " << kv_heads;
    // --checkpoint-layers 1: the second layer keeps everything, its head-sharded copies too
    // (no drop, no restore exchanges); the first is checkpointed. The same bits.
    c.checkpoint_layers = 1;
    const TrainResult partly = train_run(c, &world());
    EXPECT_EQ(plain.losses, partly.losses) << "kv heads " << kv_heads;
    EXPECT_TRUE(plain.params == partly.params) << "kv heads " << kv_heads;
  }
}

TEST(UlyssesAttention, PipeliningIsOptIn) {
  comm::Communicator& group = world();
  // 4 query heads and 2 kv heads: an even chunk of each on 1 or 2 ranks, so two parts fit.
  if (4 % (2 * group.size()) != 0) GTEST_SKIP() << "odd head chunks: one part anyway";
  EXPECT_EQ(parallel::make_ulysses_attention(group, 4, 2)->name(), "ulysses");
  EXPECT_EQ(parallel::make_ulysses_attention(group, 4, 2, /*pipeline=*/true)->name(),
            "ulysses (pipelined: 2 head parts)");
}

TEST(UlyssesGradients, ZeroTokenRankMatchesSingleRank) {
  // The second half of the sequence is padding: with sp = world size >= 2 the last rank's shard
  // has no valid label. Loss and gradients equal one rank's; nothing is NaN.
  comm::Communicator& group = world();
  const std::int64_t P = group.size(), r = group.rank();
  const model::ModelConfig config = model::resolve_model_config(model_dir(4, 2, "qwen3"));
  model::ParamBuffers params(config);
  model::init_weights(params, 11, 0.2f);
  data::PackedSequence seq;
  data::Document doc;
  for (int i = 0; i < 8; ++i) doc.tokens.push_back(3 + i * 7 % 50);
  data::append_document(seq, doc);
  data::pad_sequence(seq, 16);
  const double n = static_cast<double>(seq.valid_labels());
  Context ctx;
  auto ulysses = parallel::make_ulysses_attention(group, 4, 2);
  auto local = parallel::make_local_attention();
  model::Decoder sharded(config, *ulysses), single(config, *local);

  model::ParamBuffers expected_grads(config), grads(config);
  const double expected_loss =
      single
          .forward_backward(ctx, params, &expected_grads, data::make_full_shard(seq),
                            static_cast<float>(1 / n), {})
          .loss_sum();
  const std::int64_t T = 16 / P;
  const auto shard = data::make_shard(seq, r * T, (r + 1) * T);
  const auto local_loss =
      sharded.forward_backward(ctx, params, &grads, shard, static_cast<float>(1 / n), {});
  if (P > 1 && r == P - 1) {
    EXPECT_EQ(local_loss.valid_count(), 0);
  }
  Tensor loss = Tensor::from_floats({static_cast<float>(local_loss.loss_sum())}, {1});
  group.all_reduce(loss, comm::ReduceOp::sum);
  EXPECT_NEAR(loss.data<float>()[0], expected_loss, 1e-5 * expected_loss);
  for (std::size_t i = 0; i < grads.flat().size(); ++i) {
    group.all_reduce(grads.flat()[i], comm::ReduceOp::sum);
    for (const float x : grads.flat()[i].to_floats()) ASSERT_FALSE(std::isnan(x));
    EXPECT_LT(relative_error(grads.flat()[i], expected_grads.flat()[i]), 1e-5) << i;
  }
}

TEST(Mesh, GroupsAreContiguousRanks) {
  const model::ModelConfig config = model::resolve_model_config(model_dir(4, 2, "qwen3"));
  for (std::int64_t sp = 1; sp <= world().size(); sp *= 2) {
    if (world().size() % sp != 0) continue;
    const auto layout = parallel::resolve_parallel_config({sp, 0, 1}, world().size(), config);
    EXPECT_EQ(layout.dp_shard_size, world().size() / sp);
    parallel::Mesh mesh(world(), layout);
    EXPECT_EQ(mesh.sp_rank(), world().rank() % sp);
    EXPECT_EQ(mesh.dp_index(), world().rank() / sp);
    const auto members = mesh.sp_group().world_ranks();
    for (std::int64_t i = 0; i < sp; ++i)
      EXPECT_EQ(members[static_cast<std::size_t>(i)], world().rank() / sp * sp + i);
  }
}

}  // namespace
}  // namespace ulysses
