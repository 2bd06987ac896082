// ZeRO on one GPU (a self communicator, world 1): every stage and offload mode trains like the
// plain CUDA path (ZeRO-0: fp32 master + bf16 compute copy, AdamW with copy), the buffers live
// where zero.h's table says (device or host) with exactly the formula's bytes, and steps allocate
// no new device memory once the caching allocator is warm. Multi-GPU: tests/cuda_dist/zero_test.cc.
#include "ulysses/parallel/zero.h"

#include <gtest/gtest.h>

#include <map>

#include "cuda_test_util.h"
#include "ulysses/data/packer.h"
#include "ulysses/model/decoder.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/parallel/mesh.h"
#include "zero_train_util.h"

namespace ulysses::parallel {
namespace {

using testing::expect_same_training;
using testing::train_run;
using testing::zero_test_model;

struct Variant {
  int stage;
  bool offload_optimizer, offload_params;
  bool offload_gradients = false;
  std::string name() const {
    return "stage " + std::to_string(stage) + (offload_optimizer ? " +offload-optimizer" : "") +
           (offload_params ? " +offload-params" : "") +
           (offload_gradients ? " +offload-gradients" : "");
  }
  ZeroConfig zero() const {
    ZeroConfig z{stage, offload_optimizer, offload_params};
    z.offload_gradients = offload_gradients;
    return z;
  }
  void apply(train::TrainConfig& c) const {
    c.zero_stage = stage;
    c.offload_optimizer = offload_optimizer;
    c.offload_params = offload_params;
    c.offload_gradients = offload_gradients;
  }
};

// With one rank every shard is the whole group and the reductions are copies, so each stage
// runs the same kernels on the same values as ZeRO-0; the only differences are the order of
// the two sequences' gradient sums at stage 2-3 (each backward into a fresh buffer, then added)
// and, with --offload-optimizer, AdamW's CPU kernel instead of the GPU's (FMA contraction): a
// few ulps in the master weights, which can flip the bf16 rounding of a rare weight. Hence
// 1e-5 rather than bit equality; 1e-3 with --offload-optimizer, whose flipped roundings grow
// over the 5 steps (measured on an H200: stage 3 with both offloads 2.4e-5 loss, 3.9e-4
// grad-norm, 1.9e-4 parameters; stage 1 and 2 with it stayed under 1e-5). A wrong update (a
// stale shard, a missed step) moves these by 1e-2 or more.
TEST(CudaZeroTraining, EveryStageAndOffloadMatchesZero0) {
  UL_REQUIRE_GPU();
  for (const bool tied : {false, true}) {
    const std::string model =
        testing::write_model_json(zero_test_model(tied), tied ? "tied" : "untied");
    const train::TrainConfig base = testing::zero_train_config(model);
    const testing::TrainResult expected = train_run(base);  // ZeRO-0: the plain CUDA path
    ASSERT_EQ(expected.losses.size(), 5u);
    for (const double loss : expected.losses) ASSERT_TRUE(std::isfinite(loss));
    // (The copy task's tokens are random: 5 steps do not lower the loss measurably.)
    EXPECT_NE(expected.losses.back(), expected.losses.front()) << "ZeRO-0 did not train";
    std::vector<Variant> variants = {{3, false, false}, {3, true, true}, {3, true, true, true}};
    if (!tied)
      variants = {{1, false, false}, {2, false, false},      {3, false, false},
                  {3, false, true},  {1, true, false},       {2, true, false},
                  {3, true, true},   {2, true, false, true}, {3, true, true, true}};
    for (const Variant& v : variants) {
      train::TrainConfig config = base;
      v.apply(config);
      const std::string what = (tied ? "tied " : "untied ") + v.name();
      SCOPED_TRACE(what);
      // Tied embeddings at stage 3: the embedding's two contributions per backward (LM head,
      // embedding backward) are summed in a fresh buffer before they reach the shard, while
      // ZeRO-0 adds them into the running sum: measured 3.8e-5 loss, 1.9e-4 grad norm, 6.4e-5
      // parameters on an H200 (2026-12-02, since the step path is one: ZeRO-0 is ZeroState).
      const double tolerance = v.offload_optimizer ? 1e-3 : tied ? 1e-3 : 1e-5;
      expect_same_training(train_run(config), expected, tolerance, tolerance, what,
                           /*print=*/true);
    }
    std::filesystem::remove(model);
  }
}

// A ZeRO checkpoint on the GPU (device shards, or host shards when offloaded) resumes bit for
// bit: the bf16 parameters are rebuilt from the loaded master shards with the rounding AdamW's
// copy used.
TEST(CudaZeroTraining, ResumeContinuesBitExactly) {
  UL_REQUIRE_GPU();
  const std::string model = testing::write_model_json(zero_test_model(true), "resume");
  for (const Variant& v :
       {Variant{1, false, false}, Variant{3, true, true}, Variant{3, true, true, true}}) {
    SCOPED_TRACE(v.name());
    train::TrainConfig c = testing::zero_train_config(model);
    v.apply(c);
    const auto root = std::filesystem::temp_directory_path() /
                      ("ulysses_cuda_zero_resume_" + std::to_string(::getpid()));
    std::filesystem::remove_all(root);
    c.output_dir = (root / "run").string();
    train::TrainConfig straight = c;
    straight.output_dir = (root / "straight").string();
    const testing::TrainResult expected = train_run(straight);
    {
      train::Trainer first(c);
      for (std::int64_t step = 1; step <= 3; ++step) first.train_step(step);
      first.save_checkpoint(3);
    }
    train::TrainConfig again = c;
    again.resume_from_checkpoint = "latest";
    train::Trainer second(again);
    const auto rest = second.run();
    ASSERT_EQ(rest.size(), 2u);
    EXPECT_EQ(rest[0].loss, expected.losses[3]);  // bitwise
    EXPECT_EQ(rest[1].loss, expected.losses[4]);
    std::vector<double> params;
    for (const auto& flat : second.params().flat())
      for (const float x : flat.to_floats()) params.push_back(x);
    EXPECT_EQ(params, expected.params);
    std::filesystem::remove_all(root);
  }
  std::filesystem::remove(model);
}

TEST(CudaZeroTraining, PlanShowsWhatOffloadKeepsOffTheDevice) {
  UL_REQUIRE_GPU();
  const std::string model = testing::write_model_json(zero_test_model(false), "plan");
  train::TrainConfig config = testing::zero_train_config(model);
  config.zero_stage = 3;
  config.offload_optimizer = true;
  config.offload_params = true;
  const train::Trainer trainer(config);
  const std::string plan = trainer.plan();
  EXPECT_NE(plan.find("zero: stage 3"), std::string::npos) << plan;
  EXPECT_NE(plan.find("offloaded to host"), std::string::npos) << plan;
  EXPECT_NE(plan.find("host memory per rank"), std::string::npos) << plan;
  // The host side of the offload (pinned: every byte) and the setup times.
  EXPECT_NE(plan.find("host memory of this rank"), std::string::npos) << plan;
  EXPECT_EQ(plan.find(" 0.0 KiB of it pinned"), std::string::npos) << plan;
  EXPECT_NE(plan.find("setup: training state allocated in"), std::string::npos) << plan;
  EXPECT_NE(plan.find("weights drawn (seed 5)"), std::string::npos) << plan;
  EXPECT_GE(trainer.setup_times().state_s, 0.0);
  EXPECT_GT(trainer.setup_times().weights_s, 0.0);
  std::filesystem::remove(model);
}

// An offloaded state larger than the host's memory stops before anything is allocated (the
// host's out-of-memory killer would otherwise end the run), naming the flags.
TEST(CudaZeroTraining, OffloadLargerThanTheHostIsRefusedNamingTheFlags) {
  UL_REQUIRE_GPU();
  model::ModelConfig huge = zero_test_model(false);  // about 0.7 T parameters
  huge.hidden_size = 16384;
  huge.intermediate_size = 53248;
  huge.num_hidden_layers = 200;
  huge.num_attention_heads = 128;
  huge.num_key_value_heads = 8;
  huge.head_dim = 128;
  const std::string model = testing::write_model_json(huge, "huge");
  train::TrainConfig config = testing::zero_train_config(model);
  config.zero_stage = 3;
  config.offload_optimizer = true;
  config.offload_params = true;
  try {
    const train::Trainer trainer(config);
    ADD_FAILURE() << "a state larger than the host was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("of host memory"), std::string::npos) << m;
    EXPECT_NE(m.find("--offload-optimizer"), std::string::npos) << m;
    EXPECT_NE(m.find("--offload-params"), std::string::npos) << m;
  }
  std::filesystem::remove(model);
}

std::vector<Variant> all_variants() {
  return {{0, false, false}, {1, false, false},      {2, false, false},    {3, false, false},
          {1, true, false},  {2, true, false},       {3, true, false},     {3, false, true},
          {3, true, true},   {2, true, false, true}, {3, true, true, true}};
}

TEST(CudaZeroState, BuffersLiveWhereTheTableSaysWithTheFormulasBytes) {
  UL_REQUIRE_GPU();
  const Context& ctx = testing::gpu();
  auto self = comm::make_self_communicator();
  Mesh mesh(*self, ParallelConfig{1, 1, 1});
  const model::ModelConfig config = zero_test_model(false);
  model::ParamBuffers init(config), back(config);
  model::init_weights(init, 3);
  for (const Variant& v : all_variants()) {
    SCOPED_TRACE(v.name());
    const ZeroConfig zc = v.zero();
    ZeroState zero(ctx, config, mesh, zc, ops::AdamWConfig{});
    zero.set_parameters(init);

    const ZeroMemory formula = zero_memory_formula(config, zc, 1, parallel::Precision::bf16_mixed);
    const ZeroMemory memory = zero.memory();
    EXPECT_EQ(memory.params, formula.params);
    EXPECT_EQ(memory.master, formula.master);
    EXPECT_EQ(memory.grads, formula.grads);
    EXPECT_EQ(memory.optimizer, formula.optimizer);
    EXPECT_EQ(memory.offloaded, formula.offloaded);
    EXPECT_EQ(memory.host_staging, formula.host_staging);
    // What the device copies in a step is page-locked (asynchronous copies): the staging, the
    // offloaded bf16 parameter shards and the offloaded gradient shards; the master shard and
    // moments never cross.
    EXPECT_EQ(memory.pinned, (v.offload_params ? memory.params : 0) +
                                 (v.offload_gradients ? memory.grads : 0) + memory.host_staging);
    EXPECT_EQ(memory.host_staging > 0,
              v.offload_optimizer && !(v.offload_gradients && v.offload_params));

    // Master shard and moments: host memory exactly when the optimizer is offloaded.
    for (const auto& [name, t] : zero.state_tensors()) {
      EXPECT_EQ(t.dtype(), DType::f32) << name;
      EXPECT_EQ(t.device().is_cpu(), v.offload_optimizer) << name << " on " << t.device().str();
      EXPECT_FALSE(t.pinned()) << name;
    }
    // The decoder reads bf16 on the GPU: the rounding of the f32 weights.
    for (const std::size_t g : {std::size_t{0}, model::layer_group(1)}) {
      const Tensor a = zero.acquire(g), b = zero.acquire(g);  // nested acquires
      EXPECT_EQ(a.dtype(), DType::bf16);
      EXPECT_TRUE(a.device().is_cuda());
      EXPECT_EQ(a.to_floats(), init.flat()[g].to(DType::bf16).to_floats()) << "group " << g;
      EXPECT_EQ(b.to_floats(), a.to_floats());
      zero.release(g);
      zero.release(g);
      EXPECT_TRUE(zero.grads(g).device().is_cuda());
      EXPECT_EQ(zero.grads(g).dtype(), DType::f32);
      zero.grads_done(g);
    }
    // gather_parameters returns the f32 master weights, bit for bit.
    zero.gather_parameters(back);
    for (std::size_t g = 0; g < init.flat().size(); ++g)
      EXPECT_EQ(back.flat()[g].to_floats(), init.flat()[g].to_floats()) << "group " << g;

    // State round trip through host copies (as a checkpoint does).
    std::map<std::string, Tensor> saved;
    for (const auto& [name, t] : zero.state_tensors()) saved[name] = t.to(Device::cpu());
    ZeroState loaded(ctx, config, mesh, zc, ops::AdamWConfig{});
    loaded.load_state_tensors(saved);
    loaded.gather_parameters(back);
    for (std::size_t g = 0; g < init.flat().size(); ++g)
      EXPECT_EQ(back.flat()[g].to_floats(), init.flat()[g].to_floats()) << "loaded group " << g;
    const Tensor p = loaded.acquire(model::final_group(config));
    EXPECT_EQ(p.to_floats(), init.flat()[model::final_group(config)].to(DType::bf16).to_floats());
    loaded.release(model::final_group(config));
  }
}

// Shard-only setup on the GPU (the trainer's): the master shard and the bf16 parameters drawn
// on the device (and copied into the pinned host buffers when offloaded), equal bit for bit to
// setting the state from the whole f32 model drawn on the CPU.
TEST(CudaZeroState, ShardOnlySetupOnTheDeviceEqualsTheWholeModelsValues) {
  UL_REQUIRE_GPU();
  const Context& ctx = testing::gpu();
  auto self = comm::make_self_communicator();
  Mesh mesh(*self, ParallelConfig{1, 1, 1});
  const model::ModelConfig config = zero_test_model(false);
  const model::ParamLayout layout(config);
  model::ParamBuffers init(config);
  model::init_weights(init, 9, 0.02f);
  for (const Variant& v : all_variants()) {
    SCOPED_TRACE(v.name());
    const ZeroConfig zc = v.zero();
    ZeroState whole(ctx, config, mesh, zc, ops::AdamWConfig{});
    ZeroState sharded(ctx, config, mesh, zc, ops::AdamWConfig{});
    whole.set_parameters(init);
    sharded.set_parameters([&](std::size_t g, std::int64_t lo, Tensor out) {
      // As the trainer: drawn on the GPU, copied where the buffer lives (offloaded: host).
      Tensor drawn =
          out.device() == ctx.device ? out : Tensor::empty(out.shape(), out.dtype(), ctx.device);
      model::init_group_range(ctx, layout.groups()[g], drawn, lo, 9, 0.02f);
      if (drawn.raw() != out.raw()) out.copy_from(drawn);
    });
    synchronize(ctx);
    const auto a = whole.state_tensors(), b = sharded.state_tensors();
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i)
      EXPECT_EQ(a[i].second.to_floats(), b[i].second.to_floats()) << a[i].first;
    for (std::size_t g = 0; g < layout.groups().size(); ++g) {
      const Tensor pa = whole.acquire(g), pb = sharded.acquire(g);
      EXPECT_EQ(pa.to_floats(), pb.to_floats()) << "group " << g;
      whole.release(g);
      sharded.release(g);
    }
  }
}

data::PackedSequence sample_sequence(std::int64_t vocab, std::uint64_t seed) {
  data::PackedSequence s;
  Rng rng(seed);
  for (const int n : {90, 1, 120}) {
    data::Document d;
    for (int i = 0; i < n; ++i)
      d.tokens.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab))));
    d.labels = d.tokens;
    data::append_document(s, d);
  }
  data::pad_sequence(s, 256);
  return s;
}

// DESIGN: no cudaMalloc inside a step. Persistent buffers come from the constructor; the
// transient full buffers (stage 2-3) come from the caching allocator, which has every size class
// after the first step.
TEST(CudaZeroState, StepsAllocateNoDeviceMemoryOnceWarm) {
  UL_REQUIRE_GPU();
  const Context& ctx = testing::gpu();
  auto self = comm::make_self_communicator();
  Mesh mesh(*self, ParallelConfig{1, 1, 1});
  const model::ModelConfig config = zero_test_model(true);
  model::ParamBuffers init(config);
  model::init_weights(init, 4);
  auto attention = make_local_attention();
  const model::Decoder decoder(config, *attention);
  const data::PackedSequence sequence = sample_sequence(config.vocab_size, 8);
  const data::SequenceShard shard = data::to_device(data::make_full_shard(sequence), ctx.device);
  const float grad_scale = 1.0f / static_cast<float>(sequence.valid_labels());
  const std::int64_t full_bytes = 4 * model::ParamLayout(config).numel();
  std::int64_t largest_group = 0;
  const model::ParamLayout layout(config);
  for (const auto& group : layout.groups()) largest_group = std::max(largest_group, group.numel);
  for (const Variant& v :
       {Variant{0, false, false}, Variant{2, false, false}, Variant{3, false, false},
        Variant{1, true, false}, Variant{2, true, false}, Variant{3, true, false},
        Variant{3, false, true}, Variant{3, true, true}, Variant{2, true, false, true},
        Variant{3, true, true, true}}) {
    SCOPED_TRACE(v.name());
    ZeroState zero(ctx, config, mesh, v.zero(), ops::AdamWConfig{});
    zero.set_parameters(init);
    std::vector<double> losses;
    std::int64_t warm_allocations = 0;
    for (std::int64_t step = 1; step <= 5; ++step) {
      if (step == 3) warm_allocations = device_memory_stats(ctx.device.index).device_allocations;
      zero.begin_step();
      const std::int64_t syncs = device_memory_stats(ctx.device.index).host_synchronizations;
      const auto loss = decoder.forward_backward(ctx, zero, shard, grad_scale, {});
      // A warm forward and backward never make the host wait for the device (the ids, labels
      // and boundaries come with their host copies, the RoPE table is built on the device, the
      // loss stays there until read). The offloaded variants wait for their copy streams by
      // design (double buffers of the host optimizer and of the offloaded parameters).
      const std::int64_t waits =
          device_memory_stats(ctx.device.index).host_synchronizations - syncs;
      if (step >= 3 && !v.offload_optimizer && !v.offload_params && !v.offload_gradients) {
        EXPECT_EQ(waits, 0) << "step " << step << ": the forward and backward synchronized";
        EXPECT_TRUE(loss.pending());
      }
      const double norm = zero.finish_step(ctx, step, 1e-3f, 1.0);
      EXPECT_TRUE(std::isfinite(norm));
      losses.push_back(loss.loss_sum() * grad_scale);
      // Never all gradients (stage 2-3) or all parameters (stage 3) on the device at once.
      // With the gradients offloaded the device holds no shard at all, only the transients,
      // which in this tiny model (a group as large as the embedding) exceed one full copy:
      // they stay within the formula's bound (three group buffers and the shard in flight).
      if (v.stage >= 2) {
        EXPECT_GT(zero.peak_transient().grads, 0);
        if (v.offload_gradients)
          EXPECT_LE(zero.peak_transient().grads, 4 * 4 * largest_group);
        else
          EXPECT_LT(zero.peak_transient().grads, full_bytes);
      }
      if (v.stage == 3) {
        EXPECT_GT(zero.peak_transient().params, 0);
        EXPECT_LT(zero.peak_transient().params, full_bytes / 2);  // bf16
      }
    }
    synchronize(ctx);
    EXPECT_EQ(device_memory_stats(ctx.device.index).device_allocations, warm_allocations)
        << "steps 3-5 called cudaMalloc (a cache miss of the caching allocator)";
    EXPECT_NE(losses.back(), losses.front()) << "the parameters did not change";
  }
}

// Three steps of a ZeroState set from `init`, one backward per shard and step: the grad norms,
// then every state tensor and every group's compute parameters.
struct StateRun {
  std::vector<double> norms;
  std::vector<std::vector<float>> tensors;
};
StateRun train_state(const Context& ctx, const model::ModelConfig& config, Mesh& mesh,
                     const ZeroConfig& zc, const model::ParamBuffers& init,
                     const model::Decoder& decoder,
                     const std::vector<const data::SequenceShard*>& shards, float grad_scale,
                     double max_grad_norm) {
  ZeroState zero(ctx, config, mesh, zc, ops::AdamWConfig{});
  zero.set_parameters(init);
  StateRun run;
  for (std::int64_t step = 1; step <= 3; ++step) {
    zero.begin_step();
    for (const data::SequenceShard* shard : shards)
      decoder.forward_backward(ctx, zero, *shard, grad_scale, {});
    run.norms.push_back(zero.finish_step(ctx, step, 1e-3f, max_grad_norm));
  }
  for (const auto& [name, t] : zero.state_tensors()) run.tensors.push_back(t.to_floats());
  for (std::size_t g = 0; g < model::ParamLayout(config).groups().size(); ++g) {
    run.tensors.push_back(zero.acquire(g).to_floats());
    zero.release(g);
  }
  return run;
}

void expect_same_bits(const StateRun& got, const StateRun& expected) {
  EXPECT_EQ(got.norms, expected.norms);
  ASSERT_EQ(got.tensors.size(), expected.tensors.size());
  for (std::size_t i = 0; i < got.tensors.size(); ++i)
    EXPECT_EQ(got.tensors[i], expected.tensors[i]) << "tensor " << i;
}

// The pipelined offloaded update cuts each shard into pieces (ZeroConfig::
// offload_stage_elements): AdamW is element-wise, so pieces of 777 elements (many per group,
// odd boundaries inside parameters) give the bits of one piece per group. With the cuDNN
// attention's atomics the gradients differ run to run, so the built-in kernel runs here.
TEST(CudaZeroState, OffloadedUpdateInSmallPiecesIsBitIdentical) {
  UL_REQUIRE_GPU();
  Context ctx = testing::gpu();
  ctx.attention_kernel = AttentionKernel::builtin;
  auto self = comm::make_self_communicator();
  Mesh mesh(*self, ParallelConfig{1, 1, 1});
  const model::ModelConfig config = zero_test_model(false);
  model::ParamBuffers init(config);
  model::init_weights(init, 6);
  auto attention = make_local_attention();
  const model::Decoder decoder(config, *attention);
  const data::PackedSequence sequence = sample_sequence(config.vocab_size, 10);
  const data::SequenceShard shard = data::to_device(data::make_full_shard(sequence), ctx.device);
  const float grad_scale = 1.0f / static_cast<float>(sequence.valid_labels());
  for (const Variant& v :
       {Variant{1, true, false}, Variant{2, true, false}, Variant{3, true, false},
        Variant{3, true, true}, Variant{3, true, true, true}}) {
    SCOPED_TRACE(v.name());
    ZeroConfig whole = v.zero();
    ZeroConfig pieces = whole;
    pieces.offload_stage_elements = 777;
    const auto run = [&](const ZeroConfig& zc) {
      return train_state(ctx, config, mesh, zc, init, decoder, {&shard}, grad_scale, 1.0);
    };
    expect_same_bits(run(pieces), run(whole));
  }
}

// --offload-gradients keeps the gradient shards in pinned host memory, filled during backward:
// bit-identical to keeping them on the device, with one backward per step and with two
// (gradient accumulation: the second contribution is added on the device to the shard brought
// back from the host), tied and untied, clipping on. The built-in attention kernel makes the
// gradients deterministic run to run.
TEST(CudaZeroState, OffloadedGradientsAreBitIdentical) {
  UL_REQUIRE_GPU();
  Context ctx = testing::gpu();
  ctx.attention_kernel = AttentionKernel::builtin;
  auto self = comm::make_self_communicator();
  Mesh mesh(*self, ParallelConfig{1, 1, 1});
  for (const bool tied : {false, true}) {
    const model::ModelConfig config = zero_test_model(tied);
    model::ParamBuffers init(config);
    model::init_weights(init, 7);
    auto attention = make_local_attention();
    const model::Decoder decoder(config, *attention);
    const data::PackedSequence a = sample_sequence(config.vocab_size, 11);
    const data::PackedSequence b = sample_sequence(config.vocab_size, 12);
    const data::SequenceShard sa = data::to_device(data::make_full_shard(a), ctx.device);
    const data::SequenceShard sb = data::to_device(data::make_full_shard(b), ctx.device);
    const float grad_scale = 1.0f / static_cast<float>(a.valid_labels() + b.valid_labels());
    for (const Variant& v : {Variant{2, true, false}, Variant{3, true, true}}) {
      for (const int micro_steps : {1, 2}) {
        SCOPED_TRACE(v.name() + (tied ? ", tied" : ", untied") + ", " +
                     std::to_string(micro_steps) + " backward(s) per step");
        ZeroConfig offloaded = v.zero();
        offloaded.offload_gradients = true;
        std::vector<const data::SequenceShard*> shards = {&sa};
        if (micro_steps == 2) shards.push_back(&sb);
        // max_grad_norm 0.05: the clip scales every step here
        const StateRun expected =
            train_state(ctx, config, mesh, v.zero(), init, decoder, shards, grad_scale, 0.05);
        EXPECT_GT(expected.norms[0], 0.05) << "the clip did not act";
        expect_same_bits(
            train_state(ctx, config, mesh, offloaded, init, decoder, shards, grad_scale, 0.05),
            expected);
      }
    }
  }
}

}  // namespace
}  // namespace ulysses::parallel
