// Counter-based initialization on the CPU: the normal draws' accuracy (our log/cos against the
// library's) and statistics, range independence of fill_normal, and init_group_range against
// init_weights for arbitrary ranges, dtypes and padding.
#include "ulysses/ops/random_init.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"
#include "ulysses/core/counter_rng.h"
#include "ulysses/model/config.h"
#include "ulysses/model/params.h"

namespace ulysses {
namespace {

TEST(CounterRng, LogAndCosMatchTheLibraryToDoublePrecision) {
  Rng rng(3);
  for (int i = 0; i < 20000; ++i) {
    const double u = (static_cast<double>(rng.next_u64() >> 11) + 1) * 0x1.0p-53;
    const double l = counter_rng::log_unit(u);
    EXPECT_NEAR(l, std::log(u), 4e-16 * std::max(1.0, std::fabs(std::log(u)))) << u;
    const double x = u * 1.5707963267948966;
    EXPECT_NEAR(counter_rng::cos_quarter(x), std::cos(x), 4e-16) << x;
    EXPECT_NEAR(counter_rng::sin_quarter(x), std::sin(x), 4e-16) << x;
  }
  EXPECT_EQ(counter_rng::log_unit(1.0), 0.0);
  EXPECT_NEAR(counter_rng::log_unit(0x1.0p-53), -53 * std::log(2.0), 1e-13);
}

TEST(CounterRng, NormalDrawsHaveStandardMoments) {
  const std::uint64_t key = counter_rng::key(42, 7);
  const std::int64_t n = 1 << 20;
  double sum = 0, sum2 = 0, sum4 = 0;
  std::int64_t beyond3 = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double z = counter_rng::normal(key, static_cast<std::uint64_t>(i));
    sum += z;
    sum2 += z * z;
    sum4 += z * z * z * z;
    beyond3 += std::fabs(z) > 3;
  }
  EXPECT_NEAR(sum / n, 0.0, 5e-3);
  EXPECT_NEAR(sum2 / n, 1.0, 5e-3);
  EXPECT_NEAR(sum4 / n, 3.0, 3e-2);
  EXPECT_NEAR(static_cast<double>(beyond3) / n, 0.0027, 4e-4);
  // Different keys, different streams.
  EXPECT_NE(counter_rng::normal(counter_rng::key(42, 8), 0), counter_rng::normal(key, 0));
  EXPECT_NE(counter_rng::normal(counter_rng::key(43, 7), 0), counter_rng::normal(key, 0));
}

TEST(FillNormal, AnyRangeAloneGivesTheSameValues) {
  const Context ctx;
  const std::uint64_t key = counter_rng::key(1, 2);
  Tensor whole = Tensor::empty({1000}, DType::f32);
  ops::fill_normal(ctx, whole, key, 0, 0.5f);
  Tensor part = Tensor::empty({300}, DType::f32);
  ops::fill_normal(ctx, part, key, 450, 0.5f);
  const auto w = whole.to_floats(), p = part.to_floats();
  EXPECT_EQ(p, std::vector<float>(w.begin() + 450, w.begin() + 750));
  Tensor half = Tensor::empty({1000}, DType::bf16);
  ops::fill_normal(ctx, half, key, 0, 0.5f);
  EXPECT_EQ(half.to_floats(), whole.to(DType::bf16).to_floats());
  Tensor ones = Tensor::empty({5}, DType::bf16);
  ops::fill_constant(ctx, ones, 1.0f);
  EXPECT_EQ(ones.to_floats(), std::vector<float>(5, 1.0f));
  testing::expect_error([&] { ops::fill_normal(ctx, whole, key, -1, 1.0f); }, "first");
  testing::expect_error(
      [&] { ops::fill_normal(ctx, Tensor::empty({3}, DType::i32), key, 0, 1.0f); }, "dtype");
}

TEST(InitGroupRange, EqualsTheSliceOfInitWeightsForAnyRange) {
  model::ModelConfig c = model::preset_config("tiny");
  c.qkv_bias = true;  // biases: zeros
  model::ParamBuffers full(c);
  model::init_weights(full, 9, 0.1f);
  const Context ctx;
  for (std::size_t g : {std::size_t{0}, std::size_t{1}, full.layout().groups().size() - 1}) {
    const model::ParamGroup& group = full.layout().groups()[g];
    const auto expected = full.flat()[g].to_floats();
    const std::int64_t n = group.numel;
    for (const auto& [lo, hi] : std::vector<std::pair<std::int64_t, std::int64_t>>{
             {0, n}, {1, n / 3}, {n / 3, n / 2 + 7}, {n - 5, n + 11}}) {
      Tensor out = testing::poisoned({hi - lo});
      model::init_group_range(ctx, group, out, lo, 9, 0.1f);
      const auto got = out.to_floats();
      for (std::int64_t i = lo; i < hi; ++i) {
        const float want = i < n ? expected[i] : 0.0f;  // padding past the group: zero
        ASSERT_EQ(got[i - lo], want) << "group " << g << " element " << i;
      }
      Tensor out16 = Tensor::empty({hi - lo}, DType::bf16);
      model::init_group_range(ctx, group, out16, lo, 9, 0.1f);
      EXPECT_EQ(out16.to_floats(), out.to(DType::bf16).to_floats());
    }
  }
  // Norm weights ones, biases zeros, projections of standard deviation ~std.
  const auto bias = full.get("model.layers.0.self_attn.q_proj.bias").to_floats();
  EXPECT_EQ(bias, std::vector<float>(bias.size(), 0.0f));
  const auto norm = full.get("model.layers.0.input_layernorm.weight").to_floats();
  EXPECT_EQ(norm, std::vector<float>(norm.size(), 1.0f));
  const auto w = full.get("model.embed_tokens.weight").to_floats();
  double s2 = 0;
  for (const float v : w) s2 += static_cast<double>(v) * v;
  EXPECT_NEAR(std::sqrt(s2 / static_cast<double>(w.size())), 0.1, 0.01);

  Tensor bad = Tensor::empty({2, 2}, DType::f32);
  testing::expect_error(
      [&] { model::init_group_range(ctx, full.layout().groups()[0], bad, 0, 9, 0.1f); }, "1-D");
  testing::expect_error(
      [&] {
        model::init_group_range(ctx, full.layout().groups()[0], Tensor::empty({2}, DType::f32), -1,
                                9, 0.1f);
      },
      "lo");
}

}  // namespace
}  // namespace ulysses
