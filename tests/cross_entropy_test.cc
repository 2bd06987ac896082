#include "ulysses/ops/cross_entropy.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "test_util.h"

namespace ulysses {
namespace {

using ops::kIgnoreIndex;
using ops::LossSum;
using testing::as_doubles;
using testing::random_tensor;
using testing::relative_error;

struct Reference {
  double loss_sum = 0;
  std::int64_t valid_count = 0;
  std::vector<double> dx;       // [T, C] = grad_scale * d loss_sum / dx
  std::vector<double> dweight;  // [V, C] = grad_scale * d loss_sum / dW
};

// Float64 naive reference: full logits, log-softmax, analytic gradient.
Reference reference(const Tensor& x, const Tensor& weight, const std::vector<std::int32_t>& labels,
                    double grad_scale) {
  const std::int64_t T = x.dim(0), C = x.dim(1), V = weight.dim(0);
  const auto xs = as_doubles(x);       // [T, C]
  const auto ws = as_doubles(weight);  // [V, C]
  Reference ref;
  ref.dx.assign(static_cast<std::size_t>(T * C), 0.0);
  ref.dweight.assign(static_cast<std::size_t>(V * C), 0.0);
  for (std::int64_t t = 0; t < T; ++t) {
    if (labels[t] == kIgnoreIndex) continue;
    std::vector<double> logits(static_cast<std::size_t>(V));  // [V]
    for (std::int64_t v = 0; v < V; ++v)
      for (std::int64_t c = 0; c < C; ++c) logits[v] += xs[t * C + c] * ws[v * C + c];
    double max_logit = logits[0];
    for (double l : logits) max_logit = std::max(max_logit, l);
    double sum = 0;
    for (double l : logits) sum += std::exp(l - max_logit);
    const double lse = max_logit + std::log(sum);
    ref.loss_sum += lse - logits[labels[t]];
    ref.valid_count += 1;
    for (std::int64_t v = 0; v < V; ++v) {
      const double dlogit = grad_scale * (std::exp(logits[v] - lse) - (v == labels[t] ? 1 : 0));
      for (std::int64_t c = 0; c < C; ++c) {
        ref.dx[t * C + c] += dlogit * ws[v * C + c];
        ref.dweight[v * C + c] += dlogit * xs[t * C + c];
      }
    }
  }
  return ref;
}

struct Problem {
  Tensor x, weight;
  std::vector<std::int32_t> labels;
  Tensor label_tensor() const {
    return Tensor::from_ints(labels, {static_cast<std::int64_t>(labels.size())});
  }
};

// Random problem; every `ignore_every`-th label (if > 0) is kIgnoreIndex.
Problem make_problem(std::int64_t T, std::int64_t C, std::int64_t V, std::uint64_t seed,
                     int ignore_every = 0, float scale = 1.0f) {
  Rng rng(seed);
  Problem p{random_tensor({T, C}, rng, scale), random_tensor({V, C}, rng, scale), {}};
  for (std::int64_t t = 0; t < T; ++t) {
    const bool ignored = ignore_every > 0 && t % ignore_every == 1;
    p.labels.push_back(ignored ? kIgnoreIndex : static_cast<std::int32_t>(rng.below(V)));
  }
  return p;
}

Context with_tile(std::int64_t tile) {
  Context ctx;
  ctx.loss_tile_tokens = tile;
  return ctx;
}

TEST(CrossEntropy, MatchesFloat64Reference) {
  const Problem p = make_problem(13, 8, 37, 1, /*ignore_every=*/4);
  const Reference ref = reference(p.x, p.weight, p.labels, 0.25);
  Tensor dx = Tensor::zeros(p.x.shape(), DType::f32);
  Tensor dweight = Tensor::zeros(p.weight.shape(), DType::f32);
  const LossSum loss =
      ops::lm_head_cross_entropy(with_tile(5), p.x, p.weight, p.label_tensor(), 0.25f, dx, dweight);
  EXPECT_EQ(loss.valid_count(), ref.valid_count);
  EXPECT_EQ(loss.valid_count(), 10);
  EXPECT_NEAR(loss.loss_sum(), ref.loss_sum, 1e-6 * ref.loss_sum);
  EXPECT_LE(relative_error(as_doubles(dx), ref.dx), 1e-5);
  EXPECT_LE(relative_error(as_doubles(dweight), ref.dweight), 1e-5);
  // Ignored tokens get no gradient.
  for (std::int64_t c = 0; c < 8; ++c) EXPECT_EQ(dx.data<float>()[1 * 8 + c], 0.0f);

  // Evaluation: same loss, gradients may be undefined.
  const LossSum eval =
      ops::lm_head_cross_entropy(with_tile(5), p.x, p.weight, p.label_tensor(), 0.0f, {}, {});
  EXPECT_EQ(eval.loss_sum(), loss.loss_sum());
  EXPECT_EQ(eval.valid_count(), loss.valid_count());
}

TEST(CrossEntropy, GradientMatchesFiniteDifferences) {
  Problem p = make_problem(3, 4, 5, 2);
  const Context ctx = with_tile(2);
  const Tensor labels = p.label_tensor();
  Tensor dx = Tensor::zeros(p.x.shape(), DType::f32);
  Tensor dweight = Tensor::zeros(p.weight.shape(), DType::f32);
  ops::lm_head_cross_entropy(ctx, p.x, p.weight, labels, 1.0f, dx, dweight);
  auto loss = [&] {
    return ops::lm_head_cross_entropy(ctx, p.x, p.weight, labels, 0.0f, {}, {}).loss_sum();
  };
  EXPECT_LE(relative_error(as_doubles(dx), testing::numerical_gradient(p.x, loss)), 2e-3);
  EXPECT_LE(relative_error(as_doubles(dweight), testing::numerical_gradient(p.weight, loss)), 2e-3);
}

TEST(CrossEntropy, TilingDoesNotChangeResults) {
  const std::int64_t T = 17;
  const Problem p = make_problem(T, 12, 29, 3, /*ignore_every=*/5);
  const Tensor labels = p.label_tensor();
  auto run = [&](std::int64_t tile, Tensor& dx, Tensor& dweight) {
    dx = Tensor::zeros(p.x.shape(), DType::f32);
    dweight = Tensor::zeros(p.weight.shape(), DType::f32);
    return ops::lm_head_cross_entropy(with_tile(tile), p.x, p.weight, labels, 0.1f, dx, dweight);
  };
  Tensor dx_full, dweight_full;
  const LossSum full = run(T, dx_full, dweight_full);
  for (const std::int64_t tile : {1, 3, 7, 17, 100}) {
    Tensor dx, dweight;
    const LossSum tiled = run(tile, dx, dweight);
    EXPECT_EQ(tiled.valid_count(), full.valid_count()) << "tile " << tile;
    EXPECT_NEAR(tiled.loss_sum(), full.loss_sum(), 1e-6 * full.loss_sum()) << "tile " << tile;
    EXPECT_LE(relative_error(dx, dx_full), 1e-6) << "tile " << tile;
    EXPECT_LE(relative_error(dweight, dweight_full), 1e-6) << "tile " << tile;
  }
  // Run to run: bitwise identical.
  Tensor dx_again, dweight_again;
  EXPECT_EQ(run(3, dx_again, dweight_again).loss_sum(), run(3, dx_full, dweight_full).loss_sum());
  EXPECT_EQ(dx_again.to_floats(), dx_full.to_floats());
  EXPECT_EQ(dweight_again.to_floats(), dweight_full.to_floats());
}

TEST(CrossEntropy, AllLabelsIgnored) {
  Problem p = make_problem(6, 4, 9, 4);
  for (auto& label : p.labels) label = kIgnoreIndex;
  Rng rng(40);
  const Tensor dx0 = random_tensor(p.x.shape(), rng);
  const Tensor dweight0 = random_tensor(p.weight.shape(), rng);
  Tensor dx = dx0.clone(), dweight = dweight0.clone();
  const LossSum loss =
      ops::lm_head_cross_entropy(with_tile(4), p.x, p.weight, p.label_tensor(), 1.0f, dx, dweight);
  EXPECT_EQ(loss.loss_sum(), 0.0);
  EXPECT_EQ(loss.valid_count(), 0);
  EXPECT_EQ(dx.to_floats(), dx0.to_floats());
  EXPECT_EQ(dweight.to_floats(), dweight0.to_floats());
}

TEST(CrossEntropy, GradientsAccumulate) {
  const Problem p = make_problem(9, 6, 11, 5, /*ignore_every=*/3);
  const Reference ref = reference(p.x, p.weight, p.labels, -0.5);
  Rng rng(50);
  const Tensor dx0 = random_tensor(p.x.shape(), rng);
  const Tensor dweight0 = random_tensor(p.weight.shape(), rng);
  Tensor dx = dx0.clone(), dweight = dweight0.clone();
  ops::lm_head_cross_entropy(with_tile(4), p.x, p.weight, p.label_tensor(), -0.5f, dx, dweight);
  std::vector<double> dx_added = as_doubles(dx), dweight_added = as_doubles(dweight);
  const auto dx_start = as_doubles(dx0), dweight_start = as_doubles(dweight0);
  for (std::size_t i = 0; i < dx_added.size(); ++i) dx_added[i] -= dx_start[i];
  for (std::size_t i = 0; i < dweight_added.size(); ++i) dweight_added[i] -= dweight_start[i];
  EXPECT_LE(relative_error(dx_added, ref.dx), 1e-5);
  EXPECT_LE(relative_error(dweight_added, ref.dweight), 1e-5);
  // Rows of ignored tokens are left exactly as they were.
  for (std::int64_t t = 1; t < 9; t += 3)
    for (std::int64_t c = 0; c < 6; ++c)
      EXPECT_EQ(dx.data<float>()[t * 6 + c], dx0.data<float>()[t * 6 + c]);
}

TEST(CrossEntropy, LargeLogitsStayFinite) {
  // Entries up to 30 in x and W with C = 16: logits of several hundred to a thousand or more.
  const Problem p = make_problem(8, 16, 13, 6, /*ignore_every=*/0, /*scale=*/30.0f);
  const Reference ref = reference(p.x, p.weight, p.labels, 1.0);
  Tensor dx = Tensor::zeros(p.x.shape(), DType::f32);
  Tensor dweight = Tensor::zeros(p.weight.shape(), DType::f32);
  const LossSum loss =
      ops::lm_head_cross_entropy(with_tile(3), p.x, p.weight, p.label_tensor(), 1.0f, dx, dweight);
  ASSERT_TRUE(std::isfinite(loss.loss_sum()));
  EXPECT_GT(ref.loss_sum, 100.0);  // the test really exercises large logits
  EXPECT_NEAR(loss.loss_sum(), ref.loss_sum, 1e-5 * ref.loss_sum);
  for (float v : dx.to_floats()) ASSERT_TRUE(std::isfinite(v));
  for (float v : dweight.to_floats()) ASSERT_TRUE(std::isfinite(v));
  EXPECT_LE(relative_error(as_doubles(dx), ref.dx), 1e-3);
  EXPECT_LE(relative_error(as_doubles(dweight), ref.dweight), 1e-3);
}

TEST(CrossEntropy, OutOfRangeLabelThrowsAndWritesNothing) {
  for (const std::int32_t bad : {13, -1, -101}) {
    Problem p = make_problem(6, 4, 13, 7);
    p.labels[4] = bad;
    Tensor dx = Tensor::zeros(p.x.shape(), DType::f32);
    Tensor dweight = Tensor::zeros(p.weight.shape(), DType::f32);
    try {
      ops::lm_head_cross_entropy(with_tile(2), p.x, p.weight, p.label_tensor(), 1.0f, dx, dweight);
      ADD_FAILURE() << "label " << bad << " did not throw";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("labels[4]"), std::string::npos) << message;
      EXPECT_NE(message.find(std::to_string(bad)), std::string::npos) << message;
      EXPECT_NE(message.find("13"), std::string::npos) << message;
    }
    for (float v : dx.to_floats()) EXPECT_EQ(v, 0.0f);
    for (float v : dweight.to_floats()) EXPECT_EQ(v, 0.0f);
  }
}

TEST(CrossEntropy, BadArgumentsThrow) {
  const Problem p = make_problem(5, 4, 7, 8);
  const Tensor labels = p.label_tensor();
  Tensor dx = Tensor::zeros({5, 4}, DType::f32);
  Tensor dweight = Tensor::zeros({7, 4}, DType::f32);
  const Context ctx;
  // Channel mismatch between x and weight.
  EXPECT_THROW(
      ops::lm_head_cross_entropy(ctx, p.x, Tensor::zeros({7, 3}, DType::f32), labels, 0.0f, {}, {}),
      Error);
  // Labels: wrong length, wrong dtype.
  EXPECT_THROW(
      ops::lm_head_cross_entropy(ctx, p.x, p.weight, Tensor::from_ints({0, 1}, {2}), 0.0f, {}, {}),
      Error);
  EXPECT_THROW(
      ops::lm_head_cross_entropy(ctx, p.x, p.weight, Tensor::zeros({5}, DType::f32), 0.0f, {}, {}),
      Error);
  // x not 2-D; weight in bf16.
  EXPECT_THROW(ops::lm_head_cross_entropy(ctx, p.x.view({20}), p.weight, labels, 0.0f, {}, {}),
               Error);
  EXPECT_THROW(ops::lm_head_cross_entropy(ctx, p.x, p.weight.to(DType::bf16), labels, 0.0f, {}, {}),
               Error);
  // Gradients required when grad_scale != 0, with the right shapes.
  EXPECT_THROW(ops::lm_head_cross_entropy(ctx, p.x, p.weight, labels, 1.0f, {}, dweight), Error);
  EXPECT_THROW(ops::lm_head_cross_entropy(ctx, p.x, p.weight, labels, 1.0f, dx, {}), Error);
  EXPECT_THROW(ops::lm_head_cross_entropy(ctx, p.x, p.weight, labels, 1.0f, dx,
                                          Tensor::zeros({7, 5}, DType::f32)),
               Error);
  EXPECT_THROW(ops::lm_head_cross_entropy(ctx, p.x, p.weight, labels, 1.0f,
                                          Tensor::zeros({4, 4}, DType::f32), dweight),
               Error);
  // Tile must be positive.
  EXPECT_THROW(ops::lm_head_cross_entropy(with_tile(0), p.x, p.weight, labels, 0.0f, {}, {}),
               Error);
  EXPECT_NO_THROW(ops::lm_head_cross_entropy(ctx, p.x, p.weight, labels, 1.0f, dx, dweight));
}

}  // namespace
}  // namespace ulysses
