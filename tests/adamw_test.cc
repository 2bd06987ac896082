#include "ulysses/ops/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"

namespace ulysses {
namespace {

using ops::AdamWConfig;
using testing::random_tensor;
using testing::relative_error;

// Float64 reference of one torch.optim.AdamW update, written from the formulas.
struct ReferenceAdamW {
  std::vector<double> param, exp_avg, exp_avg_sq;

  void step(const AdamWConfig& c, std::int64_t t, const std::vector<float>& grad) {
    const double lr = c.lr, beta1 = c.beta1, beta2 = c.beta2, eps = c.eps, wd = c.weight_decay;
    const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(t));
    const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(t));
    for (std::size_t i = 0; i < param.size(); ++i) {
      const double g = grad[i];
      param[i] *= 1.0 - lr * wd;
      exp_avg[i] = beta1 * exp_avg[i] + (1.0 - beta1) * g;
      exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1.0 - beta2) * g * g;
      const double denom = std::sqrt(exp_avg_sq[i]) / std::sqrt(bc2) + eps;
      param[i] -= lr / bc1 * exp_avg[i] / denom;
    }
  }
};

TEST(AdamW, MatchesFloat64ReferenceOverSeveralSteps) {
  const Context ctx;
  Rng rng(11);
  AdamWConfig config;
  config.lr = 1e-2f;
  config.weight_decay = 0.1f;
  const Shape shape{7, 37};
  Tensor param = random_tensor(shape, rng);
  Tensor exp_avg = Tensor::zeros(shape, DType::f32);
  Tensor exp_avg_sq = Tensor::zeros(shape, DType::f32);
  ReferenceAdamW ref{testing::as_doubles(param), std::vector<double>(param.numel(), 0.0),
                     std::vector<double>(param.numel(), 0.0)};
  for (std::int64_t step = 1; step <= 6; ++step) {
    // Gradients of varying scale, including some exact zeros.
    Tensor grad = random_tensor(shape, rng, step % 2 ? 1.0f : 1e-3f);
    grad.data<float>()[step] = 0.0f;
    ops::adamw_step(ctx, config, step, param, grad, exp_avg, exp_avg_sq);
    ref.step(config, step, grad.to_floats());
    EXPECT_LE(relative_error(testing::as_doubles(param), ref.param), 1e-6) << "step " << step;
    EXPECT_LE(relative_error(testing::as_doubles(exp_avg), ref.exp_avg), 1e-6) << "step " << step;
    EXPECT_LE(relative_error(testing::as_doubles(exp_avg_sq), ref.exp_avg_sq), 1e-6)
        << "step " << step;
  }
}

TEST(AdamW, UpdateMatchesFloat64Reference) {
  // The update itself (not only the parameters, which it barely moves) against the reference
  // started from the same f32 state each step; a large lr keeps f32 rounding of p small next to it.
  const Context ctx;
  Rng rng(15);
  AdamWConfig config;
  config.lr = 0.5f;
  config.beta2 = 0.99f;
  config.eps = 1e-3f;
  config.weight_decay = 0.1f;
  const Shape shape{50};
  Tensor param = random_tensor(shape, rng);
  Tensor exp_avg = Tensor::zeros(shape, DType::f32);
  Tensor exp_avg_sq = Tensor::zeros(shape, DType::f32);
  for (std::int64_t step = 1; step <= 4; ++step) {
    const Tensor grad = random_tensor(shape, rng, 0.1f);
    ReferenceAdamW ref{testing::as_doubles(param), testing::as_doubles(exp_avg),
                       testing::as_doubles(exp_avg_sq)};
    const std::vector<double> before = ref.param;
    ref.step(config, step, grad.to_floats());
    ops::adamw_step(ctx, config, step, param, grad, exp_avg, exp_avg_sq);
    std::vector<double> update = testing::as_doubles(param), ref_update = ref.param;
    for (std::size_t i = 0; i < update.size(); ++i) {
      update[i] -= before[i];
      ref_update[i] -= before[i];
    }
    EXPECT_LE(relative_error(update, ref_update), 2e-6) << "step " << step;
  }
}

TEST(AdamW, LateStepUsesBiasCorrectionOfThatStep) {
  const Context ctx;
  Rng rng(12);
  AdamWConfig config;
  config.lr = 3e-4f;
  config.beta2 = 0.95f;
  config.weight_decay = 0.01f;
  const Shape shape{64};
  Tensor param = random_tensor(shape, rng);
  Tensor exp_avg = random_tensor(shape, rng, 0.1f);
  Tensor exp_avg_sq = Tensor::full(shape, 0.02f);
  Tensor grad = random_tensor(shape, rng);
  ReferenceAdamW ref{testing::as_doubles(param), testing::as_doubles(exp_avg),
                     testing::as_doubles(exp_avg_sq)};
  for (const std::int64_t step : {3, 1000}) {
    ops::adamw_step(ctx, config, step, param, grad, exp_avg, exp_avg_sq);
    ref.step(config, step, grad.to_floats());
    EXPECT_LE(relative_error(testing::as_doubles(param), ref.param), 1e-6) << "step " << step;
  }
}

TEST(AdamW, WeightDecayIsDecoupled) {
  const Context ctx;
  Rng rng(13);
  const Shape shape{100};
  const Tensor param0 = random_tensor(shape, rng);
  const Tensor grad = random_tensor(shape, rng);
  AdamWConfig config;
  config.lr = 0.05f;
  std::vector<Tensor> params, avgs, avg_sqs;
  for (const float wd : {0.0f, 0.2f}) {
    config.weight_decay = wd;
    params.push_back(param0.clone());
    avgs.push_back(Tensor::zeros(shape, DType::f32));
    avg_sqs.push_back(Tensor::zeros(shape, DType::f32));
    ops::adamw_step(ctx, config, 1, params.back(), grad, avgs.back(), avg_sqs.back());
  }
  const float* p0 = param0.data<float>();
  for (std::int64_t i = 0; i < param0.numel(); ++i) {
    // The moments never see the decay; the parameters differ by exactly -lr * wd * p0.
    EXPECT_EQ(avgs[0].data<float>()[i], avgs[1].data<float>()[i]);
    EXPECT_EQ(avg_sqs[0].data<float>()[i], avg_sqs[1].data<float>()[i]);
    const double difference =
        static_cast<double>(params[1].data<float>()[i]) - params[0].data<float>()[i];
    EXPECT_NEAR(difference, -0.05 * 0.2 * p0[i], 1e-7) << i;
  }
}

TEST(AdamW, FirstStepMovesEachParameterByLearningRate) {
  // At step 1, m / (1 - beta1) = g and sqrt(v / (1 - beta2)) = |g|, so dp = -lr g / (|g| + eps).
  const Context ctx;
  const Tensor grad = Tensor::from_floats({0.5f, -2.0f, 1e-3f, -7.0f, 1e3f}, {5});
  const Tensor param0 = Tensor::from_floats({1.0f, -1.0f, 0.25f, 3.0f, 0.0f}, {5});
  Tensor param = param0.clone();
  Tensor exp_avg = Tensor::zeros({5}, DType::f32);
  Tensor exp_avg_sq = Tensor::zeros({5}, DType::f32);
  AdamWConfig config;
  config.lr = 1e-3f;
  ops::adamw_step(ctx, config, 1, param, grad, exp_avg, exp_avg_sq);
  for (int i = 0; i < 5; ++i) {
    const double delta = static_cast<double>(param.data<float>()[i]) - param0.data<float>()[i];
    const double expected = grad.data<float>()[i] > 0 ? -1e-3 : 1e-3;
    EXPECT_NEAR(delta, expected, 1e-4 * 1e-3 + 1e-7 * std::fabs(param0.data<float>()[i])) << i;
  }
}

TEST(AdamW, ZeroGradientWithoutDecayLeavesParametersAlone) {
  const Context ctx;
  Rng rng(14);
  const Tensor param0 = random_tensor({33}, rng);
  Tensor param = param0.clone();
  Tensor exp_avg = Tensor::zeros({33}, DType::f32);
  Tensor exp_avg_sq = Tensor::zeros({33}, DType::f32);
  ops::adamw_step(ctx, AdamWConfig{}, 1, param, Tensor::zeros({33}, DType::f32), exp_avg,
                  exp_avg_sq);
  EXPECT_EQ(param.to_floats(), param0.to_floats());
}

TEST(AdamW, BadArgumentsThrow) {
  const Context ctx;
  const AdamWConfig config;
  auto f32 = [](const Shape& s) { return Tensor::zeros(s, DType::f32); };
  EXPECT_THROW(ops::adamw_step(ctx, config, 1, f32({4}), f32({5}), f32({4}), f32({4})), Error);
  EXPECT_THROW(ops::adamw_step(ctx, config, 1, f32({4}), f32({4}), f32({2, 2}), f32({4})), Error);
  EXPECT_THROW(ops::adamw_step(ctx, config, 1, f32({4}), f32({4}), f32({4}), f32({3})), Error);
  EXPECT_THROW(ops::adamw_step(ctx, config, 1, f32({4}), Tensor::zeros({4}, DType::bf16), f32({4}),
                               f32({4})),
               Error);
  EXPECT_THROW(ops::adamw_step(ctx, config, 1, Tensor(), f32({4}), f32({4}), f32({4})), Error);
  EXPECT_THROW(ops::adamw_step(ctx, config, 0, f32({4}), f32({4}), f32({4}), f32({4})), Error);
  try {
    ops::adamw_step(ctx, config, 1, f32({4}), f32({4}), f32({4}), f32({3}));
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exp_avg_sq"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ulysses
