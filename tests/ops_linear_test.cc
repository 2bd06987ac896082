#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "test_util.h"
#include "ulysses/ops/linear.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::numerical_gradient;
using testing::numerical_gradient_f64;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::weighted_sum;

// Naive float64 y = x W^T + b. x: [N, K], weight: [M, K], bias: [M] or empty -> [N, M].
std::vector<double> linear_reference(const std::vector<double>& x,
                                     const std::vector<double>& weight,
                                     const std::vector<double>& bias, std::int64_t N,
                                     std::int64_t K, std::int64_t M) {
  std::vector<double> y(static_cast<std::size_t>(N * M));
  for (std::int64_t n = 0; n < N; ++n) {
    for (std::int64_t m = 0; m < M; ++m) {
      double sum = bias.empty() ? 0.0 : bias[m];
      for (std::int64_t k = 0; k < K; ++k) sum += x[n * K + k] * weight[m * K + k];
      y[n * M + m] = sum;
    }
  }
  return y;
}

struct Problem {
  std::int64_t N, K, M;
  Tensor x, weight, bias, g;
  Problem(std::int64_t n, std::int64_t k, std::int64_t m, std::uint64_t seed) : N(n), K(k), M(m) {
    Rng rng(seed);
    x = random_tensor({N, K}, rng);
    weight = random_tensor({M, K}, rng);
    bias = random_tensor({M}, rng);
    g = random_tensor({N, M}, rng);
  }
};

TEST(Linear, ForwardMatchesFloat64Reference) {
  const Context ctx;
  for (const auto& [N, K, M] : {std::tuple{5, 7, 4}, std::tuple{33, 65, 70}}) {
    Problem p(N, K, M, 1);
    Tensor y = poisoned({p.N, p.M});
    ops::linear_forward(ctx, p.x, p.weight, p.bias, y);
    EXPECT_LT(relative_error(as_doubles(y), linear_reference(as_doubles(p.x), as_doubles(p.weight),
                                                             as_doubles(p.bias), p.N, p.K, p.M)),
              1e-6);

    Tensor y_no_bias = poisoned({p.N, p.M});
    ops::linear_forward(ctx, p.x, p.weight, Tensor(), y_no_bias);
    EXPECT_LT(
        relative_error(as_doubles(y_no_bias),
                       linear_reference(as_doubles(p.x), as_doubles(p.weight), {}, p.N, p.K, p.M)),
        1e-6);
  }
}

TEST(Linear, BackwardMatchesFiniteDifferences) {
  const Context ctx;
  Problem p(6, 5, 70, 2);  // M = 70 spans two column blocks of dbias.
  Tensor dx = Tensor::zeros({p.N, p.K}, DType::f32);
  Tensor dweight = Tensor::zeros({p.M, p.K}, DType::f32);
  Tensor dbias = Tensor::zeros({p.M}, DType::f32);
  ops::linear_backward(ctx, p.x, p.weight, p.g, dx, dweight, dbias);

  // (a) Finite differences of the f32 op itself.
  Tensor y = poisoned({p.N, p.M});
  const auto loss_f32 = [&] {
    ops::linear_forward(ctx, p.x, p.weight, p.bias, y);
    return weighted_sum(y, p.g);
  };
  EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient(p.x, loss_f32)), 1e-3);
  EXPECT_LT(relative_error(as_doubles(dweight), numerical_gradient(p.weight, loss_f32)), 1e-3);
  EXPECT_LT(relative_error(as_doubles(dbias), numerical_gradient(p.bias, loss_f32)), 1e-3);

  // (b) Finite differences of the float64 reference: tight tolerance.
  std::vector<double> x64 = as_doubles(p.x), w64 = as_doubles(p.weight), b64 = as_doubles(p.bias);
  const std::vector<double> g64 = as_doubles(p.g);
  const auto loss_f64 = [&] {
    const std::vector<double> y64 = linear_reference(x64, w64, b64, p.N, p.K, p.M);
    double loss = 0;
    for (std::size_t i = 0; i < y64.size(); ++i) loss += y64[i] * g64[i];
    return loss;
  };
  EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient_f64(x64, loss_f64)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dweight), numerical_gradient_f64(w64, loss_f64)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dbias), numerical_gradient_f64(b64, loss_f64)), 1e-6);
}

TEST(Linear, BackwardAccumulatesOverwritesAndSkipsUndefinedGradients) {
  const Context ctx;
  Problem p(4, 6, 3, 3);
  Tensor dx_once = Tensor::zeros({p.N, p.K}, DType::f32);
  Tensor dweight_once = Tensor::zeros({p.M, p.K}, DType::f32);
  Tensor dbias_once = Tensor::zeros({p.M}, DType::f32);
  ops::linear_backward(ctx, p.x, p.weight, p.g, dx_once, dweight_once, dbias_once);

  Tensor dx = Tensor::zeros({p.N, p.K}, DType::f32);
  Tensor dweight = Tensor::zeros({p.M, p.K}, DType::f32);
  Tensor dbias = Tensor::zeros({p.M}, DType::f32);
  ops::linear_backward(ctx, p.x, p.weight, p.g, dx, dweight, dbias);
  ops::linear_backward(ctx, p.x, p.weight, p.g, dx, dweight, dbias);
  const auto doubled = [](const Tensor& t) {
    std::vector<double> v = as_doubles(t);
    for (double& e : v) e *= 2;
    return v;
  };
  EXPECT_LT(relative_error(as_doubles(dx), doubled(dx_once)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dweight), doubled(dweight_once)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dbias), doubled(dbias_once)), 1e-6);

  // Without dx and dbias only dweight is written.
  Tensor dweight_only = Tensor::zeros({p.M, p.K}, DType::f32);
  ops::linear_backward(ctx, p.x, p.weight, p.g, Tensor(), dweight_only, Tensor());
  EXPECT_LT(relative_error(as_doubles(dweight_only), as_doubles(dweight_once)), 1e-6);

  // GradWrite::overwrite: dx from NaN (never read) gets the bits of one accumulation into zeros;
  // dweight still accumulates.
  Tensor dx_w = poisoned({p.N, p.K});
  Tensor dweight_w = Tensor::zeros({p.M, p.K}, DType::f32);
  ops::linear_backward(ctx, p.x, p.weight, p.g, dx_w, dweight_w, Tensor(),
                       ops::GradWrite::overwrite);
  EXPECT_EQ(as_doubles(dx_w), as_doubles(dx_once));
  EXPECT_EQ(as_doubles(dweight_w), as_doubles(dweight_once));
}

TEST(Linear, BadArgumentsThrow) {
  const Context ctx;
  Problem p(4, 6, 3, 4);
  Tensor y = poisoned({p.N, p.M});
  EXPECT_THROW(ops::linear_forward(ctx, p.x, poisoned({p.M, p.K + 1}), p.bias, y), Error);
  EXPECT_THROW(ops::linear_forward(ctx, p.x, p.weight, poisoned({p.M + 1}), y), Error);
  EXPECT_THROW(ops::linear_forward(ctx, p.x, p.weight, p.bias, poisoned({p.N, p.M + 1})), Error);
  EXPECT_THROW(ops::linear_forward(ctx, Tensor::zeros({p.N, p.K}, DType::i32), p.weight, p.bias, y),
               Error);
  EXPECT_THROW(ops::linear_forward(ctx, p.x.view({p.N * p.K}), p.weight, p.bias, y), Error);

  Tensor dx = Tensor::zeros({p.N, p.K}, DType::f32);
  Tensor dweight = Tensor::zeros({p.M, p.K}, DType::f32);
  Tensor dbias = Tensor::zeros({p.M}, DType::f32);
  EXPECT_THROW(ops::linear_backward(ctx, p.x, p.weight, poisoned({p.N, p.K}), dx, dweight, dbias),
               Error);
  EXPECT_THROW(ops::linear_backward(ctx, p.x, p.weight, p.g, poisoned({p.K, p.N}), dweight, dbias),
               Error);
  EXPECT_THROW(ops::linear_backward(ctx, p.x, p.weight, p.g, dx, Tensor(), dbias), Error);
  EXPECT_THROW(ops::linear_backward(ctx, p.x, p.weight, p.g, dx, dweight, poisoned({p.K})), Error);
}

}  // namespace
}  // namespace ulysses
