// Peer check against Hugging Face Transformers: tiny llama / qwen2 / qwen3 / mistral models saved
// by Transformers (tests/data/golden, made by scripts/make_golden.py) are loaded as HF
// checkpoints; three packed documents must give Transformers' loss (each document run alone
// there) and its gradient for every parameter.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "ulysses/io/hf_checkpoint.h"
#include "ulysses/io/safetensors.h"
#include "ulysses/model/decoder.h"
#include "ulysses/parallel/attention_strategies.h"

namespace ulysses {
namespace {

std::vector<std::int32_t> ints(const nlohmann::json& j) {
  return j.get<std::vector<std::int32_t>>();
}

class HfGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(HfGolden, LossAndGradientsMatchTransformers) {
  const std::filesystem::path dir =
      std::filesystem::path(ULYSSES_TEST_DATA) / "golden" / GetParam();
  const model::ModelConfig config = model::resolve_model_config(dir.string());
  EXPECT_EQ(model::model_type_name(config.model_type), std::string(GetParam()));
  model::ParamBuffers params(config), grads(config);
  io::load_hf_weights(dir, params);

  std::ifstream in(dir / "case.json");
  const auto golden = nlohmann::json::parse(in);
  data::PackedSequence sequence;
  sequence.input_ids = ints(golden["input_ids"]);
  sequence.position_ids = ints(golden["position_ids"]);
  sequence.shift_labels = ints(golden["shift_labels"]);
  sequence.cu_seqlens = ints(golden["cu_seqlens"]);
  const auto n = golden["num_valid"].get<std::int64_t>();
  ASSERT_EQ(sequence.valid_labels(), n);

  auto attention = parallel::make_local_attention();
  model::Decoder decoder(config, *attention);
  Context ctx;
  ctx.attention_block = 8;  // several blocks per document
  ctx.loss_tile_tokens = 7;
  const auto loss = decoder.forward_backward(ctx, params, &grads, data::make_full_shard(sequence),
                                             static_cast<float>(1.0 / static_cast<double>(n)), {});
  const double mean = loss.loss_sum() / static_cast<double>(n);
  const double expected = golden["loss"].get<double>();
  EXPECT_NEAR(mean, expected, 2e-6 * expected) << GetParam();

  const io::SafetensorsReader expected_grads(dir / "grads.safetensors");
  int compared = 0;
  for (const auto& group : params.layout().groups()) {
    for (const auto& spec : group.params) {
      ASSERT_TRUE(expected_grads.contains(spec.name)) << spec.name;
      const Tensor reference = expected_grads.read(spec.name, DType::f32);
      EXPECT_LT(testing::relative_error(grads.get(spec.name), reference), 1e-4) << spec.name;
      ++compared;
    }
  }
  EXPECT_EQ(compared, static_cast<int>(expected_grads.names().size()));
}

// What a ZeRO rank reads at setup: ranges of a group's flat buffer straight from the files
// (crossing parameter boundaries, past the group's end into padding), in f32 and bf16, equal
// to the slices of the whole loaded model (padding zero, bf16 rounded to nearest even).
TEST_P(HfGolden, GroupRangesEqualSlicesOfTheLoadedModel) {
  const std::filesystem::path dir =
      std::filesystem::path(ULYSSES_TEST_DATA) / "golden" / GetParam();
  const model::ModelConfig config = model::resolve_model_config(dir.string());
  model::ParamBuffers params(config);
  io::load_hf_weights(dir, params);
  const io::HfWeightReader reader(dir, config);
  int ranges = 0;
  for (std::size_t g = 0; g < params.flat().size(); ++g) {
    const std::vector<float> whole = params.flat()[g].to_floats();
    const auto n = static_cast<std::int64_t>(whole.size());
    for (const int parts : {1, 3, 7}) {  // like ZeRO shards of 1, 3 and 7 ranks
      const std::int64_t s = (n + parts - 1) / parts;
      for (std::int64_t lo = 0; lo < s * parts; lo += s) {
        std::vector<float> expected(static_cast<std::size_t>(s), 0.0f);
        for (std::int64_t i = lo; i < std::min(n, lo + s); ++i)
          expected[static_cast<std::size_t>(i - lo)] = whole[static_cast<std::size_t>(i)];
        Tensor out = Tensor::full({s}, -7.0f), rounded = Tensor::empty({s}, DType::bf16);
        reader.read_group_range(g, lo, out);
        reader.read_group_range(g, lo, rounded);
        EXPECT_EQ(out.to_floats(), expected) << "group " << g << " at " << lo;
        EXPECT_EQ(rounded.to_floats(),
                  Tensor::from_floats(expected, {s}).to(DType::bf16).to_floats())
            << "group " << g << " at " << lo;
        ++ranges;
      }
    }
  }
  EXPECT_GE(ranges, 11 * static_cast<int>(params.flat().size()));
}

INSTANTIATE_TEST_SUITE_P(Transformers, HfGolden,
                         ::testing::Values("llama", "qwen2", "qwen3", "mistral"));

TEST(HfCheckpoint, SaveThenLoadRoundTripsEveryParameter) {
  const std::filesystem::path dir = std::filesystem::path(ULYSSES_TEST_DATA) / "golden" / "llama";
  const model::ModelConfig config = model::resolve_model_config(dir.string());
  model::ParamBuffers params(config), reloaded(config), reloaded_bf16(config);
  io::load_hf_weights(dir, params);
  const auto out = std::filesystem::temp_directory_path() / "ulysses_hf_roundtrip";
  std::filesystem::remove_all(out);
  io::save_hf_checkpoint(out, params, DType::f32, 20000);  // small shards: index + several files
  EXPECT_TRUE(std::filesystem::exists(out / "model.safetensors.index.json"));
  EXPECT_EQ(model::load_model_config(out / "config.json").hidden_size, config.hidden_size);
  io::load_hf_weights(out, reloaded);
  for (std::size_t i = 0; i < params.flat().size(); ++i)
    EXPECT_EQ(params.flat()[i].to_floats(), reloaded.flat()[i].to_floats());
  io::save_hf_checkpoint(out / "bf16", params, DType::bf16);
  io::load_hf_weights(out / "bf16", reloaded_bf16);
  for (std::size_t i = 0; i < params.flat().size(); ++i)
    EXPECT_LT(testing::relative_error(reloaded_bf16.flat()[i], params.flat()[i]), 4e-3);
  std::filesystem::remove_all(out);
}

TEST(HfCheckpoint, MissingOrMisshapenTensorsAreNamed) {
  const std::filesystem::path dir = std::filesystem::path(ULYSSES_TEST_DATA) / "golden" / "llama";
  model::ModelConfig config = model::resolve_model_config(dir.string());
  config.intermediate_size = 48;  // config disagrees with the weights
  model::ParamBuffers params(config);
  try {
    io::load_hf_weights(dir, params);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mlp.gate_proj.weight"), std::string::npos) << e.what();
  }
  model::ModelConfig more_layers = model::resolve_model_config(dir.string());
  more_layers.num_hidden_layers = 3;
  model::ParamBuffers params3(more_layers);
  try {
    io::load_hf_weights(dir, params3);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.2"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ulysses
