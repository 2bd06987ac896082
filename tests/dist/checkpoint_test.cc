// Training-state checkpoints under mpirun (1, 2 and 4 ranks): every rank saves tensors of its
// own (different names, shapes and values) and reads back exactly its own; refusals and
// failures on some ranks reach every rank instead of hanging.
#include "ulysses/train/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "dist_util.h"

namespace ulysses::train {
namespace {

namespace fs = std::filesystem;
using ulysses::testing::world;

// A folder shared by the ranks of this job (rank 0's pid, broadcast), emptied at start and end.
class DistCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    Tensor pid = Tensor::empty({1}, DType::i64);  // [1]
    pid.data<std::int64_t>()[0] = ::getpid();
    world().broadcast(pid, 0);
    dir_ = fs::temp_directory_path() /
           ("ulysses_dist_checkpoint_" + std::to_string(pid.data<std::int64_t>()[0]) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    if (world().rank() == 0) fs::remove_all(dir_);
    world().barrier();
  }
  void TearDown() override {
    world().barrier();
    if (world().rank() == 0) fs::remove_all(dir_);
  }

  static TrainingState state(std::int64_t step) {
    TrainingState s;
    s.step = step;
    s.data_position = 40 + step;
    s.seed = 1234;
    s.world_size = world().size();
    s.dp_shard_size = world().size();
    s.zero_stage = 2;
    s.model_fingerprint = "dist-model";
    return s;
  }

  // Rank r's tensors: "shard.<r>" f32 [r + 1, 3] and "count" i64 [1], values a function of r.
  static std::vector<std::pair<std::string, Tensor>> rank_tensors(int r) {
    Tensor shard = Tensor::empty({r + 1, 3}, DType::f32);  // [r + 1, 3]
    for (std::int64_t i = 0; i < shard.numel(); ++i)
      shard.data<float>()[i] = 0.37f * static_cast<float>(i) - 100.0f * static_cast<float>(r);
    Tensor count = Tensor::empty({1}, DType::i64);  // [1]
    count.data<std::int64_t>()[0] = (std::int64_t{1} << 40) + r;
    return {{"shard." + std::to_string(r), shard}, {"count", count}};
  }

  fs::path dir_;
};

TEST_F(DistCheckpoint, EveryRankLoadsBackExactlyItsOwnTensors) {
  const int r = world().rank();
  const int n = world().size();
  const auto mine = rank_tensors(r);
  const fs::path saved = save_training_checkpoint(world(), dir_, state(5), mine);
  EXPECT_EQ(saved, dir_ / "checkpoint-5");
  EXPECT_TRUE(is_complete_checkpoint(saved));
  EXPECT_FALSE(fs::exists(dir_ / ".checkpoint-5.tmp"));
  for (int other = 0; other < n; ++other)
    EXPECT_TRUE(fs::exists(saved / rank_file_name(other, n))) << other;

  EXPECT_EQ(resolve_checkpoint(world(), dir_, "latest"), saved);
  const LoadedCheckpoint loaded = load_training_checkpoint(world(), saved, state(5));
  EXPECT_EQ(loaded.state.step, 5);
  EXPECT_EQ(loaded.state.data_position, 45);
  ASSERT_EQ(loaded.tensors.size(), mine.size());
  for (const auto& [name, want] : mine) {
    ASSERT_TRUE(loaded.tensors.count(name)) << "rank " << r << " lacks " << name;
    const Tensor& got = loaded.tensors.at(name);
    ASSERT_EQ(got.dtype(), want.dtype());
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << name;
  }
}

TEST_F(DistCheckpoint, WorldSizeMismatchIsRefusedOnEveryRank) {
  const fs::path saved = save_training_checkpoint(world(), dir_, state(3), rank_tensors(0));
  TrainingState other = state(3);
  other.world_size = world().size() + 1;
  try {
    load_training_checkpoint(world(), saved, other);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(saved.string()), std::string::npos) << message;
    EXPECT_NE(message.find("world size " + std::to_string(world().size())), std::string::npos)
        << message;
    EXPECT_NE(message.find("world size " + std::to_string(world().size() + 1)), std::string::npos)
        << message;
    EXPECT_NE(message.find("not supported"), std::string::npos) << message;
  }
}

TEST_F(DistCheckpoint, MissingRankFileFailsEveryRankWithItsMessage) {
  const fs::path saved = save_training_checkpoint(world(), dir_, state(4), rank_tensors(0));
  const int victim = world().size() - 1;
  world().barrier();
  if (world().rank() == 0) fs::remove(saved / rank_file_name(victim, world().size()));
  world().barrier();
  try {
    load_training_checkpoint(world(), saved, state(4));
    ADD_FAILURE() << "no error on rank " << world().rank();
  } catch (const Error& e) {
    // Every rank reports the failing rank's message, naming its file.
    const std::string message = e.what();
    EXPECT_NE(message.find(rank_file_name(victim, world().size())), std::string::npos) << message;
    if (world().size() > 1) {
      EXPECT_NE(message.find("(rank " + std::to_string(victim) + ")"), std::string::npos)
          << message;
    }
  }
}

TEST_F(DistCheckpoint, SaveFailureOnOneRankFailsEveryRankAndLeavesNothing) {
  const int victim = world().size() - 1;
  auto tensors = rank_tensors(world().rank());
  if (world().rank() == victim) tensors.push_back({"__metadata__", Tensor::zeros({1}, DType::f32)});
  try {
    save_training_checkpoint(world(), dir_, state(6), tensors);
    ADD_FAILURE() << "no error on rank " << world().rank();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("__metadata__"), std::string::npos) << e.what();
  }
  world().barrier();  // rank 0 cleans up before it rethrows
  EXPECT_FALSE(fs::exists(dir_ / ".checkpoint-6.tmp"));
  EXPECT_FALSE(fs::exists(dir_ / "checkpoint-6"));
}

TEST_F(DistCheckpoint, RotationIsCollective) {
  for (const std::int64_t step : {1, 2, 3})
    save_training_checkpoint(world(), dir_, state(step), rank_tensors(world().rank()));
  rotate_checkpoints(world(), dir_, 1);
  // Every rank sees the result once rotation returns.
  EXPECT_FALSE(fs::exists(dir_ / "checkpoint-1"));
  EXPECT_FALSE(fs::exists(dir_ / "checkpoint-2"));
  EXPECT_TRUE(is_complete_checkpoint(dir_ / "checkpoint-3"));
}

}  // namespace
}  // namespace ulysses::train
