// Training-state checkpoints in a single process (self communicator): round trip, folder layout,
// crash leftovers, "latest" resolution, refusals and rotation.
#include "ulysses/train/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "ulysses/io/safetensors.h"

namespace ulysses::train {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ulysses_checkpoint_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    world_ = comm::make_self_communicator();
  }
  void TearDown() override { fs::remove_all(dir_); }

  static TrainingState state_at(std::int64_t step) {
    TrainingState state;
    state.step = step;
    state.data_position = 1000 + step;
    state.seed = 0xfedcba9876543210ull;  // above INT64_MAX: must round-trip as unsigned
    state.world_size = 1;
    state.zero_stage = 1;
    state.model_fingerprint = "tiny-model";
    state.extra = {{"lr", 3e-4}, {"schedule", "cosine"}};
    return state;
  }

  fs::path save(std::int64_t step) {
    const Tensor moment = Tensor::from_floats({1.0f, 2.0f}, {2});  // f32 [2]
    return save_training_checkpoint(*world_, dir_, state_at(step), {{"m", moment}});
  }

  // Names directly inside dir_.
  std::set<std::string> entries() const {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_))
      names.insert(entry.path().filename().string());
    return names;
  }

  // Expects `fn` to throw an Error containing every fragment.
  template <typename Fn>
  static void expect_error(Fn&& fn, const std::vector<std::string>& fragments) {
    try {
      fn();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string message = e.what();
      for (const auto& fragment : fragments)
        EXPECT_NE(message.find(fragment), std::string::npos)
            << "want '" << fragment << "' in: " << message;
    }
  }

  fs::path dir_;
  std::unique_ptr<comm::Communicator> world_;
};

void expect_same_bits(const Tensor& got, const Tensor& want) {
  ASSERT_EQ(got.dtype(), want.dtype());
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
}

TEST_F(Checkpoint, RoundTripIsBitExact) {
  // f32 [2, 3] with values that any float conversion or text round trip would disturb.
  Tensor moments = Tensor::empty({2, 3}, DType::f32);
  float* m = moments.data<float>();
  m[0] = -0.0f;
  m[1] = std::numeric_limits<float>::denorm_min();
  m[2] = std::numeric_limits<float>::max();  // (non-finite values are refused: finite_test)
  m[3] = 0.1f;
  m[4] = -3.4e38f;
  std::uint32_t odd_bits = 0x3f812345u;  // a float no decimal text round trip keeps by accident
  std::memcpy(&m[5], &odd_bits, sizeof odd_bits);
  // i64 [4] with values beyond the exact range of double.
  Tensor counters = Tensor::empty({4}, DType::i64);
  std::int64_t* c = counters.data<std::int64_t>();
  c[0] = std::numeric_limits<std::int64_t>::max();
  c[1] = std::numeric_limits<std::int64_t>::min();
  c[2] = (std::int64_t{1} << 53) + 1;
  c[3] = -7;
  const Tensor scalar = Tensor::from_floats({42.5f}, {});  // f32 []

  TrainingState state = state_at(7);
  state.sp_size = 1;
  state.dp_shard_size = 1;
  state.dp_replicate_size = 1;
  const fs::path saved = save_training_checkpoint(
      *world_, dir_, state, {{"optimizer.m", moments}, {"counters", counters}, {"s", scalar}});
  EXPECT_EQ(saved, dir_ / "checkpoint-7");

  const LoadedCheckpoint loaded = load_training_checkpoint(*world_, saved, state);
  EXPECT_EQ(loaded.state.step, 7);
  EXPECT_EQ(loaded.state.data_position, 1007);
  EXPECT_EQ(loaded.state.seed, 0xfedcba9876543210ull);
  EXPECT_EQ(loaded.state.zero_stage, 1);
  EXPECT_EQ(loaded.state.model_fingerprint, "tiny-model");
  EXPECT_EQ(loaded.state.extra, state.extra);
  ASSERT_EQ(loaded.tensors.size(), 3u);
  expect_same_bits(loaded.tensors.at("optimizer.m"), moments);
  expect_same_bits(loaded.tensors.at("counters"), counters);
  expect_same_bits(loaded.tensors.at("s"), scalar);
}

TEST_F(Checkpoint, LayoutHasRankFileStateHookFilesAndMarkerButNoTmp) {
  bool hook_called = false;
  const fs::path saved = save_training_checkpoint(
      *world_, dir_, state_at(3), {{"m", Tensor::from_floats({1.0f}, {1})}},
      [&](const fs::path& tmp_dir) {
        hook_called = true;
        EXPECT_EQ(tmp_dir, dir_ / ".checkpoint-3.tmp");
        // Written before the hook runs; the marker is not.
        EXPECT_TRUE(fs::exists(tmp_dir / "trainer_state.json"));
        EXPECT_TRUE(fs::exists(tmp_dir / "rank-0-of-1.safetensors"));
        EXPECT_FALSE(fs::exists(tmp_dir / "COMPLETE"));
        fs::create_directories(tmp_dir / "hf");
        std::ofstream(tmp_dir / "hf" / "config.json") << "{}";
      });
  EXPECT_TRUE(hook_called);
  EXPECT_EQ(entries(), std::set<std::string>{"checkpoint-3"});
  std::set<std::string> inside;
  for (const auto& entry : fs::directory_iterator(saved))
    inside.insert(entry.path().filename().string());
  EXPECT_EQ(inside, (std::set<std::string>{"COMPLETE", "hf", "rank-0-of-1.safetensors",
                                           "trainer_state.json"}));
  EXPECT_TRUE(fs::exists(saved / "hf" / "config.json"));
  EXPECT_TRUE(is_complete_checkpoint(saved));
  // The rank file is a plain safetensors file with its identity in the metadata.
  io::SafetensorsReader reader(saved / "rank-0-of-1.safetensors");
  EXPECT_EQ(reader.metadata().at("ulysses.step"), "3");
  EXPECT_EQ(reader.metadata().at("ulysses.rank"), "0");
}

TEST_F(Checkpoint, FailingHookLeavesNoFolderBehind) {
  expect_error(
      [&] {
        save_training_checkpoint(*world_, dir_, state_at(4), {},
                                 [](const fs::path&) { throw Error("disk full (simulated)"); });
      },
      {"disk full (simulated)"});
  EXPECT_TRUE(entries().empty());
}

TEST_F(Checkpoint, StaleTmpFolderIsReplaced) {
  fs::create_directories(dir_ / ".checkpoint-5.tmp");
  std::ofstream(dir_ / ".checkpoint-5.tmp" / "junk.bin") << "half-written";
  const fs::path saved = save(5);
  EXPECT_EQ(entries(), std::set<std::string>{"checkpoint-5"});
  EXPECT_FALSE(fs::exists(saved / "junk.bin"));
  EXPECT_TRUE(is_complete_checkpoint(saved));
}

TEST_F(Checkpoint, LatestPicksHighestCompleteAndWarnsAboutIncomplete) {
  save(2);
  save(10);
  save(9);
  // A newer folder without the marker (a save killed between rename and marker).
  fs::create_directories(dir_ / "checkpoint-12");
  fs::create_directories(dir_ / "checkpoint-notanumber");
  ::testing::internal::CaptureStderr();
  const fs::path latest = resolve_checkpoint(*world_, dir_, "latest");
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(latest, dir_ / "checkpoint-10");
  EXPECT_NE(log.find((dir_ / "checkpoint-12").string()), std::string::npos) << log;
  EXPECT_NE(log.find("interrupted"), std::string::npos) << log;
  // Numeric, not lexicographic, order; an explicit complete folder resolves to itself.
  EXPECT_EQ(resolve_checkpoint(*world_, dir_, (dir_ / "checkpoint-9").string()),
            dir_ / "checkpoint-9");
}

TEST_F(Checkpoint, LatestWithoutCompleteCheckpointIsAnError) {
  expect_error([&] { resolve_checkpoint(*world_, dir_, "latest"); },
               {dir_.string(), "no complete checkpoint"});
  fs::create_directories(dir_ / "checkpoint-1");
  ::testing::internal::CaptureStderr();
  expect_error([&] { resolve_checkpoint(*world_, dir_, "latest"); },
               {dir_.string(), "no complete checkpoint"});
  ::testing::internal::GetCapturedStderr();
  expect_error([&] { resolve_checkpoint(*world_, dir_, (dir_ / "nowhere").string()); },
               {(dir_ / "nowhere").string(), "no such checkpoint folder"});
}

TEST_F(Checkpoint, IncompleteFolderIsRefusedWithReason) {
  const fs::path saved = save(6);
  fs::remove(saved / "COMPLETE");
  const std::vector<std::string> reason = {saved.string(), "COMPLETE", "interrupted"};
  expect_error([&] { resolve_checkpoint(*world_, dir_, saved.string()); }, reason);
  expect_error([&] { load_training_checkpoint(*world_, saved, state_at(6)); }, reason);
}

TEST_F(Checkpoint, MismatchesAreRefusedNamingSavedAndCurrentValues) {
  const fs::path saved = save(8);
  const std::string refuse = "not supported";

  TrainingState other_model = state_at(8);
  other_model.model_fingerprint = "another-model";
  expect_error([&] { load_training_checkpoint(*world_, saved, other_model); },
               {saved.string(), "tiny-model", "another-model", refuse});

  TrainingState bigger_world = state_at(8);
  bigger_world.world_size = 4;
  expect_error([&] { load_training_checkpoint(*world_, saved, bigger_world); },
               {saved.string(), "world size 1", "world size 4", refuse});

  TrainingState other_stage = state_at(8);
  other_stage.zero_stage = 2;
  expect_error([&] { load_training_checkpoint(*world_, saved, other_stage); },
               {saved.string(), "ZeRO stage 1", "ZeRO stage 2", refuse});

  TrainingState other_layout = state_at(8);
  other_layout.sp_size = 2;
  expect_error([&] { load_training_checkpoint(*world_, saved, other_layout); },
               {saved.string(), "sp_size", refuse});

  // Fields that legitimately differ at resume time are not compared.
  TrainingState fresh = state_at(0);
  EXPECT_EQ(load_training_checkpoint(*world_, saved, fresh).state.step, 8);
}

TEST_F(Checkpoint, SaveRefusesWorldSizeOtherThanTheCommunicators) {
  TrainingState state = state_at(1);
  state.world_size = 2;
  expect_error([&] { save_training_checkpoint(*world_, dir_, state, {}); },
               {"world_size is 2", "1 ranks"});
}

TEST_F(Checkpoint, CorruptStateFileNamesTheFile) {
  const fs::path saved = save(2);
  std::ofstream(saved / "trainer_state.json") << "{\"format\": \"ulysses-training-state\"";
  expect_error([&] { load_training_checkpoint(*world_, saved, state_at(2)); },
               {(saved / "trainer_state.json").string(), "invalid JSON"});
  std::ofstream(saved / "trainer_state.json") << "{\"format\": \"ulysses-training-state\", "
                                                 "\"version\": 1}";
  expect_error([&] { load_training_checkpoint(*world_, saved, state_at(2)); },
               {(saved / "trainer_state.json").string(), "missing field \"step\""});
}

TEST_F(Checkpoint, RotationKeepsNewestCompleteAndDropsOlderIncomplete) {
  for (const std::int64_t step : {1, 2, 3, 4, 20}) save(step);
  fs::create_directories(dir_ / "checkpoint-15");      // incomplete, older than 20: removed
  fs::create_directories(dir_ / "checkpoint-30");      // incomplete, newer: kept
  fs::create_directories(dir_ / ".checkpoint-5.tmp");  // stale, older: removed
  fs::create_directories(dir_ / "runs");               // not a checkpoint: untouched
  ::testing::internal::CaptureStderr();
  rotate_checkpoints(*world_, dir_, 2);
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(entries(),
            (std::set<std::string>{"checkpoint-4", "checkpoint-20", "checkpoint-30", "runs"}));
  ::testing::internal::CaptureStderr();
  rotate_checkpoints(*world_, dir_, 0);  // keep all complete ones
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(entries().size(), 4u);
  rotate_checkpoints(*world_, dir_ / "missing", 1);  // nothing to do, no error
}

TEST_F(Checkpoint, RotationRemovesOnlyThisRunsCheckpoints) {
  const auto save_of = [&](const std::string& run_id, std::int64_t step) {
    TrainingState state = state_at(step);
    state.run_id = run_id;
    save_training_checkpoint(*world_, dir_, state, {});
  };
  for (const std::int64_t step : {1, 2, 3}) save_of("old-run", step);
  for (const std::int64_t step : {4, 5, 6}) save_of("new-run", step);
  fs::create_directories(dir_ / "checkpoint-0");  // no state file: nobody's, untouched
  ::testing::internal::CaptureStderr();
  rotate_checkpoints(*world_, dir_, 1, "new-run");
  ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(entries(), (std::set<std::string>{"checkpoint-0", "checkpoint-1", "checkpoint-2",
                                              "checkpoint-3", "checkpoint-6"}));
}

TEST_F(Checkpoint, RunIdRoundTripsAndIsChecked) {
  TrainingState state = state_at(3);
  state.run_id = "0123456789abcdef";
  const json saved = training_state_to_json(state);
  EXPECT_EQ(training_state_from_json(saved, "x").run_id, "0123456789abcdef");
  json old = saved;
  old.erase("run_id");  // checkpoints of older builds: no run
  EXPECT_EQ(training_state_from_json(old, "x").run_id, "");
  json bad = saved;
  bad["run_id"] = 5;
  expect_error([&] { training_state_from_json(bad, "state.json"); }, {"state.json", "run_id"});
}

TEST_F(Checkpoint, LatestSkipsCheckpointsOfAnIncompatibleRun) {
  save(2);
  TrainingState other = state_at(5);
  other.model_fingerprint = "another-model";
  save_training_checkpoint(*world_, dir_, other, {});
  const TrainingState expected = state_at(0);
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(resolve_checkpoint(*world_, dir_, "latest", &expected), dir_ / "checkpoint-2");
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("checkpoint-5"), std::string::npos) << log;
  EXPECT_NE(log.find("another-model"), std::string::npos) << log;
  fs::remove_all(dir_ / "checkpoint-2");
  ::testing::internal::CaptureStderr();
  expect_error([&] { resolve_checkpoint(*world_, dir_, "latest", &expected); }, {"compatible run"});
  ::testing::internal::GetCapturedStderr();
}

TEST(ModelFingerprint, IsReadableAndDistinguishesArchitectures) {
  const model::ModelConfig tiny = model::preset_config("tiny");
  model::ModelConfig wider = tiny;
  wider.intermediate_size += 8;
  model::ModelConfig stored_as_f32 = tiny;
  stored_as_f32.torch_dtype = "float32";
  const std::string fingerprint = model_fingerprint(tiny);
  EXPECT_NE(fingerprint.find(model::model_type_name(tiny.model_type)), std::string::npos)
      << fingerprint;
  EXPECT_NE(fingerprint.find("hidden=" + std::to_string(tiny.hidden_size)), std::string::npos);
  EXPECT_EQ(fingerprint, model_fingerprint(tiny));
  EXPECT_NE(fingerprint, model_fingerprint(wider));
  EXPECT_EQ(fingerprint, model_fingerprint(stored_as_f32));
}

}  // namespace
}  // namespace ulysses::train
