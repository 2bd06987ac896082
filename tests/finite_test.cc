// Non-finite guards outside the step: NaN/Inf input weights are refused at load (tensor named),
// and nothing non-finite is ever written to a checkpoint or a model, nor loaded at resume.
#include "ulysses/core/finite.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <limits>

#include "ulysses/comm/communicator.h"
#include "ulysses/io/hf_checkpoint.h"
#include "ulysses/io/safetensors.h"
#include "ulysses/model/params.h"
#include "ulysses/train/checkpoint.h"

namespace ulysses {
namespace {

namespace fs = std::filesystem;
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class Finite : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ulysses_finite_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // A saved tiny model in dir_/model, its weights as written.
  model::ParamBuffers saved_model() {
    model::ParamBuffers params(model::preset_config("tiny"));
    model::init_weights(params, 1);
    io::save_hf_checkpoint(dir_ / "model", params);
    return params;
  }
  // Rewrites dir_/model/model.safetensors with `name` replaced by `value`.
  void rewrite(const model::ParamBuffers& params, const std::string& name, const Tensor& value) {
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& group : params.layout().groups())
      for (const auto& spec : group.params)
        tensors.emplace_back(spec.name, spec.name == name ? value : params.get(spec.name));
    io::write_safetensors(dir_ / "model" / io::kSingleCheckpointName, tensors);
  }
  fs::path dir_;
};

TEST(FirstNonFinite, FindsNaNAndInfinitiesInF32AndBf16) {
  EXPECT_EQ(first_non_finite(Tensor::from_floats({1, 2, 3}, {3})), -1);
  EXPECT_EQ(first_non_finite(Tensor::from_floats({1, kNaN, 3}, {3})), 1);
  EXPECT_EQ(first_non_finite(Tensor::from_floats({1, 2, -kInf}, {3})), 2);
  EXPECT_EQ(first_non_finite(Tensor::from_floats({kInf, 2}, {2}).to(DType::bf16)), 0);
  EXPECT_EQ(first_non_finite(Tensor::from_ints({1, 2}, {2})), -1);
  const std::string message = error_of([] {
    check_finite(Tensor::from_floats({0, kNaN}, {2}), "where.safetensors", "w", "fix it");
  });
  EXPECT_NE(message.find("where.safetensors: tensor 'w'"), std::string::npos) << message;
  EXPECT_NE(message.find("element 1"), std::string::npos) << message;
  EXPECT_NE(message.find("fix it"), std::string::npos) << message;
}

TEST_F(Finite, NaNOrInfInputWeightsAreRefusedNamingTheTensor) {
  const model::ParamBuffers params = saved_model();
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  for (const float bad : {kNaN, kInf}) {
    Tensor poisoned = params.get(name);
    poisoned = poisoned.clone();
    poisoned.data<float>()[5] = bad;
    rewrite(params, name, poisoned);
    model::ParamBuffers into(model::preset_config("tiny"));
    const std::string message = error_of([&] { io::load_hf_weights(dir_ / "model", into); });
    EXPECT_NE(message.find("'" + name + "'"), std::string::npos) << message;
    EXPECT_NE(message.find("non-finite"), std::string::npos) << message;
  }
}

TEST_F(Finite, TiedModelWithADifferentLmHeadIsRefused) {
  model::ModelConfig config = model::preset_config("tiny");
  config.tie_word_embeddings = true;
  model::ParamBuffers params(config);
  model::init_weights(params, 1);
  io::save_hf_checkpoint(dir_ / "model", params);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& group : params.layout().groups())
    for (const auto& spec : group.params) tensors.emplace_back(spec.name, params.get(spec.name));
  const Tensor embedding = params.get("model.embed_tokens.weight");
  // A copy of the embedding is accepted (Transformers may save one) ...
  tensors.emplace_back("lm_head.weight", embedding.clone());
  io::write_safetensors(dir_ / "model" / io::kSingleCheckpointName, tensors);
  model::ParamBuffers into(config);
  EXPECT_NO_THROW(io::load_hf_weights(dir_ / "model", into));
  // ... a different head is not.
  tensors.back().second.data<float>()[0] += 1.0f;
  io::write_safetensors(dir_ / "model" / io::kSingleCheckpointName, tensors);
  const std::string message = error_of([&] { io::load_hf_weights(dir_ / "model", into); });
  EXPECT_NE(message.find("tie_word_embeddings"), std::string::npos) << message;
  EXPECT_NE(message.find("lm_head.weight"), std::string::npos) << message;
  // A ZeRO rank reading only its range sees the difference where it lies (the element 0 here),
  // and not in a range that does not hold it.
  const io::HfWeightReader reader(dir_ / "model", config);
  const std::int64_t n = embedding.numel();
  EXPECT_NE(error_of([&] {
              reader.read_group_range(0, 0, Tensor::empty({n / 2}, DType::f32));
            }).find("tie_word_embeddings"),
            std::string::npos);
  EXPECT_EQ(
      error_of([&] { reader.read_group_range(0, n / 2, Tensor::empty({n - n / 2}, DType::f32)); }),
      "(no error)");
}

TEST_F(Finite, NonFiniteModelIsNeverSaved) {
  model::ParamBuffers params(model::preset_config("tiny"));
  model::init_weights(params, 1);
  params.get("model.norm.weight").data<float>()[3] = kNaN;
  const std::string message = error_of([&] { io::save_hf_checkpoint(dir_ / "out", params); });
  EXPECT_NE(message.find("'model.norm.weight'"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir_ / "out")) << "nothing may be written";
}

TEST_F(Finite, NonFiniteTrainingStateIsNeverSavedNorLoaded) {
  auto world = comm::make_self_communicator();
  train::TrainingState state;
  state.step = 3;
  state.model_fingerprint = "m";
  const Tensor bad = Tensor::from_floats({1, kInf}, {2});
  const std::string message = error_of([&] {
    train::save_training_checkpoint(*world, dir_, state, {{"exp_avg.x", bad}});
  });
  EXPECT_NE(message.find("'exp_avg.x'"), std::string::npos) << message;
  EXPECT_NE(message.find("not written"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(dir_ / "checkpoint-3"));
  EXPECT_FALSE(fs::exists(dir_ / ".checkpoint-3.tmp"));

  // A checkpoint whose optimizer state became NaN on disk is refused at resume.
  const fs::path saved = train::save_training_checkpoint(
      *world, dir_, state, {{"exp_avg.x", Tensor::from_floats({1, 2}, {2})}});
  io::write_safetensors(
      saved / train::rank_file_name(0, 1), {{"exp_avg.x", Tensor::from_floats({kNaN, 2}, {2})}},
      {{"ulysses.step", "3"}, {"ulysses.rank", "0"}, {"ulysses.world_size", "1"}});
  const std::string load_message =
      error_of([&] { train::load_training_checkpoint(*world, saved, state); });
  EXPECT_NE(load_message.find("'exp_avg.x'"), std::string::npos) << load_message;
  EXPECT_NE(load_message.find("non-finite"), std::string::npos) << load_message;
}

}  // namespace
}  // namespace ulysses
