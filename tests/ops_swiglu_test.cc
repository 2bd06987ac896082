#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <vector>

#include "test_util.h"
#include "ulysses/ops/swiglu.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::numerical_gradient;
using testing::numerical_gradient_f64;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::weighted_sum;

// Naive float64 silu(gate) * up, elementwise.
std::vector<double> swiglu_reference(const std::vector<double>& gate,
                                     const std::vector<double>& up) {
  std::vector<double> out(gate.size());
  for (std::size_t i = 0; i < gate.size(); ++i) out[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
  return out;
}

struct Problem {
  Shape shape = {4, 9};  // [N, I]
  Tensor gate, up, g;
  explicit Problem(std::uint64_t seed) {
    Rng rng(seed);
    gate = random_tensor(shape, rng, 4.0f);  // reaches well into both tails of the sigmoid
    up = random_tensor(shape, rng);
    g = random_tensor(shape, rng);
  }
};

TEST(SwiGlu, ForwardMatchesFloat64Reference) {
  const Context ctx;
  Problem p(1);
  Tensor out = poisoned(p.shape);
  ops::swiglu_forward(ctx, p.gate, p.up, out);
  EXPECT_LT(relative_error(as_doubles(out), swiglu_reference(as_doubles(p.gate), as_doubles(p.up))),
            1e-6);

  // Saturated gates stay finite: silu(-100) = -0, silu(100) = 100.
  Tensor gate = Tensor::from_floats({-100.0f, 100.0f}, {1, 2});
  Tensor up = Tensor::from_floats({1.0f, 1.0f}, {1, 2});
  Tensor saturated = poisoned({1, 2});
  ops::swiglu_forward(ctx, gate, up, saturated);
  EXPECT_NEAR(saturated.data<float>()[0], 0.0f, 1e-30f);
  EXPECT_FLOAT_EQ(saturated.data<float>()[1], 100.0f);
}

TEST(SwiGlu, BackwardMatchesFiniteDifferences) {
  const Context ctx;
  Problem p(2);
  Tensor dgate = Tensor::zeros(p.shape, DType::f32);
  Tensor dup = Tensor::zeros(p.shape, DType::f32);
  ops::swiglu_backward(ctx, p.gate, p.up, p.g, dgate, dup);

  // (a) Finite differences of the f32 op itself.
  Tensor out = poisoned(p.shape);
  const auto loss_f32 = [&] {
    ops::swiglu_forward(ctx, p.gate, p.up, out);
    return weighted_sum(out, p.g);
  };
  EXPECT_LT(relative_error(as_doubles(dgate), numerical_gradient(p.gate, loss_f32)), 1e-3);
  EXPECT_LT(relative_error(as_doubles(dup), numerical_gradient(p.up, loss_f32)), 1e-3);

  // (b) Finite differences of the float64 reference: tight tolerance.
  std::vector<double> gate64 = as_doubles(p.gate), up64 = as_doubles(p.up);
  const std::vector<double> g64 = as_doubles(p.g);
  const auto loss_f64 = [&] {
    const std::vector<double> out64 = swiglu_reference(gate64, up64);
    double loss = 0;
    for (std::size_t i = 0; i < out64.size(); ++i) loss += out64[i] * g64[i];
    return loss;
  };
  EXPECT_LT(relative_error(as_doubles(dgate), numerical_gradient_f64(gate64, loss_f64)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dup), numerical_gradient_f64(up64, loss_f64)), 1e-6);
}

TEST(SwiGlu, BackwardAccumulatesOrOverwrites) {
  const Context ctx;
  Problem p(3);
  Tensor dgate_once = Tensor::zeros(p.shape, DType::f32);
  Tensor dup_once = Tensor::zeros(p.shape, DType::f32);
  ops::swiglu_backward(ctx, p.gate, p.up, p.g, dgate_once, dup_once);
  Tensor dgate = Tensor::zeros(p.shape, DType::f32);
  Tensor dup = Tensor::zeros(p.shape, DType::f32);
  ops::swiglu_backward(ctx, p.gate, p.up, p.g, dgate, dup);
  ops::swiglu_backward(ctx, p.gate, p.up, p.g, dgate, dup);
  const auto doubled = [](const Tensor& t) {
    std::vector<double> v = as_doubles(t);
    for (double& e : v) e *= 2;
    return v;
  };
  EXPECT_LT(relative_error(as_doubles(dgate), doubled(dgate_once)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dup), doubled(dup_once)), 1e-6);

  // GradWrite::overwrite: from NaN (never read), the same bits as one accumulation into zeros.
  Tensor dgate_w = testing::poisoned(p.shape), dup_w = testing::poisoned(p.shape);
  ops::swiglu_backward(ctx, p.gate, p.up, p.g, dgate_w, dup_w, ops::GradWrite::overwrite);
  EXPECT_EQ(as_doubles(dgate_w), as_doubles(dgate_once));
  EXPECT_EQ(as_doubles(dup_w), as_doubles(dup_once));
}

TEST(SwiGlu, BadArgumentsThrow) {
  const Context ctx;
  Problem p(4);
  EXPECT_THROW(ops::swiglu_forward(ctx, p.gate, poisoned({4, 8}), poisoned(p.shape)), Error);
  EXPECT_THROW(ops::swiglu_forward(ctx, p.gate, p.up, poisoned({9, 4})), Error);
  EXPECT_THROW(ops::swiglu_forward(ctx, p.gate.view({36}), p.up.view({36}), poisoned({36})), Error);
  EXPECT_THROW(
      ops::swiglu_forward(ctx, Tensor::zeros(p.shape, DType::i32), p.up, poisoned(p.shape)), Error);
  Tensor dgate = Tensor::zeros(p.shape, DType::f32);
  EXPECT_THROW(ops::swiglu_backward(ctx, p.gate, p.up, p.g, dgate, poisoned({4, 10})), Error);
  EXPECT_THROW(ops::swiglu_backward(ctx, p.gate, p.up, poisoned({4, 10}), dgate,
                                    Tensor::zeros(p.shape, DType::f32)),
               Error);
  EXPECT_THROW(ops::swiglu_backward(ctx, p.gate, p.up, p.g, dgate, Tensor()), Error);
}

}  // namespace
}  // namespace ulysses
