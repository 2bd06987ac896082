#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <vector>

#include "test_util.h"
#include "ulysses/ops/rope.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::numerical_gradient;
using testing::numerical_gradient_f64;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::weighted_sum;

// Naive float64 rotary embedding with default frequencies 1 / theta^(2i/D).
// positions: [T], x: [T, H, D] -> [T, H, D].
std::vector<double> rope_reference(const std::vector<double>& x,
                                   const std::vector<std::int32_t>& positions, std::int64_t H,
                                   std::int64_t D, double theta) {
  const std::int64_t T = static_cast<std::int64_t>(positions.size());
  const std::int64_t half = D / 2;
  std::vector<double> out(x.size());
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < H; ++h) {
      const double* v = &x[(t * H + h) * D];
      double* o = &out[(t * H + h) * D];
      for (std::int64_t i = 0; i < half; ++i) {
        const double angle = positions[t] / std::pow(theta, 2.0 * i / D);
        o[i] = v[i] * std::cos(angle) - v[i + half] * std::sin(angle);
        o[i + half] = v[i + half] * std::cos(angle) + v[i] * std::sin(angle);
      }
    }
  }
  return out;
}

struct Problem {
  std::vector<std::int32_t> positions = {0, 1, 5, 0, 2047, 8191};  // two packed documents
  std::int64_t T = 6, H = 3, D = 8;
  ops::RopeConfig config;  // default, theta 10000
  Tensor position_tensor, x, g;
  ops::RopeTable table;
  explicit Problem(std::uint64_t seed) {
    Rng rng(seed);
    position_tensor = Tensor::from_ints(positions, {T});
    x = random_tensor({T, H, D}, rng);
    g = random_tensor({T, H, D}, rng);
    table = ops::rope_table(Context{}, config, D, position_tensor);
  }
};

TEST(Rope, DefaultAndLinearInvFreq) {
  ops::RopeConfig config;
  config.theta = 500000.0;
  const std::vector<double> inv_freq = ops::rope_inv_freq(config, 16);
  ASSERT_EQ(inv_freq.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(inv_freq[i], std::pow(500000.0, -i / 8.0), 1e-15);
  config.type = ops::RopeType::linear;
  config.factor = 4.0;
  const std::vector<double> linear = ops::rope_inv_freq(config, 16);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(linear[i], std::pow(500000.0, -i / 8.0) / 4, 1e-15);
}

TEST(Rope, Llama3InvFreqMatchesHandWrittenFormula) {
  ops::RopeConfig config;
  config.theta = 500000.0;
  config.type = ops::RopeType::llama3;
  config.factor = 8.0;
  config.low_freq_factor = 1.0;
  config.high_freq_factor = 4.0;
  config.original_max_position_embeddings = 8192;
  const std::int64_t D = 128;
  const std::vector<double> inv_freq = ops::rope_inv_freq(config, D);
  ASSERT_EQ(inv_freq.size(), 64u);

  const double low_freq_wavelen = 8192.0 / 1.0;
  const double high_freq_wavelen = 8192.0 / 4.0;
  int unchanged = 0, divided = 0, smoothed = 0;
  for (int i = 0; i < 64; ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * i / D);
    const double wavelen = 2 * std::numbers::pi / base;
    double expected;
    if (wavelen > low_freq_wavelen) {
      expected = base / 8.0;
      ++divided;
    } else if (wavelen < high_freq_wavelen) {
      expected = base;
      ++unchanged;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      expected = (1 - smooth) * base / 8.0 + smooth * base;
      EXPECT_GT(expected, base / 8.0);
      EXPECT_LT(expected, base);
      ++smoothed;
    }
    EXPECT_NEAR(inv_freq[i], expected, 1e-12 * expected) << "i = " << i;
  }
  // The highest frequencies are kept, the lowest divided by the factor, and a band in between.
  EXPECT_GT(unchanged, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(smoothed, 0);
  EXPECT_DOUBLE_EQ(inv_freq[0], 1.0);
  EXPECT_NEAR(inv_freq[63], std::pow(500000.0, -126.0 / 128) / 8.0, 1e-18);
}

TEST(Rope, UnknownTypeAndOddHeadDimThrow) {
  // Rope types are parsed once (at config validation); an unknown name stops there.
  try {
    ops::parse_rope_type("yarn", "config.json: rope_scaling");
    FAIL() << "expected Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "rope type 'yarn' is not supported (supported: default, linear, llama3)"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(ops::rope_inv_freq(ops::RopeConfig{}, 7), Error);
  for (const auto type : {ops::RopeType::default_, ops::RopeType::linear, ops::RopeType::llama3})
    EXPECT_EQ(ops::parse_rope_type(ops::rope_type_name(type), ""), type);
  EXPECT_THROW(ops::rope_table(Context{}, ops::RopeConfig{}, 7, Tensor::from_ints({0, 1}, {2})),
               Error);
}

TEST(Rope, TableMatchesFloat64) {
  Problem p(1);
  ASSERT_EQ(p.table.cos.shape(), (Shape{p.T, p.D / 2}));
  ASSERT_EQ(p.table.sin.shape(), (Shape{p.T, p.D / 2}));
  std::vector<double> cos_ref, sin_ref;
  for (std::int64_t t = 0; t < p.T; ++t) {
    for (std::int64_t i = 0; i < p.D / 2; ++i) {
      const double angle = p.positions[t] / std::pow(10000.0, 2.0 * i / p.D);
      cos_ref.push_back(std::cos(angle));
      sin_ref.push_back(std::sin(angle));
    }
  }
  EXPECT_LT(relative_error(as_doubles(p.table.cos), cos_ref), 1e-7);
  EXPECT_LT(relative_error(as_doubles(p.table.sin), sin_ref), 1e-7);
}

TEST(Rope, ForwardMatchesFloat64ReferenceAndWorksInPlace) {
  const Context ctx;
  Problem p(2);
  Tensor out = poisoned({p.T, p.H, p.D});
  ops::rope_forward(ctx, p.table, p.x, out);
  EXPECT_LT(relative_error(as_doubles(out),
                           rope_reference(as_doubles(p.x), p.positions, p.H, p.D, 10000.0)),
            1e-6);

  Tensor in_place = p.x.clone();
  ops::rope_forward(ctx, p.table, in_place, in_place);
  EXPECT_EQ(in_place.to_floats(), out.to_floats());
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  const Context ctx;
  Problem p(3);
  Tensor dx = Tensor::zeros({p.T, p.H, p.D}, DType::f32);
  ops::rope_backward(ctx, p.table, p.g, dx);

  // (a) Finite differences of the f32 op itself.
  Tensor out = poisoned({p.T, p.H, p.D});
  const auto loss_f32 = [&] {
    ops::rope_forward(ctx, p.table, p.x, out);
    return weighted_sum(out, p.g);
  };
  EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient(p.x, loss_f32)), 1e-3);

  // (b) Finite differences of the float64 reference: tight tolerance.
  std::vector<double> x64 = as_doubles(p.x);
  const std::vector<double> g64 = as_doubles(p.g);
  const auto loss_f64 = [&] {
    const std::vector<double> out64 = rope_reference(x64, p.positions, p.H, p.D, 10000.0);
    double loss = 0;
    for (std::size_t i = 0; i < out64.size(); ++i) loss += out64[i] * g64[i];
    return loss;
  };
  EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient_f64(x64, loss_f64)), 1e-6);
}

TEST(Rope, BackwardAccumulates) {
  const Context ctx;
  Problem p(4);
  Tensor dx_once = Tensor::zeros({p.T, p.H, p.D}, DType::f32);
  ops::rope_backward(ctx, p.table, p.g, dx_once);
  Tensor dx = Tensor::zeros({p.T, p.H, p.D}, DType::f32);
  ops::rope_backward(ctx, p.table, p.g, dx);
  ops::rope_backward(ctx, p.table, p.g, dx);
  std::vector<double> doubled = as_doubles(dx_once);
  for (double& v : doubled) v *= 2;
  EXPECT_LT(relative_error(as_doubles(dx), doubled), 1e-6);
}

TEST(Rope, BadArgumentsThrow) {
  const Context ctx;
  Problem p(5);
  EXPECT_THROW(ops::rope_table(ctx, p.config, p.D, Tensor::zeros({p.T}, DType::f32)), Error);
  EXPECT_THROW(ops::rope_table(ctx, p.config, p.D, Tensor::zeros({p.T, 1}, DType::i32)), Error);

  Tensor out = poisoned({p.T, p.H, p.D});
  EXPECT_THROW(ops::rope_forward(ctx, p.table, p.x, poisoned({p.T, p.H, p.D + 2})), Error);
  EXPECT_THROW(ops::rope_forward(ctx, p.table, p.x.view({p.T, p.H * p.D}), out), Error);
  EXPECT_THROW(
      ops::rope_forward(ctx, p.table, poisoned({p.T, p.H, p.D - 1}), poisoned({p.T, p.H, p.D - 1})),
      Error);
  // A table for other tokens or another head_dim.
  const ops::RopeTable short_table = {p.table.cos.rows(0, p.T - 1), p.table.sin.rows(0, p.T - 1)};
  EXPECT_THROW(ops::rope_forward(ctx, short_table, p.x, out), Error);
  const ops::RopeTable wide_table = ops::rope_table(ctx, p.config, p.D + 2, p.position_tensor);
  EXPECT_THROW(ops::rope_forward(ctx, wide_table, p.x, out), Error);
  EXPECT_THROW(ops::rope_forward(ctx, ops::RopeTable{}, p.x, out), Error);

  Tensor dx = Tensor::zeros({p.T, p.H, p.D}, DType::f32);
  EXPECT_THROW(ops::rope_backward(ctx, p.table, p.g, poisoned({p.T, p.H + 1, p.D})), Error);
  EXPECT_THROW(ops::rope_backward(ctx, p.table, dx, dx), Error);
}

}  // namespace
}  // namespace ulysses
