// The whole decoder on CUDA (bf16 weights and activations, f32 gradients) against the CPU f32
// reference on the same (bf16-rounded) weights: loss within 1e-2 relative, every gradient group
// within 2e-2.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda_test_util.h"
#include "ulysses/core/cuda_context.h"
#include "ulysses/data/packer.h"
#include "ulysses/model/decoder.h"
#include "ulysses/model/params.h"
#include "ulysses/parallel/activation_offload.h"
#include "ulysses/parallel/attention_strategies.h"

namespace ulysses::model {
namespace {

ModelConfig small_config(const std::string& type) {
  ModelConfig c = preset_config("tiny");
  c.model_type = parse_model_type(type, "tiny_config");
  c.hidden_size = 128;
  c.intermediate_size = 192;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 97;
  c.qk_norm = type == "qwen3";
  c.qkv_bias = type == "llama";
  c.o_bias = type == "llama";
  c.tie_word_embeddings = type == "qwen3";
  if (type == "llama") {
    c.rope.type = ops::RopeType::llama3;
    c.rope.factor = 8;
    c.rope.original_max_position_embeddings = 32;
  }
  return c;
}

data::PackedSequence sample_sequence(std::int64_t vocab) {
  data::PackedSequence s;
  Rng rng(21);
  for (const int n : {60, 1, 83}) {
    data::Document d;
    for (int i = 0; i < n; ++i)
      d.tokens.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab))));
    d.labels = d.tokens;
    if (n > 3) d.labels[2] = -100;
    data::append_document(s, d);
  }
  data::pad_sequence(s, 160);  // 144 tokens + a padding document
  return s;
}

class CudaModel : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModel, LossAndGradientsMatchCpu) {
  UL_REQUIRE_GPU();
  const ModelConfig c = small_config(GetParam());
  ParamBuffers params(c), grads_cpu(c);
  init_weights(params, 7, 0.05f);
  Rng rng(3);
  for (const auto& group : params.layout().groups()) {  // norms and biases off their defaults
    for (const auto& spec : group.params) {
      if (spec.name.find("norm") == std::string::npos && !spec.name.ends_with(".bias")) continue;
      Tensor t = params.get(spec.name);
      for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] += 0.1f * rng.normal();
    }
  }
  for (auto& flat : params.flat()) flat.copy_from(testing::rounded(flat, DType::bf16));

  ParamBuffers params_gpu(c, Device::cuda(0), DType::bf16), grads_gpu(c, Device::cuda(0));
  for (std::size_t g = 0; g < params.flat().size(); ++g)
    params_gpu.flat()[g].copy_from(params.flat()[g].to(DType::bf16));

  auto attention = parallel::make_local_attention();
  Decoder decoder(c, *attention);
  const auto sequence = sample_sequence(c.vocab_size);
  const auto shard = data::make_full_shard(sequence);
  const double n = static_cast<double>(sequence.valid_labels());
  const float grad_scale = static_cast<float>(1.0 / n);

  Context cpu;
  cpu.loss_tile_tokens = 64;
  const ops::LossSum want =
      decoder.forward_backward(cpu, params, &grads_cpu, shard, grad_scale, {});

  Context ctx = testing::gpu();
  ctx.loss_tile_tokens = 64;
  const ops::LossSum got = decoder.forward_backward(
      ctx, params_gpu, &grads_gpu, data::to_device(shard, Device::cuda(0)), grad_scale, {});

  EXPECT_EQ(got.valid_count(), want.valid_count());
  EXPECT_NEAR(got.loss_sum(), want.loss_sum(), 1e-2 * std::fabs(want.loss_sum()));
  for (std::size_t g = 0; g < grads_cpu.flat().size(); ++g) {
    EXPECT_LT(testing::relative_error(grads_gpu.flat()[g], grads_cpu.flat()[g]), 2e-2)
        << model_type_name(c.model_type) << " group " << params.layout().groups()[g].name;
  }
  // Gradient checkpointing on CUDA: bitwise identical (the same kernels on the same inputs).
  ParamBuffers grads_ckpt(c, Device::cuda(0));
  StepOptions checkpointing;
  checkpointing.gradient_checkpointing = true;
  const ops::LossSum again =
      decoder.forward_backward(ctx, params_gpu, &grads_ckpt,
                               data::to_device(shard, Device::cuda(0)), grad_scale, checkpointing);
  EXPECT_EQ(again.loss_sum(), got.loss_sum());
  for (std::size_t g = 0; g < grads_gpu.flat().size(); ++g)
    EXPECT_EQ(grads_ckpt.flat()[g].to_floats(), grads_gpu.flat()[g].to_floats()) << "group " << g;

  // The MLP in token tiles of 48 (the last one short), with checkpointing: equal to the CPU
  // reference like the untiled run, and to the untiled CUDA run up to the order of the
  // weight-gradient sums (and GEMM algorithms picked per tile shape).
  ParamBuffers grads_tiled(c, Device::cuda(0));
  StepOptions tiled = checkpointing;
  tiled.mlp_tile_tokens = 48;
  const ops::LossSum tiled_loss = decoder.forward_backward(
      ctx, params_gpu, &grads_tiled, data::to_device(shard, Device::cuda(0)), grad_scale, tiled);
  EXPECT_NEAR(tiled_loss.loss_sum(), got.loss_sum(), 1e-3 * std::fabs(got.loss_sum()));
  for (std::size_t g = 0; g < grads_cpu.flat().size(); ++g) {
    EXPECT_LT(testing::relative_error(grads_tiled.flat()[g], grads_cpu.flat()[g]), 2e-2)
        << model_type_name(c.model_type) << " tiled, group " << g;
    EXPECT_LT(testing::relative_error(grads_tiled.flat()[g], grads_gpu.flat()[g]), 1e-2)
        << model_type_name(c.model_type) << " tiled vs untiled, group " << g;
  }
}

INSTANTIATE_TEST_SUITE_P(Types, CudaModel, ::testing::Values("llama", "qwen3"));

// Activation offload (parallel/activation_offload.h) moves bytes and brings them back: losses and
// gradients bitwise equal to keeping them on the device, for every layer or the first one only,
// with attention kept or recomputed, over two steps (the pinned buffers are reused).
TEST(CudaActivationOffload, BitwiseEqualToNoOffload) {
  UL_REQUIRE_GPU();
  const ModelConfig c = small_config("qwen3");
  ParamBuffers params(c);
  init_weights(params, 5, 0.05f);
  ParamBuffers params_gpu(c, Device::cuda(0), DType::bf16);
  for (std::size_t g = 0; g < params.flat().size(); ++g)
    params_gpu.flat()[g].copy_from(params.flat()[g].to(DType::bf16));
  auto attention = parallel::make_local_attention();
  Decoder decoder(c, *attention);
  const auto shard =
      data::to_device(data::make_full_shard(sample_sequence(c.vocab_size)), Device::cuda(0));
  Context ctx = testing::gpu();
  ctx.loss_tile_tokens = 64;
  for (const bool recompute : {false, true}) {
    StepOptions kept;
    kept.gradient_checkpointing = true;
    kept.recompute_attention = recompute;
    kept.mlp_tile_tokens = 64;
    ParamBuffers want(c, Device::cuda(0));
    const double want_loss =
        decoder.forward_backward(ctx, params_gpu, &want, shard, 0.01f, kept).loss_sum();
    for (const std::int64_t layers : {c.num_hidden_layers, std::int64_t{1}}) {
      auto store = parallel::make_activation_offload(ctx, layers);
      ASSERT_NE(store, nullptr);
      StepOptions offloaded = kept;
      offloaded.activation_store = store.get();
      std::size_t warm_allocations = 0;
      for (int step = 0; step < 3; ++step) {
        // The caching allocator stays flat once warm: no cudaMalloc in steps 2 and 3.
        if (step == 1) warm_allocations = device_memory_stats(0).device_allocations;
        ParamBuffers got(c, Device::cuda(0));
        const double loss =
            decoder.forward_backward(ctx, params_gpu, &got, shard, 0.01f, offloaded).loss_sum();
        EXPECT_EQ(loss, want_loss) << "recompute " << recompute << ", layers " << layers;
        for (std::size_t g = 0; g < want.flat().size(); ++g)
          EXPECT_EQ(got.flat()[g].to_floats(), want.flat()[g].to_floats())
              << "recompute " << recompute << ", layers " << layers << ", group " << g;
        EXPECT_EQ(store->stats().layers_offloaded, layers);
        EXPECT_GT(store->stats().pinned_bytes, 0);
      }
      EXPECT_EQ(device_memory_stats(0).device_allocations, warm_allocations)
          << "recompute " << recompute << ", layers " << layers;
    }
  }
}

}  // namespace
}  // namespace ulysses::model
