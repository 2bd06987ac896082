// Run plan (train/run_plan.h): `ulysses info` prints the trainer's own memory budget for the same
// options; the fit advice only lists changes that do fit; epochs of the data and
// --num-train-epochs.
#include "ulysses/train/run_plan.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "ulysses/data/packer.h"
#include "ulysses/train/trainer.h"

namespace ulysses::train {
namespace {

const std::string kDocs = std::string(ULYSSES_TEST_DATA) + "/tiny_docs.jsonl";

std::string memory_block(const std::string& text) {
  const auto begin = text.find("memory per device");
  const auto end = text.find('\n', text.find("  total", begin));
  return begin == std::string::npos ? "" : text.substr(begin, end - begin);
}

TEST(RunPlan, InfoPrintsTheTrainersMemoryBudget) {
  for (const std::int64_t stage : {0, 1, 2, 3}) {
    for (const bool checkpointing : {false, true}) {
      TrainConfig c;
      c.max_seq_length = 256;
      c.zero_stage = stage;
      c.gradient_checkpointing = checkpointing;
      c.output_dir = "";
      c.quiet = true;
      const std::string info = memory_block(info_report(c, 1, 0, "auto"));
      ASSERT_FALSE(info.empty());
      EXPECT_EQ(info, memory_block(Trainer(c).plan())) << "stage " << stage;
    }
  }
}

TEST(RunPlan, FitAdviceListsOnlyChangesThatFit) {
  const model::ModelConfig model = model::resolve_model_config("qwen3-4b");
  TrainConfig c;
  c.model = "qwen3-4b";
  c.max_seq_length = 131072;
  c.sp_size = 4;
  const parallel::ParallelConfig layout = parallel::resolve_parallel_config({4, 0, 1}, 4, model);
  const std::int64_t budget = std::int64_t{80} << 30;
  const auto bf16 = parallel::Precision::bf16_mixed;
  const FitAdvice advice = advise_fit(c, model, layout, bf16, budget, 4);
  EXPECT_FALSE(advice.fits);
  EXPECT_GT(advice.device_bytes, budget);
  ASSERT_FALSE(advice.changes.empty());
  // The largest sequence fits, one more SP chunk of tokens does not.
  TrainConfig largest = c;
  largest.max_seq_length = advice.max_seq_length_that_fits;
  EXPECT_TRUE(advise_fit(largest, model, layout, bf16, budget, 4).fits);
  largest.max_seq_length += c.sp_size;
  EXPECT_FALSE(advise_fit(largest, model, layout, bf16, budget, 4).fits);
  // The listed ZeRO-3 + checkpointing change fits when applied.
  bool listed = false;
  for (const std::string& change : advice.changes)
    listed |= change.rfind("--zero-stage 3 --gradient-checkpointing (", 0) == 0;
  EXPECT_TRUE(listed);
  TrainConfig applied = c;
  applied.zero_stage = 3;
  applied.gradient_checkpointing = true;
  const FitAdvice now = advise_fit(applied, model, layout, bf16, budget, 4);
  EXPECT_TRUE(now.fits);
  EXPECT_TRUE(now.changes.empty());
  EXPECT_NE(format_fit(now, budget).find(": fits;"), std::string::npos);
  EXPECT_NE(format_fit(advice, budget).find("does NOT fit"), std::string::npos);
  // Offload moves model states off the device into host memory.
  TrainConfig offload = applied;
  offload.offload_optimizer = offload.offload_params = true;
  const RunMemory on = run_memory(offload, model, layout, bf16);
  const RunMemory off = run_memory(applied, model, layout, bf16);
  EXPECT_GT(on.host_bytes(), 0);
  EXPECT_EQ(off.host_bytes(), 0);
  EXPECT_LT(on.device_bytes(), off.device_bytes());
  // So do checkpointed activations with --offload-activations (CUDA precision).
  TrainConfig acts = offload;
  acts.offload_activations = true;
  const RunMemory moved = run_memory(acts, model, layout, bf16);
  EXPECT_GT(moved.host_bytes(), on.host_bytes());
  EXPECT_LT(moved.device_bytes(), on.device_bytes());
}

TEST(RunPlan, GpuRunsThatCannotFitAreRefusedNamingWhatWouldFit) {
  // qwen3-4b at 160K on one 138 GiB GPU: ZeRO-0 with checkpointing does not fit (model states
  // 67 GiB, the kept activations 74 GiB, the working set on top); the state offloads would.
  const model::ModelConfig model = model::resolve_model_config("qwen3-4b");
  TrainConfig c;
  c.model = "qwen3-4b";
  c.max_seq_length = 163840;
  c.gradient_checkpointing = true;
  const parallel::ParallelConfig layout{1, 1, 1};
  const std::int64_t device = std::int64_t{138} << 30, host = std::int64_t{112} << 30;
  const std::string refusal = device_fit_refusal(c, model, layout, device, 1, host, 0);
  EXPECT_NE(refusal.find("the memory plan needs"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("--max-seq-length 163840"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("--ignore-memory-plan"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("--zero-stage 3 --offload-optimizer --offload-params"), std::string::npos)
      << refusal;
  // With the offloads it fits (at 128K an H200 measured 90.5 GiB: bench/RESULTS.md).
  c.zero_stage = 3;
  c.offload_optimizer = c.offload_params = true;
  EXPECT_EQ(device_fit_refusal(c, model, layout, device, 1, host, 0), "");
}

TEST(RunPlan, AutoRecomputeChoosesTheFewestLayersThatFit) {
  // qwen3-4b at 448K on one 138 GiB GPU with 112 GiB of host memory: recomputing attention in
  // every layer fits, keeping it everywhere does not; auto takes the fewest layers that fit 97%
  // of the device and the host budget, with the offloaded layers resolved for that count.
  const model::ModelConfig model = model::resolve_model_config("qwen3-4b");
  TrainConfig c;
  c.model = "qwen3-4b";
  c.max_seq_length = 458752;
  c.gradient_checkpointing = true;
  c.zero_stage = 3;
  c.offload_optimizer = c.offload_params = true;
  c.offload_activations = true;
  c.recompute_attention = true;
  c.recompute_attention_layers = kRecomputeAttentionAuto;
  const parallel::ParallelConfig layout{1, 1, 1};
  const std::int64_t device = std::int64_t{138} << 30, host = std::int64_t{112} << 30;
  const auto bf16 = parallel::Precision::bf16_mixed;
  const ActivationChoice a = resolve_activation_choice(c, model, layout, device, host);
  ASSERT_GT(a.recompute_layers, 0);
  ASSERT_LT(a.recompute_layers, model.num_hidden_layers);
  ASSERT_GT(a.offload_layers, 0);
  const auto plan_of = [&](std::int64_t n, std::int64_t k) {
    TrainConfig t = c;
    t.recompute_attention_layers = n;
    t.offload_activation_layers = k;
    return run_memory(t, model, layout, bf16, host);
  };
  const RunMemory chosen = plan_of(a.recompute_layers, a.offload_layers);
  EXPECT_LE(chosen.device_bytes(), device / 100 * 97);
  EXPECT_LE(chosen.host_bytes(), host);
  // One layer fewer does not fit (with its own offload count).
  TrainConfig fewer = c;
  fewer.recompute_attention_layers = a.recompute_layers - 1;
  const std::int64_t k =
      run_memory(fewer, model, layout, bf16, host).plan.activation_layers_offloaded;
  const RunMemory less = plan_of(a.recompute_layers - 1, k);
  EXPECT_TRUE(less.device_bytes() > device / 100 * 97 || less.host_bytes() > host);
  // No device budget (the CPU): every layer; a fixed count is kept as given.
  EXPECT_EQ(resolve_activation_choice(c, model, layout, 0, host).recompute_layers, -1);
  c.recompute_attention_layers = 5;
  EXPECT_EQ(resolve_activation_choice(c, model, layout, device, host).recompute_layers, 5);
  // `ulysses info` resolves auto the same way on --memory-gib.
  TrainConfig options = c;
  options.recompute_attention_layers = kRecomputeAttentionAuto;
  options.device = "cuda";
  const std::string info = info_report(options, 1, 138, "auto", 112);
  EXPECT_NE(info.find("--recompute-attention-layers auto -> " + std::to_string(a.recompute_layers) +
                      " of 36 layers"),
            std::string::npos)
      << info;
  // auto needs --recompute-attention, as a count does.
  options.recompute_attention = false;
  testing::expect_error([&] { validate(options, 1); },
                        "--recompute-attention-layers auto needs --recompute-attention");
}

TEST(RunPlan, AutoCheckpointLayersKeepsTheMostLayersWholeThatFit) {
  // qwen3-4b at 64K on one 138 GiB GPU: checkpointing every layer fits, none does not; auto
  // takes the fewest checkpointed layers whose plan fits 97% of the device.
  const model::ModelConfig model = model::resolve_model_config("qwen3-4b");
  TrainConfig c;
  c.model = "qwen3-4b";
  c.max_seq_length = 65536;
  c.gradient_checkpointing = true;
  c.checkpoint_layers = kCheckpointLayersAuto;
  const parallel::ParallelConfig layout{1, 1, 1};
  const std::int64_t device = std::int64_t{138} << 30;
  const auto bf16 = parallel::Precision::bf16_mixed;
  const ActivationChoice a = resolve_activation_choice(c, model, layout, device, 0);
  ASSERT_GT(a.checkpoint_layers, 0);
  ASSERT_LT(a.checkpoint_layers, model.num_hidden_layers);
  const auto bytes_of = [&](std::int64_t n) {
    TrainConfig t = c;
    t.checkpoint_layers = n;
    return run_memory(t, model, layout, bf16, 0).device_bytes();
  };
  EXPECT_LE(bytes_of(a.checkpoint_layers), device / 100 * 97);
  EXPECT_GT(bytes_of(a.checkpoint_layers - 1), device / 100 * 97);
  // No device budget: every layer; a count is kept as given.
  EXPECT_EQ(resolve_activation_choice(c, model, layout, 0, 0).checkpoint_layers, -1);
  TrainConfig fixed = c;
  fixed.checkpoint_layers = 7;
  EXPECT_EQ(resolve_activation_choice(fixed, model, layout, device, 0).checkpoint_layers, 7);
  // `ulysses info` resolves auto the same way on --memory-gib.
  TrainConfig options = c;
  options.device = "cuda";
  const std::string info = info_report(options, 1, 138, "auto", 0);
  EXPECT_NE(info.find("--checkpoint-layers auto -> " + std::to_string(a.checkpoint_layers) +
                      " of 36 layers"),
            std::string::npos)
      << info;
  EXPECT_NE(info.find(std::to_string(a.checkpoint_layers) + " of 36 layers checkpointed"),
            std::string::npos)
      << info;
  // Too few checkpointed layers: the refusal names a count that fits.
  TrainConfig greedy = c;
  greedy.checkpoint_layers = 0;
  const std::string refusal = device_fit_refusal(greedy, model, layout, device, 1, 0, 0);
  EXPECT_NE(refusal.find("--checkpoint-layers "), std::string::npos) << refusal;
  // Bad combinations are refused with the option named.
  TrainConfig bad = c;
  bad.gradient_checkpointing = false;
  testing::expect_error([&] { validate(bad, 1); },
                        "--checkpoint-layers auto needs --gradient-checkpointing");
  bad = c;
  bad.checkpoint_layers = -3;
  testing::expect_error([&] { validate(bad, 1); }, "--checkpoint-layers must be >= 0");
  bad = c;
  bad.recompute_attention = true;
  testing::expect_error([&] { validate(bad, 1); },
                        "--checkpoint-layers auto cannot be combined with --recompute-attention");
  bad = c;
  bad.offload_activations = true;
  testing::expect_error([&] { validate(bad, 1); },
                        "--checkpoint-layers auto cannot be combined with --offload-activations");
}

TEST(RunPlan, EpochOfThePackedDataAndNumTrainEpochs) {
  TrainConfig c;
  c.data = kDocs;
  c.max_seq_length = 64;
  c.per_device_train_batch_size = 2;
  const auto source = data::open_data(data_options(c, 128));
  const auto epoch = plan_epoch(*source, c, 2);
  ASSERT_TRUE(epoch.has_value());
  EXPECT_EQ(epoch->documents, 12);
  // Independent count: pack the first 12 documents of the stream.
  data::Packer packer(*source, {64, true, 1});
  std::int64_t sequences = 0;
  while (packer.position() < 12) {
    packer.next();
    ++sequences;
  }
  EXPECT_EQ(epoch->sequences, sequences);
  EXPECT_EQ(epoch->tokens, 64 * sequences);
  EXPECT_DOUBLE_EQ(epoch->steps, static_cast<double>(sequences) / 2);

  c.num_train_epochs = 2;
  EXPECT_EQ(resolve_training_length(c, 1).max_steps, (2 * sequences + 1) / 2);
  c.num_train_epochs = 0.5;
  EXPECT_EQ(resolve_training_length(c, 1).max_steps, (sequences + 3) / 4);
  c.num_train_epochs = 0;
  EXPECT_EQ(resolve_training_length(c, 1).max_steps, c.max_steps);  // --max-steps as given
  // Endless data has no epochs.
  TrainConfig endless;
  EXPECT_FALSE(plan_epoch(*data::open_data(data_options(endless, 128)), endless, 8).has_value());
  endless.num_train_epochs = 1;
  testing::expect_error([&] { resolve_training_length(endless, 1); }, "--num-train-epochs needs");
  endless.num_train_epochs = -1;
  testing::expect_error([&] { validate(endless); }, "--num-train-epochs must be >= 0");
}

TEST(RunPlan, AutoLossTileTakesTheLargestTileThatFits) {
  // qwen3-4b at 32K, checkpointing: the 4096-token tile fits a 138 GiB GPU; a budget between the
  // 2048 and 4096 plans takes 2048; one that only the fallback (or nothing) fits takes 1024.
  const model::ModelConfig model = model::resolve_model_config("qwen3-4b");
  TrainConfig c;
  c.model = "qwen3-4b";
  c.max_seq_length = 32768;
  c.per_device_train_batch_size = 1;
  c.gradient_checkpointing = true;
  ASSERT_EQ(c.loss_tile_tokens, kLossTileAuto);  // the default
  const parallel::ParallelConfig layout{1, 1, 1};
  const auto bf16 = parallel::Precision::bf16_mixed;
  const auto bytes_of = [&](std::int64_t tile) {
    TrainConfig t = c;
    t.loss_tile_tokens = tile;
    return run_memory(t, model, layout, bf16, 0).device_bytes();
  };
  // Larger tiles cost memory, and auto plans like the fallback before it is resolved.
  ASSERT_LT(bytes_of(1024), bytes_of(2048));
  ASSERT_LT(bytes_of(2048), bytes_of(4096));
  EXPECT_EQ(run_memory(c, model, layout, bf16, 0).device_bytes(), bytes_of(1024));
  // The device budget whose 97% is exactly `bytes`.
  const auto device_for = [](std::int64_t bytes) { return (bytes + 96) / 97 * 100; };
  const std::int64_t big = std::int64_t{138} << 30;
  EXPECT_EQ(resolve_loss_tile(c, model, layout, true, big, 0), 4096);
  EXPECT_EQ(resolve_loss_tile(c, model, layout, true, device_for(bytes_of(4096)), 0), 4096);
  EXPECT_EQ(resolve_loss_tile(c, model, layout, true, device_for(bytes_of(4096)) - 200, 0), 2048);
  EXPECT_EQ(resolve_loss_tile(c, model, layout, true, device_for(bytes_of(2048)) - 200, 0), 1024);
  EXPECT_EQ(resolve_loss_tile(c, model, layout, true, std::int64_t{1} << 30, 0), 1024);
  // The CPU, or a GPU without a budget: the fallback; a tile given is kept.
  EXPECT_EQ(resolve_loss_tile(c, model, layout, false, big, 0), kLossTileTokensFallback);
  EXPECT_EQ(resolve_loss_tile(c, model, layout, true, 0, 0), kLossTileTokensFallback);
  TrainConfig fixed = c;
  fixed.loss_tile_tokens = 512;
  EXPECT_EQ(resolve_loss_tile(fixed, model, layout, true, big, 0), 512);
  // With activation offload the trainer passes its config as configured (offloaded layers -1):
  // the plan resolves that count against the host budget as the activation choice did, so the
  // tile is chosen on the same plan as with the resolved count written in.
  TrainConfig offload = c;
  offload.offload_activations = true;
  const std::int64_t host = std::int64_t{4} << 30;  // room for some layers, not all
  TrainConfig counted = offload;
  counted.offload_activation_layers =
      resolve_activation_choice(offload, model, layout, big, host).offload_layers;
  ASSERT_GT(counted.offload_activation_layers, 0);
  ASSERT_LT(counted.offload_activation_layers, model.num_hidden_layers);
  for (const std::int64_t tile : {1024, 4096}) {
    offload.loss_tile_tokens = counted.loss_tile_tokens = tile;
    EXPECT_EQ(run_memory(offload, model, layout, bf16, host).device_bytes(),
              run_memory(counted, model, layout, bf16, host).device_bytes());
  }
  // `ulysses info` resolves it the same way on --memory-gib, and plans with the result.
  TrainConfig options = c;
  options.device = "cuda";
  const std::string info = info_report(options, 1, 138, "auto", 0);
  EXPECT_NE(info.find("--loss-tile-tokens auto -> 4096 tokens per tile"), std::string::npos)
      << info;
  // Bad values are refused with the option named.
  TrainConfig bad = c;
  bad.loss_tile_tokens = 0;
  testing::expect_error([&] { validate(bad, 1); }, "--loss-tile-tokens must be >= 1 or auto");
  bad.loss_tile_tokens = -3;
  testing::expect_error([&] { validate(bad, 1); }, "--loss-tile-tokens must be >= 1 or auto");
}

}  // namespace
}  // namespace ulysses::train
