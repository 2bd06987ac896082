// ZeRO configuration checks, the per-rank memory formula and single-rank state round trips.
// (Training equivalence across ranks: tests/dist/zero_test.cc.)
#include "ulysses/parallel/zero.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <string>

namespace ulysses::parallel {
namespace {

std::string error_of(const ZeroConfig& c) {
  try {
    validate_zero_config(c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ZeroConfigTest, AcceptsValidCombinations) {
  for (int stage = 0; stage <= 3; ++stage) EXPECT_EQ(error_of({stage, false, false}), "");
  for (int stage = 1; stage <= 3; ++stage) EXPECT_EQ(error_of({stage, true, false}), "");
  EXPECT_EQ(error_of({3, true, true}), "");
  EXPECT_EQ(error_of({3, false, true}), "");
  for (const int stage : {2, 3}) {
    ZeroConfig c{stage, true, stage == 3};
    c.offload_gradients = true;
    EXPECT_EQ(error_of(c), "");
  }
}

TEST(ZeroConfigTest, RefusesInvalidCombinationsNamingTheFlags) {
  for (const int stage : {-1, 4}) {
    const std::string e = error_of({stage, false, false});
    EXPECT_NE(e.find("--zero-stage"), std::string::npos) << e;
    EXPECT_NE(e.find(std::to_string(stage)), std::string::npos) << e;
  }
  for (const int stage : {0, 1, 2}) {
    const std::string e = error_of({stage, false, true});
    EXPECT_NE(e.find("--offload-params"), std::string::npos) << e;
    EXPECT_NE(e.find("--zero-stage 3"), std::string::npos) << e;
  }
  const std::string e = error_of({0, true, false});
  EXPECT_NE(e.find("--offload-optimizer"), std::string::npos) << e;
  EXPECT_NE(e.find("--zero-stage"), std::string::npos) << e;
  // The gradient shards go to the host AdamW: stage >= 2 and --offload-optimizer.
  for (const auto& [stage, optimizer] : {std::pair{1, true}, std::pair{2, false},
                                        std::pair{3, false}, std::pair{0, false}}) {
    ZeroConfig c{stage, optimizer, false};
    c.offload_gradients = true;
    const std::string g = error_of(c);
    EXPECT_NE(g.find("--offload-gradients"), std::string::npos) << g;
    EXPECT_NE(g.find("--zero-stage 2 or 3 and --offload-optimizer"), std::string::npos) << g;
  }
}

// Llama-3-8B's parameter groups, written out by hand.
struct Llama8bGroups {
  std::int64_t C = 4096, I = 14336, V = 128256, L = 32, q = 32 * 128, kv = 8 * 128;
  std::int64_t embed() const { return V * C; }
  std::int64_t layer() const { return 2 * C + C * q + 2 * C * kv + q * C + 3 * C * I; }
  std::int64_t final_group() const { return C + V * C; }
  std::int64_t total() const { return embed() + L * layer() + final_group(); }
  // Sum over groups of ceil(numel / Z).
  std::int64_t shard(std::int64_t Z) const {
    auto s = [Z](std::int64_t n) { return (n + Z - 1) / Z; };
    return s(embed()) + L * s(layer()) + s(final_group());
  }
};

TEST(ZeroMemoryFormulaTest, Llama3_8bEveryStage) {
  const model::ModelConfig config = model::preset_config("llama-3-8b");
  const Llama8bGroups g;
  const std::int64_t N = g.total();
  ASSERT_EQ(N, 8030261248);  // the published parameter count of Llama-3-8B
  ASSERT_EQ(N, model::parameter_count(config));
  // Z = 4 divides every group: the table's N/Z exactly.
  const ZeroMemory s0 = zero_memory_formula(config, 0, 4);
  EXPECT_EQ(s0.params, 4 * N);
  EXPECT_EQ(s0.grads, 4 * N);
  EXPECT_EQ(s0.optimizer, 8 * N);
  EXPECT_EQ(s0.master, 0);
  const ZeroMemory s1 = zero_memory_formula(config, 1, 4);
  EXPECT_EQ(s1.params, 4 * N);
  EXPECT_EQ(s1.grads, 4 * N);
  EXPECT_EQ(s1.optimizer, 8 * N / 4);
  const ZeroMemory s2 = zero_memory_formula(config, 2, 4);
  EXPECT_EQ(s2.params, 4 * N);
  EXPECT_EQ(s2.grads, 4 * N / 4);
  EXPECT_EQ(s2.optimizer, 8 * N / 4);
  const ZeroMemory s3 = zero_memory_formula(config, 3, 4);
  EXPECT_EQ(s3.params, N);  // 4N / 4: about 30 GiB per rank for the whole fp32 state at 4 ranks
  EXPECT_EQ(s3.grads, N);
  EXPECT_EQ(s3.optimizer, 2 * N);
  EXPECT_EQ(s3.total(), 4 * N);
  EXPECT_EQ(s3.offloaded, 0);
  // Transient bound: the largest group here is the final group (norm + untied LM head, padded
  // to Z = 4: already a multiple): three f32 gradient buffers at stage 2, plus three gathered
  // copies at stage 3.
  const std::int64_t largest = std::max({g.embed(), g.layer(), g.final_group()});
  ASSERT_EQ(largest, g.final_group());
  EXPECT_EQ(s0.transient, 0);
  EXPECT_EQ(s1.transient, 0);
  EXPECT_EQ(s2.transient, 3 * 4 * largest);
  EXPECT_EQ(s3.transient, 3 * 4 * largest + 3 * 4 * largest);

  // bf16 mixed: 2-byte params, fp32 master sharded like the optimizer.
  const ZeroMemory b0 = zero_memory_formula(config, 0, 4, parallel::Precision::bf16_mixed);
  EXPECT_EQ(b0.params, 2 * N);
  EXPECT_EQ(b0.master, 4 * N);
  const ZeroMemory b3 = zero_memory_formula(config, 3, 4, parallel::Precision::bf16_mixed);
  EXPECT_EQ(b3.params, 2 * N / 4);
  EXPECT_EQ(b3.master, 4 * N / 4);
  EXPECT_EQ(b3.grads, 4 * N / 4);
  EXPECT_EQ(b3.optimizer, 8 * N / 4);
  EXPECT_EQ(b3.transient, 3 * 4 * largest + 3 * 2 * largest);  // gathered copies in bf16

  // Z = 6 does not divide every group: each group is rounded up to its padded shard.
  const std::int64_t shard6 = g.shard(6);
  EXPECT_GT(6 * shard6, N);
  const ZeroMemory p3 = zero_memory_formula(config, 3, 6);
  EXPECT_EQ(p3.params, 4 * shard6);
  EXPECT_EQ(p3.optimizer, 8 * shard6);
  const ZeroMemory p1 = zero_memory_formula(config, 1, 6);
  EXPECT_EQ(p1.params, 4 * 6 * shard6);  // padded full buffers
  EXPECT_EQ(p1.optimizer, 8 * shard6);

  // Offload accounting: optimizer (+ master) and, at stage 3, the parameter shards.
  const ZeroMemory o =
      zero_memory_formula(config, ZeroConfig{3, true, true}, 4, parallel::Precision::bf16_mixed);
  EXPECT_EQ(o.offloaded, o.optimizer + o.master + o.params);
  // Pinned staging of the offloaded update: two f32 slots of one piece (the shards here are
  // larger than a piece); without offload_params also two bf16 slots; pieces bound it.
  EXPECT_EQ(o.host_staging, 2 * 4 * kOffloadStageElements);
  const ZeroMemory o3 =
      zero_memory_formula(config, ZeroConfig{3, true, false}, 4, parallel::Precision::bf16_mixed);
  EXPECT_EQ(o3.host_staging, 2 * 4 * kOffloadStageElements + 2 * 2 * kOffloadStageElements);
  ZeroConfig small_pieces{3, true, true};
  small_pieces.offload_stage_elements = 1000;
  EXPECT_EQ(
      zero_memory_formula(config, small_pieces, 4, parallel::Precision::bf16_mixed).host_staging,
      2 * 4 * 1000);
  EXPECT_EQ(zero_memory_formula(config, ZeroConfig{3, true, true}, 4).host_staging, 0);  // fp32
  EXPECT_EQ(o.pinned, 0);  // only a live state knows
  // Offloaded gradients: the grads column goes to the host too, the f32 staging slots are not
  // needed (AdamW reads the shard where it lies), and one reduced shard is in flight.
  ZeroConfig with_grads{3, true, true};
  with_grads.offload_gradients = true;
  const ZeroMemory og = zero_memory_formula(config, with_grads, 4, parallel::Precision::bf16_mixed);
  EXPECT_EQ(og.grads, o.grads);
  EXPECT_EQ(og.offloaded, o.offloaded + o.grads);
  EXPECT_EQ(og.host_staging, 0);
  const std::int64_t largest_shard = (std::max(g.embed(), g.final_group()) + 3) / 4;
  EXPECT_EQ(og.transient, o.transient + 4 * largest_shard);
  with_grads.offload_params = false;
  const ZeroMemory og3 =
      zero_memory_formula(config, with_grads, 4, parallel::Precision::bf16_mixed);
  EXPECT_EQ(og3.host_staging, 2 * 2 * kOffloadStageElements);  // only the bf16 slots
  const ZeroMemory o1 = zero_memory_formula(config, ZeroConfig{1, true, false}, 4);
  EXPECT_EQ(o1.offloaded, o1.optimizer);
  EXPECT_THROW(zero_memory_formula(config, ZeroConfig{1, false, true}, 4), Error);
}

model::ModelConfig small_config() {
  model::ModelConfig c = model::preset_config("tiny");
  c.hidden_size = 12;
  c.intermediate_size = 20;
  c.num_hidden_layers = 1;
  c.vocab_size = 17;
  return c;
}

TEST(ZeroStateTest, SingleRankStateRoundTripAndRefusals) {
  auto world = comm::make_self_communicator();
  Mesh mesh(*world, ParallelConfig{1, 1, 1});
  const model::ModelConfig config = small_config();
  for (int stage = 0; stage <= 3; ++stage) {
    ZeroState zero(config, mesh, ZeroConfig{stage, false, false}, ops::AdamWConfig{});
    model::ParamBuffers init(config), back(config);
    model::init_weights(init, 5);
    zero.set_parameters(init);
    zero.gather_parameters(back);
    for (std::size_t g = 0; g < init.flat().size(); ++g)
      EXPECT_EQ(init.flat()[g].to_floats(), back.flat()[g].to_floats()) << "stage " << stage;
    // acquire returns the parameters (nested acquires allowed).
    const Tensor a = zero.acquire(0), b = zero.acquire(0);
    EXPECT_EQ(a.to_floats(), init.flat()[0].to_floats());
    EXPECT_EQ(b.to_floats(), init.flat()[0].to_floats());
    zero.release(0);
    zero.release(0);

    std::map<std::string, Tensor> state;
    for (const auto& [name, t] : zero.state_tensors()) state[name] = t.clone();
    ASSERT_EQ(state.size(), 3 * init.flat().size());
    EXPECT_TRUE(state.count("exp_avg.layers.0"));
    EXPECT_TRUE(state.count("param.embed"));

    auto missing = state;
    missing.erase("exp_avg_sq.final");
    try {
      zero.load_state_tensors(missing);
      ADD_FAILURE() << "missing tensor accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("exp_avg_sq.final"), std::string::npos) << e.what();
    }
    auto wrong = state;
    wrong["param.embed"] = Tensor::zeros({3}, DType::f32);
    try {
      zero.load_state_tensors(wrong);
      ADD_FAILURE() << "wrong shape accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("param.embed"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("ZeRO stage"), std::string::npos) << e.what();
    }
    // The refused loads changed nothing.
    zero.gather_parameters(back);
    EXPECT_EQ(back.flat()[0].to_floats(), init.flat()[0].to_floats());
  }
}

}  // namespace
}  // namespace ulysses::parallel
