// CPU fused ops against float64 references and finite differences: add + RMSNorm, q/k
// RMSNorm + RoPE (and RoPE alone), the linear layer with a residual epilogue, and the
// multi-tensor AdamW (bit-identical to one adamw_step_with_copy per range).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"
#include "ulysses/ops/adamw.h"
#include "ulysses/ops/add_rmsnorm.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/linear.h"
#include "ulysses/ops/qk_norm_rope.h"
#include "ulysses/ops/rmsnorm.h"
#include "ulysses/ops/rope.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::expect_error;
using testing::numerical_gradient;
using testing::numerical_gradient_f64;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::weighted_sum;

constexpr float kEps = 1e-5f;

// ---- add + RMSNorm ----

// float64: y = x + r, n = rmsnorm(y) * w; loss = sum(n * g) + sum(y * h).
double add_norm_loss(const std::vector<double>& x, const std::vector<double>& r,
                     const std::vector<double>& w, const std::vector<double>& g,
                     const std::vector<double>& h, std::int64_t N, std::int64_t C,
                     std::vector<double>* y_out = nullptr, std::vector<double>* n_out = nullptr) {
  double loss = 0;
  std::vector<double> y(x.size()), n(x.size());
  for (std::int64_t row = 0; row < N; ++row) {
    double ms = 0;
    for (std::int64_t c = 0; c < C; ++c) {
      y[row * C + c] = x[row * C + c] + r[row * C + c];
      ms += y[row * C + c] * y[row * C + c] / C;
    }
    const double rs = 1 / std::sqrt(ms + kEps);
    for (std::int64_t c = 0; c < C; ++c) {
      n[row * C + c] = y[row * C + c] * rs * w[c];
      loss += n[row * C + c] * g[row * C + c] + y[row * C + c] * h[row * C + c];
    }
  }
  if (y_out) *y_out = y;
  if (n_out) *n_out = n;
  return loss;
}

TEST(AddRmsNorm, ForwardAndBackwardMatchFloat64Reference) {
  const Context ctx;
  const std::int64_t N = 5, C = 80;
  Rng rng(11);
  Tensor x = random_tensor({N, C}, rng, 2.0f), r = random_tensor({N, C}, rng);
  Tensor w = random_tensor({C}, rng), g = random_tensor({N, C}, rng),
         h = random_tensor({N, C}, rng);
  Tensor y = poisoned({N, C}), n = poisoned({N, C}), rstd = poisoned({N});
  ops::add_rmsnorm_forward(ctx, x, r, w, kEps, y, n, rstd);
  std::vector<double> x64 = as_doubles(x), r64 = as_doubles(r), w64 = as_doubles(w);
  const std::vector<double> g64 = as_doubles(g), h64 = as_doubles(h);
  std::vector<double> y_ref, n_ref;
  add_norm_loss(x64, r64, w64, g64, h64, N, C, &y_ref, &n_ref);
  EXPECT_LT(relative_error(as_doubles(y), y_ref), 1e-7);
  EXPECT_LT(relative_error(as_doubles(n), n_ref), 1e-6);

  // Equal to add_inplace + rmsnorm_forward.
  Tensor n2 = poisoned({N, C}), rstd2 = poisoned({N});
  ops::rmsnorm_forward(ctx, y, w, kEps, n2, rstd2);
  EXPECT_EQ(n.to_floats(), n2.to_floats());
  EXPECT_EQ(rstd.to_floats(), rstd2.to_floats());

  Tensor dy = poisoned({N, C}), dw = Tensor::zeros({C}, DType::f32);
  ops::add_rmsnorm_backward(ctx, y, w, rstd, g, h, dy, dw);
  const auto loss = [&] { return add_norm_loss(x64, r64, w64, g64, h64, N, C); };
  EXPECT_LT(relative_error(as_doubles(dy), numerical_gradient_f64(x64, loss)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dy), numerical_gradient_f64(r64, loss)), 1e-6);
  EXPECT_LT(relative_error(as_doubles(dw), numerical_gradient_f64(w64, loss)), 1e-6);
  // Finite differences of the f32 op itself.
  const auto loss_f32 = [&] {
    Tensor yy = poisoned({N, C}), nn = poisoned({N, C}), rr = poisoned({N});
    ops::add_rmsnorm_forward(ctx, x, r, w, kEps, yy, nn, rr);
    return weighted_sum(nn, g) + weighted_sum(yy, h);
  };
  EXPECT_LT(relative_error(as_doubles(dy), numerical_gradient(x, loss_f32)), 1e-3);

  // In place: y = x, dy = dresidual; dweight accumulates.
  Tensor x_in = x.clone(), h_in = h.clone();
  Tensor n3 = poisoned({N, C}), rstd3 = poisoned({N});
  ops::add_rmsnorm_forward(ctx, x_in, r, w, kEps, x_in, n3, rstd3);
  EXPECT_EQ(x_in.to_floats(), y.to_floats());
  ops::add_rmsnorm_backward(ctx, x_in, w, rstd3, g, h_in, h_in, dw);
  EXPECT_EQ(h_in.to_floats(), dy.to_floats());
  std::vector<double> twice = numerical_gradient_f64(w64, loss);
  for (double& v : twice) v *= 2;
  EXPECT_LT(relative_error(as_doubles(dw), twice), 1e-6);
}

TEST(AddRmsNorm, BadArgumentsThrow) {
  const Context ctx;
  Rng rng(12);
  Tensor x = random_tensor({3, 8}, rng), w = random_tensor({8}, rng);
  Tensor y = poisoned({3, 8}), n = poisoned({3, 8}), rstd = poisoned({3});
  expect_error([&] { ops::add_rmsnorm_forward(ctx, x, x, poisoned({9}), kEps, y, n, rstd); },
               "weight");
  expect_error(
      [&] {
        ops::add_rmsnorm_forward(ctx, x, poisoned({3, 9}), w, kEps, y, n, rstd);
      },
      "r");
  expect_error([&] { ops::add_rmsnorm_forward(ctx, x, x, w, kEps, y, y, rstd); }, "alias");
  expect_error([&] { ops::add_rmsnorm_forward(ctx, x, x, w, kEps, y, n, poisoned({4})); }, "rstd");
  Tensor dw = Tensor::zeros({8}, DType::f32);
  expect_error([&] { ops::add_rmsnorm_backward(ctx, x, w, rstd, y, y, y, dw); }, "alias");
  expect_error(
      [&] { ops::add_rmsnorm_backward(ctx, x, w, rstd, y, n, x, Tensor::zeros({8}, DType::bf16)); },
      "dweight");
}

// ---- q/k RMSNorm + RoPE ----

struct QkProblem {
  std::int64_t T = 6, H = 3, D = 16;
  Tensor x, w, g, positions;
  ops::RopeTable table;
  explicit QkProblem(std::uint64_t seed) {
    Rng rng(seed);
    x = random_tensor({T, H, D}, rng, 2.0f);
    w = random_tensor({D}, rng);
    g = random_tensor({T, H, D}, rng);
    positions = Tensor::from_ints({0, 1, 2, 0, 7, 300}, {T});
    table = ops::rope_table(Context{}, ops::RopeConfig{}, D, positions);
  }
  // float64 sum(out * g) of out = rope(norm(x) * w) (norm skipped when !norm).
  double loss(const std::vector<double>& x64, const std::vector<double>& w64, bool norm,
              std::vector<double>* out = nullptr) const {
    const auto cs = as_doubles(table.cos), sn = as_doubles(table.sin), g64 = as_doubles(g);
    const std::int64_t half = D / 2;
    std::vector<double> o(x64.size());
    double total = 0;
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t base = (t * H + h) * D;
        double ms = 0;
        for (std::int64_t d = 0; d < D; ++d) ms += x64[base + d] * x64[base + d] / D;
        const double rs = norm ? 1 / std::sqrt(ms + kEps) : 1.0;
        for (std::int64_t i = 0; i < half; ++i) {
          const double a = x64[base + i] * rs * (norm ? w64[i] : 1.0);
          const double b = x64[base + i + half] * rs * (norm ? w64[i + half] : 1.0);
          const double c = cs[t * half + i], s = sn[t * half + i];
          o[base + i] = a * c - b * s;
          o[base + i + half] = b * c + a * s;
        }
      }
    }
    for (std::size_t i = 0; i < o.size(); ++i) total += o[i] * g64[i];
    if (out) *out = o;
    return total;
  }
};

TEST(QkNormRope, ForwardAndBackwardMatchFloat64Reference) {
  const Context ctx;
  for (const bool norm : {true, false}) {
    QkProblem p(21);
    const std::int64_t T = p.T, H = p.H, D = p.D;
    Tensor out = poisoned({T, H, D});
    Tensor rstd = norm ? poisoned({T * H}) : Tensor();
    const Tensor w = norm ? p.w : Tensor();
    ops::qk_norm_rope_forward(ctx, p.table, p.x, w, kEps, out, rstd);
    std::vector<double> x64 = as_doubles(p.x), w64 = as_doubles(p.w), out_ref;
    p.loss(x64, w64, norm, &out_ref);
    EXPECT_LT(relative_error(as_doubles(out), out_ref), 1e-6) << norm;

    // The same as the two separate ops.
    Tensor separate = poisoned({T, H, D});
    if (norm) {
      Tensor rstd2 = poisoned({T * H});
      ops::rmsnorm_forward(ctx, p.x.view({T * H, D}), p.w, kEps, separate.view({T * H, D}), rstd2);
      EXPECT_EQ(rstd.to_floats(), rstd2.to_floats());
      ops::rope_forward(ctx, p.table, separate, separate);
    } else {
      ops::rope_forward(ctx, p.table, p.x, separate);
    }
    EXPECT_EQ(out.to_floats(), separate.to_floats()) << norm;

    Tensor dx = poisoned({T, H, D});  // written, not accumulated
    Tensor dw = Tensor::zeros({D}, DType::f32);
    ops::qk_norm_rope_backward(ctx, p.table, norm ? p.x : Tensor(), w, rstd, p.g, dx,
                               norm ? dw : Tensor());
    const auto loss = [&] { return p.loss(x64, w64, norm); };
    EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient_f64(x64, loss)), 1e-6) << norm;
    if (norm) {
      EXPECT_LT(relative_error(as_doubles(dw), numerical_gradient_f64(w64, loss)), 1e-6);
      const auto loss_f32 = [&] {
        Tensor o = poisoned({T, H, D}), rs = poisoned({T * H});
        ops::qk_norm_rope_forward(ctx, p.table, p.x, p.w, kEps, o, rs);
        return weighted_sum(o, p.g);
      };
      EXPECT_LT(relative_error(as_doubles(dx), numerical_gradient(p.x, loss_f32)), 1e-3);
    }
    // In place forward.
    Tensor in_place = p.x.clone();
    Tensor rstd3 = norm ? poisoned({T * H}) : Tensor();
    ops::qk_norm_rope_forward(ctx, p.table, in_place, w, kEps, in_place, rstd3);
    EXPECT_EQ(in_place.to_floats(), out.to_floats()) << norm;
  }
}

TEST(QkNormRope, BadArgumentsThrow) {
  const Context ctx;
  QkProblem p(22);
  Tensor out = poisoned({p.T, p.H, p.D});
  expect_error(
      [&] {
        ops::qk_norm_rope_forward(ctx, p.table, p.x, Tensor(), kEps, out, poisoned({p.T * p.H}));
      },
      "rstd");
  expect_error(
      [&] {
        ops::qk_norm_rope_forward(ctx, p.table, p.x, poisoned({p.D + 2}), kEps, out,
                                  poisoned({p.T * p.H}));
      },
      "weight");
  expect_error(
      [&] {
        ops::qk_norm_rope_forward(ctx, p.table, poisoned({p.T, p.H, 5}), Tensor(), kEps,
                                  poisoned({p.T, p.H, 5}), Tensor());
      },
      "D even");
  expect_error(
      [&] {
        ops::qk_norm_rope_backward(ctx, p.table, Tensor(), Tensor(), Tensor(), out, out, Tensor());
      },
      "alias");
}

// ---- linear with a residual epilogue ----

TEST(LinearResidual, EqualsLinearPlusResidual) {
  const Context ctx;
  Rng rng(31);
  const std::int64_t N = 7, K = 12, M = 9;
  const Tensor x = random_tensor({N, K}, rng), w = random_tensor({M, K}, rng);
  const Tensor b = random_tensor({M}, rng), residual = random_tensor({N, M}, rng);
  for (const bool with_bias : {true, false}) {
    Tensor y = poisoned({N, M});
    ops::linear_forward_residual(ctx, x, w, with_bias ? b : Tensor(), residual, y);
    // float64 reference.
    const auto x64 = as_doubles(x), w64 = as_doubles(w), b64 = as_doubles(b),
               r64 = as_doubles(residual);
    std::vector<double> ref(static_cast<std::size_t>(N * M));
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t m = 0; m < M; ++m) {
        double s = r64[n * M + m] + (with_bias ? b64[m] : 0.0);
        for (std::int64_t k = 0; k < K; ++k) s += x64[n * K + k] * w64[m * K + k];
        ref[n * M + m] = s;
      }
    EXPECT_LT(relative_error(as_doubles(y), ref), 1e-6) << with_bias;
    // In place: y = residual.
    Tensor acc = residual.clone();
    ops::linear_forward_residual(ctx, x, w, with_bias ? b : Tensor(), acc, acc);
    EXPECT_EQ(acc.to_floats(), y.to_floats()) << with_bias;
  }
  expect_error(
      [&] {
        ops::linear_forward_residual(ctx, x, w, Tensor(), poisoned({N, M + 1}), poisoned({N, M}));
      },
      "residual");
}

// ---- multi-tensor AdamW ----

TEST(AdamWMulti, BitIdenticalToOneStepPerRange) {
  const Context ctx;
  Rng rng(41);
  ops::AdamWConfig config;
  config.lr = 3e-3f;
  config.weight_decay = 0.1f;
  const std::int64_t total = 300;
  const std::vector<std::pair<std::int64_t, std::int64_t>> cuts = {
      {0, 100}, {100, 101}, {101, 101}, {101, 300}};
  Tensor param = random_tensor({total}, rng), grad = random_tensor({total}, rng);
  Tensor m = random_tensor({total}, rng, 0.1f), v = random_tensor({total}, rng, 0.1f);
  for (std::int64_t i = 0; i < total; ++i) v.data<float>()[i] = std::abs(v.data<float>()[i]);
  Tensor p2 = param.clone(), m2 = m.clone(), v2 = v.clone();
  Tensor copy = poisoned({total}).to(DType::bf16), copy2 = poisoned({total}).to(DType::bf16);
  for (std::int64_t step = 1; step <= 3; ++step) {
    std::vector<ops::AdamWRange> ranges;
    for (std::size_t k = 0; k < cuts.size(); ++k) {
      const auto [a, b] = cuts[k];
      ranges.push_back({param.rows(a, b), grad.rows(a, b), m.rows(a, b), v.rows(a, b),
                        copy.rows(a, b), k % 2 == 0});
      ops::AdamWConfig c = config;
      if (k % 2 != 0) c.weight_decay = 0.0f;
      ops::adamw_step_with_copy(ctx, c, step, p2.rows(a, b), grad.rows(a, b), m2.rows(a, b),
                                v2.rows(a, b), copy2.rows(a, b));
    }
    ops::adamw_multi_step(ctx, config, step, ranges);
  }
  EXPECT_EQ(param.to_floats(), p2.to_floats());
  EXPECT_EQ(m.to_floats(), m2.to_floats());
  EXPECT_EQ(v.to_floats(), v2.to_floats());
  EXPECT_EQ(copy.to_floats(), copy2.to_floats());

  // grad_scale: the same bits as scaling the gradients first (the clip), grad left as it was.
  const Tensor grad_before = grad.clone();
  Tensor scaled = grad.clone();
  ops::scale_inplace(ctx, scaled, 0.37f);
  std::vector<ops::AdamWRange> ranges = {{param, grad, m, v, copy, true}};
  ops::adamw_multi_step(ctx, config, 4, ranges, 0.37f);
  ops::adamw_step_with_copy(ctx, config, 4, p2, scaled, m2, v2, copy2);
  EXPECT_EQ(param.to_floats(), p2.to_floats());
  EXPECT_EQ(m.to_floats(), m2.to_floats());
  EXPECT_EQ(v.to_floats(), v2.to_floats());
  EXPECT_EQ(copy.to_floats(), copy2.to_floats());
  EXPECT_EQ(grad.to_floats(), grad_before.to_floats());

  std::vector<ops::AdamWRange> bad = {{param, grad.rows(0, 10), m, v, Tensor(), true}};
  expect_error([&] { ops::adamw_multi_step(ctx, config, 1, bad); }, "range 0 grad");
  std::vector<ops::AdamWRange> mixed = {
      {param.rows(0, 10), grad.rows(0, 10), m.rows(0, 10), v.rows(0, 10), copy.rows(0, 10), true},
      {param.rows(10, 20), grad.rows(10, 20), m.rows(10, 20), v.rows(10, 20), Tensor(), true}};
  expect_error([&] { ops::adamw_multi_step(ctx, config, 1, mixed); }, "range 1");
  expect_error([&] { ops::adamw_multi_step(ctx, config, 0, {}); }, "step");
}

}  // namespace
}  // namespace ulysses
