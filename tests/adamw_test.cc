#include "ulysses/ops/adamw.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <span>
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

namespace ulysses {
namespace {

// The scalar loop the CPU kernel used before it was split into thread blocks and vectorized:
// one thread, one element at a time, the f32 operations of torch.optim.AdamW. The kernel must
// give these bits exactly, with any thread count, and its copy must be float_to_bf16 of them.
void scalar_adamw(const ops::AdamWConfig& c, std::int64_t step, std::vector<float>& p,
                  const std::vector<float>& g, std::vector<float>& m, std::vector<float>& v) {
  const double t = static_cast<double>(step);
  const float step_size = static_cast<float>(c.lr / (1.0 - std::pow(double{c.beta1}, t)));
  const float bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(double{c.beta2}, t)));
  const float decay = 1.0f - c.lr * c.weight_decay;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const float mi = c.beta1 * m[i] + (1.0f - c.beta1) * g[i];
    const float vi = c.beta2 * v[i] + (1.0f - c.beta2) * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2_sqrt + c.eps;
    p[i] = p[i] * decay - step_size * mi / denom;
  }
}

TEST(AdamW, ThreadedVectorizedKernelIsBitIdenticalToTheScalarLoop) {
  const Context ctx;
  ops::AdamWConfig config;
  config.lr = 3e-3f;
  config.weight_decay = 0.1f;
  Rng rng(21);
  // Sizes around the kernel's block rules (64K-element blocks, multiples of 16), odd tails.
  for (const std::int64_t n :
       {std::int64_t{1}, std::int64_t{17}, std::int64_t{65536 + 3}, std::int64_t{5 * 65536 + 31}}) {
    for (const int threads : {1, 3, 8}) {
      SCOPED_TRACE("n " + std::to_string(n) + ", threads " + std::to_string(threads));
      Tensor param = random_tensor({n}, rng), grad = random_tensor({n}, rng);
      Tensor m = random_tensor({n}, rng), v = random_tensor({n}, rng);
      for (float& x : std::span(v.data<float>(), static_cast<std::size_t>(n))) x = x * x;
      std::vector<float> p_ref = param.to_floats(), m_ref = m.to_floats(), v_ref = v.to_floats();
      const std::vector<float> g_ref = grad.to_floats();
      Tensor copy = Tensor::zeros({n}, DType::bf16);
      const int saved = omp_get_max_threads();
      omp_set_num_threads(threads);
      for (std::int64_t step = 1; step <= 3; ++step) {
        ops::adamw_step_with_copy(ctx, config, step, param, grad, m, v, copy);
        scalar_adamw(config, step, p_ref, g_ref, m_ref, v_ref);
      }
      omp_set_num_threads(saved);
      const std::vector<float> p = param.to_floats(), m_out = m.to_floats(), v_out = v.to_floats();
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < p.size(); ++i) {
        mismatches += std::memcmp(&p[i], &p_ref[i], 4) != 0 ||
                      std::memcmp(&m_out[i], &m_ref[i], 4) != 0 ||
                      std::memcmp(&v_out[i], &v_ref[i], 4) != 0 ||
                      copy.data<bf16>()[i].bits != float_to_bf16(p_ref[i]).bits;
      }
      EXPECT_EQ(mismatches, 0u);
    }
  }
}

}  // namespace
}  // namespace ulysses
