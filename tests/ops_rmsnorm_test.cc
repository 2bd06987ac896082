#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "test_util.h"
#include "ulysses/ops/rmsnorm.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::numerical_gradient;
using testing::numerical_gradient_f64;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::weighted_sum;

constexpr float kEps = 1e-5f;

// Naive float64 RMSNorm. x: [N, C], weight: [C] -> y: [N, C], rstd: [N].
void rmsnorm_reference(const std::vector<double>& x, const std::vector<double>& weight,
                       std::int64_t N, std::int64_t C, std::vector<double>& y,
                       std::vector<double>& rstd) {
  y.assign(x.size(), 0);
  rstd.assign(static_cast<std::size_t>(N), 0);
  for (std::int64_t n = 0; n < N; ++n) {
    double mean_square = 0;
    for (std::int64_t c = 0; c < C; ++c) mean_square += x[n * C + c] * x[n * C + c] / C;
    rstd[n] = 1 / std::sqrt(mean_square + kEps);
    for (std::int64_t c = 0; c < C; ++c) y[n * C + c] = x[n * C + c] * rstd[n] * weight[c];
  }
}

// sum(rmsnorm(x, weight) * g) in float64.
double reference_loss(const std::vector<double>& x, const std::vector<double>& weight,
                      const std::vector<double>& g, std::int64_t N, std::int64_t C) {
  std::vector<double> y, rstd;
  rmsnorm_reference(x, weight, N, C, y, rstd);
  double loss = 0;
  for (std::size_t i = 0; i < y.size(); ++i) loss += y[i] * g[i];
  return loss;
}

struct Problem {
  Shape shape = {2, 3, 80};  // x: [2, 3, C]; C = 80 spans two column blocks of dweight.
  std::int64_t C = 80;
  std::int64_t N = 6;
  Tensor x, weight, g;
  explicit Problem(std::uint64_t seed) {
    Rng rng(seed);
    x = random_tensor(shape, rng, 2.0f);
    weight = random_tensor({C}, rng);
    g = random_tensor(shape, rng);
  }
};

TEST(RmsNorm, ForwardMatchesFloat64Reference) {
  const Context ctx;
  Problem p(1);
  Tensor y = poisoned(p.shape);
  Tensor rstd = poisoned({p.N});
  ops::rmsnorm_forward(ctx, p.x, p.weight, kEps, y, rstd);

  std::vector<double> y_ref, rstd_ref;
  rmsnorm_reference(as_doubles(p.x), as_doubles(p.weight), p.N, p.C, y_ref, rstd_ref);
  EXPECT_LT(relative_error(as_doubles(y), y_ref), 1e-6);
  EXPECT_LT(relative_error(as_doubles(rstd), rstd_ref), 1e-6);
}

TEST(RmsNorm, BackwardMatchesFiniteDifferences) {
  const Context ctx;
  Problem p(2);
  Tensor y = poisoned(p.shape);
  Tensor rstd = poisoned({p.N});
  ops::rmsnorm_forward(ctx, p.x, p.weight, kEps, y, rstd);
  Tensor dx = Tensor::zeros(p.shape, DType::f32);
  Tensor dweight = Tensor::zeros({p.C}, DType::f32);
  ops::rmsnorm_backward(ctx, p.x, p.weight, rstd, p.g, dx, dweight);

  // (a) Finite differences of the f32 op itself.
  const auto loss_f32 = [&] {
    ops::rmsnorm_forward(ctx, p.x, p.weight, kEps, y, rstd);
    return weighted_sum(y, p.g);
  };
  EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient(p.x, loss_f32)), 1e-3);
  EXPECT_LT(relative_error(as_doubles(dweight), numerical_gradient(p.weight, loss_f32)), 1e-3);

  // (b) Finite differences of the float64 reference: tight tolerance.
  std::vector<double> x64 = as_doubles(p.x), w64 = as_doubles(p.weight);
  const std::vector<double> g64 = as_doubles(p.g);
  const auto loss_f64 = [&] { return reference_loss(x64, w64, g64, p.N, p.C); };
  EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient_f64(x64, loss_f64)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dweight), numerical_gradient_f64(w64, loss_f64)), 1e-6);
}

TEST(RmsNorm, BackwardAccumulates) {
  const Context ctx;
  Problem p(3);
  Tensor y = poisoned(p.shape);
  Tensor rstd = poisoned({p.N});
  ops::rmsnorm_forward(ctx, p.x, p.weight, kEps, y, rstd);
  Tensor dx_once = Tensor::zeros(p.shape, DType::f32);
  Tensor dweight_once = Tensor::zeros({p.C}, DType::f32);
  ops::rmsnorm_backward(ctx, p.x, p.weight, rstd, p.g, dx_once, dweight_once);
  Tensor dx = Tensor::zeros(p.shape, DType::f32);
  Tensor dweight = Tensor::zeros({p.C}, DType::f32);
  ops::rmsnorm_backward(ctx, p.x, p.weight, rstd, p.g, dx, dweight);
  ops::rmsnorm_backward(ctx, p.x, p.weight, rstd, p.g, dx, dweight);

  std::vector<double> twice_dx = as_doubles(dx_once), twice_dweight = as_doubles(dweight_once);
  for (double& v : twice_dx) v *= 2;
  for (double& v : twice_dweight) v *= 2;
  EXPECT_LT(relative_error(as_doubles(dx), twice_dx), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dweight), twice_dweight), 1e-6);
}

TEST(RmsNorm, BadArgumentsThrow) {
  const Context ctx;
  Problem p(4);
  Tensor y = poisoned(p.shape);
  Tensor rstd = poisoned({p.N});
  EXPECT_THROW(ops::rmsnorm_forward(ctx, p.x, poisoned({p.C + 1}), kEps, y, rstd), Error);
  EXPECT_THROW(ops::rmsnorm_forward(ctx, p.x, p.weight, kEps, poisoned({p.N, p.C}), rstd), Error);
  EXPECT_THROW(ops::rmsnorm_forward(ctx, p.x, p.weight, kEps, y, poisoned({p.N + 1})), Error);
  EXPECT_THROW(
      ops::rmsnorm_forward(ctx, Tensor::zeros(p.shape, DType::i32), p.weight, kEps, y, rstd),
      Error);
  EXPECT_THROW(ops::rmsnorm_forward(ctx, p.x, Tensor(), kEps, y, rstd), Error);

  ops::rmsnorm_forward(ctx, p.x, p.weight, kEps, y, rstd);
  Tensor dx = Tensor::zeros(p.shape, DType::f32);
  Tensor dweight = Tensor::zeros({p.C}, DType::f32);
  EXPECT_THROW(ops::rmsnorm_backward(ctx, p.x, p.weight, rstd, poisoned({p.N, p.C}), dx, dweight),
               Error);
  EXPECT_THROW(
      ops::rmsnorm_backward(ctx, p.x, p.weight, rstd, p.g, dx, Tensor::zeros({p.C}, DType::bf16)),
      Error);
  EXPECT_THROW(ops::rmsnorm_backward(ctx, p.x, p.weight, poisoned({p.C}), p.g, dx, dweight), Error);
  EXPECT_THROW(ops::rmsnorm_backward(ctx, p.x, p.weight, rstd, dx, dx, dweight), Error);
}

}  // namespace
}  // namespace ulysses
