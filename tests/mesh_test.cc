// Layout validation: every refusal names the fix.
#include <gtest/gtest.h>

#include "ulysses/parallel/mesh.h"

namespace ulysses::parallel {
namespace {

std::string message_of(const ParallelConfig& c, int world, const model::ModelConfig& m) {
  try {
    resolve_parallel_config(c, world, m);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

model::ModelConfig heads(std::int64_t h, std::int64_t kv) {
  model::ModelConfig m = model::preset_config("tiny");
  m.num_attention_heads = h;
  m.num_key_value_heads = kv;
  return m;
}

TEST(ParallelConfig, DerivesDpShardAndAcceptsValidLayouts) {
  EXPECT_EQ(resolve_parallel_config({2, 0, 1}, 8, heads(8, 2)).dp_shard_size, 4);
  EXPECT_EQ(resolve_parallel_config({4, 0, 2}, 8, heads(8, 2)).dp_shard_size, 1);
  EXPECT_EQ(resolve_parallel_config({8, 1, 1}, 8, heads(8, 2)).sp_size, 8);  // kv replicated
}

TEST(ParallelConfig, ProductMustEqualWorld) {
  const auto m = message_of({2, 2, 1}, 2, heads(4, 2));
  EXPECT_NE(m.find("= 4 but the job has 2 ranks"), std::string::npos) << m;
  const auto n = message_of({3, 0, 1}, 4, heads(6, 3));
  EXPECT_NE(n.find("not divisible by --sp-size 3"), std::string::npos) << n;
}

TEST(ParallelConfig, HeadsMustDivideAndListsWorkingSpSizes) {
  const auto m = message_of({3, 1, 1}, 3, heads(4, 2));
  EXPECT_NE(m.find("does not divide num_attention_heads 4"), std::string::npos) << m;
  EXPECT_NE(m.find("sp sizes that work: 1, 2, 4"), std::string::npos) << m;
}

TEST(ParallelConfig, KvHeadsMustSplitOrReplicate) {
  // 24 heads, 8 kv heads, sp 3: 24 % 3 == 0 but 8 % 3 != 0 and 3 % 8 != 0.
  const auto m = message_of({3, 1, 1}, 3, heads(24, 8));
  EXPECT_NE(m.find("num_key_value_heads 8"), std::string::npos) << m;
}

}  // namespace
}  // namespace ulysses::parallel
