// Ring and hybrid (Ulysses x ring) sequence parallelism are exactly single-rank attention and
// training: run under mpirun with 1, 2, 4 and 8 ranks (8 oversubscribed; see CMakeLists.txt);
// every rank also computes the single-rank reference itself.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "dist_util.h"
#include "test_util.h"
#include "train_util.h"
#include "ulysses/data/sequence.h"
#include "ulysses/ops/attention.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/parallel/mesh.h"
#include "ulysses/train/train_config.h"
#include "ulysses/train/trainer.h"

namespace ulysses {
namespace {

using testing::relative_error;
using testing::train_run;
using testing::TrainResult;
using testing::world;

// The (ring size, Ulysses degree) grids of the world: R x U = world size, R > 1.
struct Grid {
  std::int64_t ring, ulysses;
};
std::vector<Grid> grids() {
  std::vector<Grid> out;
  const std::int64_t P = world().size();
  for (std::int64_t R = P; R > 1; R /= 2)
    if (P % R == 0) out.push_back({R, P / R});
  return out;
}
std::string grid_name(const Grid& g) {
  return g.ulysses == 1 ? "ring " + std::to_string(g.ring)
                        : "hybrid " + std::to_string(g.ulysses) + "x" + std::to_string(g.ring);
}

// A whole sequence with the given document boundaries; attention sees only the boundaries, so
// the tokens are placeholders.
data::PackedSequence placeholder_sequence(const std::vector<std::int32_t>& cu_seqlens) {
  const auto S = static_cast<std::size_t>(cu_seqlens.back());
  data::PackedSequence seq;
  seq.input_ids.assign(S, 0);
  seq.position_ids.assign(S, 0);
  seq.shift_labels.assign(S, -100);
  seq.cu_seqlens = cu_seqlens;
  return seq;
}

// Rows of `full` ([S, H, D]) at the global positions of `ranges`, in local order.
Tensor gather_rows(const Tensor& full, const std::vector<data::TokenRange>& ranges) {
  std::int64_t T = 0;
  for (const auto& r : ranges) T += r.length();
  Tensor out = Tensor::empty({T, full.dim(1), full.dim(2)}, full.dtype());
  std::int64_t at = 0;
  for (const auto& r : ranges) {
    out.rows(at, at + r.length()).copy_from(full.rows(r.begin, r.end));
    at += r.length();
  }
  return out;
}

// Forwards every collective to another communicator but keeps the interface's default
// send_recv_start (blocking send and recv ordered by rank parity).
class DefaultSendRecv final : public comm::Communicator {
 public:
  explicit DefaultSendRecv(comm::Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  std::string backend() const override { return inner_.backend(); }
  std::vector<int> world_ranks() const override { return inner_.world_ranks(); }
  void all_to_all(const Tensor& send, Tensor recv) override { inner_.all_to_all(send, recv); }
  void all_gather(const Tensor& send, Tensor recv) override { inner_.all_gather(send, recv); }
  void reduce_scatter(const Tensor& send, Tensor recv, comm::ReduceOp op) override {
    inner_.reduce_scatter(send, recv, op);
  }
  void all_reduce(Tensor data, comm::ReduceOp op) override { inner_.all_reduce(data, op); }
  void broadcast(Tensor data, int root) override { inner_.broadcast(data, root); }
  void send(const Tensor& data, int peer, int tag) override { inner_.send(data, peer, tag); }
  void recv(Tensor data, int peer, int tag) override { inner_.recv(data, peer, tag); }
  void barrier() override { inner_.barrier(); }
  std::unique_ptr<comm::Communicator> split(int color, int key) const override {
    return inner_.split(color, key);
  }

 private:
  comm::Communicator& inner_;
};

// Every ring shift s: rank r sends (r + 1) * 3 values r * 100 + i to r + s and receives
// rank (r - s)'s, for the MPI backend and for the interface's default.
TEST(SendRecv, RingShiftsDeliverEveryRanksBlock) {
  DefaultSendRecv fallback(world());
  for (comm::Communicator* group : {&world(), static_cast<comm::Communicator*>(&fallback)}) {
    const int P = group->size(), r = group->rank();
    auto block = [](int rank) {
      std::vector<float> values(static_cast<std::size_t>((rank + 1) * 3));
      for (std::size_t i = 0; i < values.size(); ++i)
        values[i] = static_cast<float>(rank * 100 + i);
      return values;
    };
    for (int s = 1; s < P; ++s) {
      const int to = (r + s) % P, from = (r - s + P) % P;
      const Tensor send = Tensor::from_floats(block(r), {(r + 1) * 3});
      Tensor recv = testing::poisoned({(from + 1) * 3});
      auto work = group->send_recv_start(send, to, recv, from, 7);
      work->wait();
      EXPECT_EQ(recv.to_floats(), block(from)) << "shift " << s << " rank " << r;
    }
  }
  // A group of one: a copy.
  auto self = comm::make_self_communicator();
  const Tensor x = Tensor::from_floats({1, 2, 3}, {3});
  Tensor y = testing::poisoned({3});
  self->send_recv(x, 0, y, 0, 0);
  EXPECT_EQ(y.to_floats(), x.to_floats());
  testing::expect_error([&] { self->send_recv(x, 1, y, 0, 0); }, "outside a group of one");
}

TEST(SendRecv, WrongReceiveSizeThrows) {
  if (world().size() == 1) GTEST_SKIP() << "one rank: no peer";
  const int P = world().size(), r = world().rank();
  const Tensor send = Tensor::zeros({4}, DType::f32);
  Tensor recv = Tensor::zeros({8}, DType::f32);  // expects more than arrives
  testing::expect_error([&] { world().send_recv(send, (r + 1) % P, recv, (r + P - 1) % P, 3); },
                        "got 4 elements");
}

TEST(Zigzag, RangesCoverTheSequenceOnceInBalancedChunks) {
  for (const Grid g : {Grid{2, 1}, Grid{4, 1}, Grid{2, 2}, Grid{2, 4}, Grid{4, 2}, Grid{2, 3}}) {
    const std::int64_t S = 2 * g.ring * g.ulysses * 3;
    std::vector<int> seen(static_cast<std::size_t>(S), 0);
    for (std::int64_t r = 0; r < g.ring * g.ulysses; ++r) {
      std::int64_t n = 0;
      for (const auto& range : data::zigzag_ranges(S, r, g.ring, g.ulysses)) {
        for (std::int64_t t = range.begin; t < range.end; ++t) ++seen[static_cast<std::size_t>(t)];
        n += range.length();
      }
      EXPECT_EQ(n, S / (g.ring * g.ulysses)) << grid_name(g) << " rank " << r;
    }
    for (const int s : seen) EXPECT_EQ(s, 1) << grid_name(g);
  }
  // Ring of 2 over 8 tokens: chunks of 2; rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2.
  EXPECT_EQ(data::zigzag_ranges(8, 0, 2, 1), (std::vector<data::TokenRange>{{0, 2}, {6, 8}}));
  EXPECT_EQ(data::zigzag_ranges(8, 1, 2, 1), (std::vector<data::TokenRange>{{2, 4}, {4, 6}}));
  // Hybrid 2 x 2 over 8 tokens: ring position 0 (chunks 0, 3) split over SP ranks 0 and 1.
  EXPECT_EQ(data::zigzag_ranges(8, 1, 2, 2), (std::vector<data::TokenRange>{{6, 8}}));
  testing::expect_error([] { data::zigzag_ranges(10, 0, 2, 2); }, "pad it to a multiple of 8");
}

// The strategy on this rank's zigzag slice equals local attention over the whole sequence:
// output and the gradients of q, k, v (including after drop_rebuildable + restore).
TEST(RingAttention, EqualsLocalAttentionOnPackedDocuments) {
  comm::Communicator& sp = world();
  const std::int64_t P = sp.size(), rank = sp.rank();
  // Documents of uneven lengths crossing chunk borders and shorter than a chunk, padding last.
  const std::int64_t S = 2 * P * 6, H = 4, D = 8;
  std::vector<std::int32_t> cu = {0, 1, 9, 10, 23};
  while (cu.back() + 7 < S) cu.push_back(cu.back() + 7);
  cu.push_back(static_cast<std::int32_t>(S));
  const data::PackedSequence seq = placeholder_sequence(cu);
  for (const Grid g : grids()) {
    for (const std::int64_t kv_heads : {std::int64_t{2}, std::int64_t{1}}) {
      if (H % g.ulysses != 0) continue;
      SCOPED_TRACE(grid_name(g) + " kv " + std::to_string(kv_heads));
      Rng rng(31 + static_cast<std::uint64_t>(kv_heads));  // the same full tensors everywhere
      const Tensor q = testing::random_tensor({S, H, D}, rng, 1.5f);
      const Tensor k = testing::random_tensor({S, kv_heads, D}, rng, 1.5f);
      const Tensor v = testing::random_tensor({S, kv_heads, D}, rng);
      const Tensor dout = testing::random_tensor({S, H, D}, rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(D));
      Context ctx;
      ctx.attention_block = 4;
      // Reference: the whole sequence on this rank.
      Tensor out_full = Tensor::empty({S, H, D}, DType::f32);
      Tensor lse_full = Tensor::empty({H, S}, DType::f32);
      ops::attention_forward(ctx, q, k, v,
                             Tensor::from_ints(cu, {static_cast<std::int64_t>(cu.size())}), scale,
                             out_full, lse_full);
      Tensor dq_full = Tensor::zeros(q.shape(), DType::f32);
      Tensor dk_full = Tensor::zeros(k.shape(), DType::f32);
      Tensor dv_full = Tensor::zeros(v.shape(), DType::f32);
      ops::attention_backward(ctx, q, k, v,
                              Tensor::from_ints(cu, {static_cast<std::int64_t>(cu.size())}), scale,
                              out_full, lse_full, dout, dq_full, dk_full, dv_full);
      // The grid: Ulysses groups of consecutive ranks, rings across them.
      auto ulysses =
          sp.split(static_cast<int>(rank / g.ulysses), static_cast<int>(rank % g.ulysses));
      auto ring = sp.split(static_cast<int>(rank % g.ulysses), static_cast<int>(rank / g.ulysses));
      auto strategy = parallel::make_ring_attention(*ulysses, *ring, H, kv_heads);
      const auto ranges = data::zigzag_ranges(S, rank, g.ring, g.ulysses);
      const data::SequenceShard shard = data::make_shard(seq, ranges);
      const Tensor q_local = gather_rows(q, ranges), k_local = gather_rows(k, ranges);
      const Tensor v_local = gather_rows(v, ranges), dout_local = gather_rows(dout, ranges);
      Tensor out = testing::poisoned(q_local.shape());
      model::AttentionSaved saved;
      strategy->forward(ctx, shard, q_local, k_local, v_local, scale, out, saved);
      EXPECT_LE(relative_error(out, gather_rows(out_full, ranges)), 1e-5);
      for (const bool rebuild : {false, true}) {
        if (rebuild) {
          strategy->drop_rebuildable(saved);
          strategy->restore(ctx, shard, q_local, k_local, v_local, out, saved);
        }
        // NaN: the strategy writes the gradients (AttentionStrategy::backward), never reads them.
        Tensor dq = testing::poisoned(q_local.shape());
        Tensor dk = testing::poisoned(k_local.shape());
        Tensor dv = testing::poisoned(v_local.shape());
        strategy->backward(ctx, shard, q_local, k_local, v_local, scale, out, saved, dout_local, dq,
                           dk, dv);
        EXPECT_LE(relative_error(dq, gather_rows(dq_full, ranges)), 1e-5) << "rebuilt " << rebuild;
        EXPECT_LE(relative_error(dk, gather_rows(dk_full, ranges)), 1e-5) << "rebuilt " << rebuild;
        EXPECT_LE(relative_error(dv, gather_rows(dv_full, ranges)), 1e-5) << "rebuilt " << rebuild;
      }
    }
  }
}

TEST(RingAttention, RefusesANonZigzagShard) {
  if (world().size() == 1) GTEST_SKIP() << "one rank: no ring";
  comm::Communicator& sp = world();
  auto ulysses = sp.split(sp.rank(), 0);  // groups of one
  auto strategy = parallel::make_ring_attention(*ulysses, sp, 2, 1);
  const std::int64_t P = sp.size(), S = 4 * P;
  const auto seq = placeholder_sequence({0, static_cast<std::int32_t>(S)});
  const auto shard = data::make_shard(seq, sp.rank() * 4, sp.rank() * 4 + 4);  // contiguous
  Tensor q = Tensor::zeros({4, 2, 8}, DType::f32), kv = Tensor::zeros({4, 1, 8}, DType::f32);
  model::AttentionSaved saved;
  testing::expect_error(
      [&] { strategy->forward(Context{}, shard, q, kv, kv, 1.0f, q.clone(), saved); },
      "zigzag slice");
}

// A tiny HF model directory with the given head layout (written by each rank for itself).
std::string model_dir(std::int64_t heads, std::int64_t kv_heads, const std::string& type) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("ulysses_ring_" + type + std::to_string(heads) + "_" +
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
  c.max_seq_length = 48;  // a multiple of 2 x sp for sp 1, 2, 4, 8 (chunks of 3 to 24 tokens)
  c.copy_min_length = 3;  // documents shorter than a chunk, and crossing chunk borders
  c.copy_max_length = 19;
  c.max_steps = 3;
  c.learning_rate = 1e-2;
  c.warmup_steps = 1;
  c.weight_decay = 0.1;
  c.output_dir = "";
  c.quiet = true;
  c.seed = 5;
  return c;
}

// Same per-step losses (relative 1e-5) and close parameters as one rank with the whole batch.
void expect_same_training(const train::TrainConfig& parallel, const std::string& what) {
  auto self = comm::make_self_communicator();
  train::TrainConfig single = parallel;
  const std::int64_t dp = world().size() / parallel.sp_size;
  single.sp_size = 1;
  single.sp_backend = "ulysses";
  single.ring_size = 0;
  single.dp_shard_size = 1;
  single.dp_replicate_size = 1;
  single.zero_stage = 0;
  single.per_device_train_batch_size = parallel.per_device_train_batch_size * dp;
  const TrainResult expected = train_run(single, self.get());
  const TrainResult got = train_run(parallel, &world());
  ASSERT_EQ(got.losses.size(), expected.losses.size()) << what;
  for (std::size_t i = 0; i < got.losses.size(); ++i)
    EXPECT_NEAR(got.losses[i], expected.losses[i], 1e-5 * expected.losses[i])
        << what << " step " << i + 1;
  EXPECT_LT(relative_error(got.params, expected.params), 1e-5) << what;
}

train::TrainConfig grid_config(const std::string& model, const Grid& g) {
  train::TrainConfig c = base_config(model);
  c.sp_size = g.ring * g.ulysses;
  c.sp_backend = g.ulysses == 1 ? "ring" : "hybrid";
  c.ring_size = g.ulysses == 1 ? 0 : g.ring;
  c.per_device_train_batch_size = 2;
  return c;
}

TEST(RingTraining, EqualsSingleRankForEveryGrid) {
  // 4 query heads on 2 kv heads (qwen2: sp > kv heads) and on 1 (qwen3, q/k-norm); at 8 ranks
  // the hybrid 4 x 2 has sp larger than the query heads.
  for (const auto& [kv_heads, type] : {std::pair<std::int64_t, const char*>{2, "qwen2"},
                                       std::pair<std::int64_t, const char*>{1, "qwen3"}}) {
    const std::string model = model_dir(4, kv_heads, type);
    for (const Grid g : grids()) {
      if (4 % g.ulysses != 0) continue;
      for (const bool packing : {true, false}) {
        train::TrainConfig c = grid_config(model, g);
        c.packing = packing;
        const std::string what = grid_name(g) + " " + type + (packing ? " packed" : " unpacked");
        SCOPED_TRACE(what);
        expect_same_training(c, what);
      }
    }
  }
}

TEST(RingTraining, DataParallelZero3AndCheckpointing) {
  // Ring / hybrid inside SP groups of half the world, two data-parallel groups, ZeRO-3 over
  // dp_shard x sp, with gradient checkpointing (drop and restore) and accumulation.
  const std::int64_t P = world().size();
  if (P < 4) GTEST_SKIP() << "needs 4 ranks";
  const std::string model = model_dir(4, 2, "qwen2");
  for (const Grid g : {Grid{P / 2, 1}, Grid{2, P / 4}}) {
    if (g.ring * g.ulysses < 2 || 4 % g.ulysses != 0) continue;
    train::TrainConfig c = grid_config(model, g);
    c.zero_stage = 3;
    c.gradient_checkpointing = true;
    c.gradient_accumulation_steps = 2;
    c.per_device_train_batch_size = 1;
    const std::string what = grid_name(g) + " dp 2 zero 3 checkpointing";
    SCOPED_TRACE(what);
    expect_same_training(c, what);
  }
}

TEST(RingTraining, EvaluationEqualsSingleRank) {
  // The evaluator shards like training (zigzag), pads like training (2 x sp), and its loss is
  // the single rank's; unpacked, so padding-only sequences and short ones occur.
  if (world().size() < 2) GTEST_SKIP() << "one rank: no ring";
  for (const Grid g : grids()) {
    if (4 % g.ulysses != 0) continue;
    for (const bool packing : {true, false}) {
      train::TrainConfig c = grid_config(model_dir(4, 2, "qwen2"), g);
      c.eval_data = std::string(ULYSSES_TEST_DATA) + "/tiny_docs.jsonl";
      c.per_device_eval_batch_size = 2;
      c.packing = packing;
      auto self = comm::make_self_communicator();
      train::TrainConfig single = c;
      single.sp_size = 1;
      single.sp_backend = "ulysses";
      single.ring_size = 0;
      const std::string what = grid_name(g) + (packing ? " packed" : " unpacked");
      const train::EvalMetrics expected = train::Trainer(single, *self).evaluate(0);
      const train::EvalMetrics got = train::Trainer(c, world()).evaluate(0);
      EXPECT_EQ(got.valid_labels, expected.valid_labels) << what;
      EXPECT_NEAR(got.loss, expected.loss, 1e-6 * expected.loss) << what;
    }
  }
}

TEST(RingTraining, PlanNamesTheStrategyAndTheGrid) {
  if (world().size() < 2) GTEST_SKIP() << "one rank: no ring";
  for (const Grid g : grids()) {
    if (4 % g.ulysses != 0) continue;
    const train::Trainer trainer(grid_config(model_dir(4, 2, "qwen2"), g), world());
    const std::string plan = trainer.plan();
    const std::string strategy =
        g.ulysses == 1 ? "attention ring (ring " + std::to_string(g.ring) + ", zigzag)"
                       : "attention hybrid (Ulysses " + std::to_string(g.ulysses) + " x ring " +
                             std::to_string(g.ring) + ", zigzag)";
    EXPECT_NE(plan.find(strategy), std::string::npos) << plan;
    EXPECT_NE(plan.find("zigzag: ring rank i holds chunks i and"), std::string::npos) << plan;
  }
}

TEST(RingLayout, MeshPrintsTheGridAndChecksIt) {
  const int P = world().size();
  if (P < 4) GTEST_SKIP() << "needs 4 ranks";
  parallel::Mesh mesh(world(), {P, 1, 1, 2});
  EXPECT_EQ(mesh.ring_group().size(), 2);
  EXPECT_EQ(mesh.ulysses_group().size(), P / 2);
  const std::string text = mesh.describe();
  EXPECT_NE(text.find("hybrid = Ulysses " + std::to_string(P / 2) + " x ring 2"), std::string::npos)
      << text;
  EXPECT_NE(text.find("rings (K/V blocks passed to the next): [0 " + std::to_string(P / 2) + "]"),
            std::string::npos)
      << text;
  model::ModelConfig m;
  m.num_attention_heads = 4;
  m.num_key_value_heads = 2;
  testing::expect_error(
      [&] {
        parallel::resolve_parallel_config({4, 0, 1, 3}, 4, m);
      },
      "--ring-size 3 does not divide --sp-size 4");
  m.num_attention_heads = 6;
  m.num_key_value_heads = 6;
  testing::expect_error(
      [&] {
        parallel::resolve_parallel_config({8, 0, 1, 2}, 8, m);
      },
      "the Ulysses degree 4 (--sp-size 8 / --ring-size 2) does not divide");
  // A pure ring has no head limit: sp 8 over 6 heads.
  EXPECT_NO_THROW(parallel::resolve_parallel_config({8, 0, 1, 8}, 8, m));
}

}  // namespace
}  // namespace ulysses
