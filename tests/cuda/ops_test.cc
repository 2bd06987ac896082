// Every CUDA op against the CPU op on fresh random inputs (rounded to the GPU dtype first, so
// both see the same values). Outputs are NaN-poisoned before each run; accumulated gradients
// start from random values. Tolerance of ||gpu - cpu|| / ||cpu||: 1e-2 for bf16 outputs, 1e-5
// for f32 outputs of f32 paths; NaN never passes.
#include <gtest/gtest.h>

#include <cmath>
#include <utility>

#include "cuda_test_util.h"
#include "ulysses/ops/adamw.h"
#include "ulysses/ops/cross_entropy.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/embedding.h"
#include "ulysses/ops/linear.h"
#include "ulysses/ops/rmsnorm.h"
#include "ulysses/ops/rope.h"
#include "ulysses/ops/swiglu.h"

namespace ulysses::ops {
namespace {

using testing::gpu;
using testing::gpu_poisoned;
using testing::on_gpu;
using testing::random_rounded;
using testing::relative_error;
using testing::tolerance;

const Context cpu_ctx;

using CudaOps = testing::DtypeParamTest<1234, 99>;

TEST_P(CudaOps, Elementwise) {
  UL_REQUIRE_GPU();
  for (const std::int64_t n : {8 * 129, 1001}) {  // vector and scalar paths
    const Tensor y = rnd({n}), x = rnd({n});
    Tensor y_gpu = on_gpu(y, dt());
    add_inplace(gpu(), y_gpu, on_gpu(x, dt()));
    Tensor y_cpu = y.clone();
    add_inplace(cpu_ctx, y_cpu, x);
    EXPECT_LT(relative_error(y_gpu, y_cpu), tolerance(dt())) << n;
    scale_inplace(gpu(), y_gpu, -0.37f);
    scale_inplace(cpu_ctx, y_cpu, -0.37f);
    EXPECT_LT(relative_error(y_gpu, y_cpu), tolerance(dt())) << n;
    // Reduction: f32 arithmetic on identical inputs, deterministic.
    const Tensor x_gpu = on_gpu(x, dt());
    const double s1 = sum_of_squares(gpu(), x_gpu), s2 = sum_of_squares(gpu(), x_gpu);
    EXPECT_EQ(s1, s2);
    EXPECT_NEAR(s1, sum_of_squares(cpu_ctx, x), 1e-5 * s1) << n;
    // Into a slot on the device, no wait: the same bits once read back.
    Tensor sums = Tensor::zeros({2}, DType::i64, gpu().device);
    sum_of_squares_into(gpu(), x_gpu, sums, 1);
    const std::vector<double> read = read_sums(gpu(), sums);
    EXPECT_EQ(read[1], s1) << n;
    EXPECT_EQ(read[0], 0.0) << n;
  }
}

TEST_P(CudaOps, Convert) {
  UL_REQUIRE_GPU();
  const Tensor x = rnd_f32({1003});
  Tensor out = gpu_poisoned({1003}, dt());
  convert(gpu(), on_gpu(x, DType::f32), out);
  EXPECT_EQ(out.to_floats(), testing::rounded(x, dt()).to_floats());  // round to nearest even
  Tensor back = gpu_poisoned({1003}, DType::f32);
  convert(gpu(), out, back);
  EXPECT_EQ(back.to_floats(), testing::rounded(x, dt()).to_floats());
}

TEST_P(CudaOps, Embedding) {
  UL_REQUIRE_GPU();
  for (const std::int64_t C : {72, 13}) {
    const std::int64_t V = 50, T = 97;
    std::vector<std::int32_t> ids(T);
    for (auto& id : ids) id = static_cast<std::int32_t>(rng_.below(V));
    ids[3] = ids[5] = ids[60] = 7;  // repeated ids
    const Tensor ids_cpu = Tensor::from_ints(ids, {T});
    const Tensor ids_gpu = ids_cpu.to(Device::cuda(0));
    const Tensor table = rnd({V, C});
    Tensor out_gpu = gpu_poisoned({T, C}, dt());
    embedding_forward(gpu(), ids_gpu, on_gpu(table, dt()), out_gpu);
    Tensor out_cpu = testing::poisoned({T, C});
    embedding_forward(cpu_ctx, ids_cpu, table, out_cpu);
    EXPECT_EQ(relative_error(out_gpu, out_cpu), 0.0) << C;

    const Tensor dout = rnd({T, C});
    const Tensor dtable = rnd_f32({V, C});
    Tensor dtable_gpu = on_gpu(dtable, DType::f32);
    embedding_backward(gpu(), ids_gpu, on_gpu(dout, dt()), dtable_gpu);
    Tensor dtable_cpu = dtable.clone();
    embedding_backward(cpu_ctx, ids_cpu, dout, dtable_cpu);
    EXPECT_LT(relative_error(dtable_gpu, dtable_cpu), 1e-5) << C;
  }
  std::vector<std::int32_t> bad = {1, 50};
  Tensor out = gpu_poisoned({2, 8}, dt());
  EXPECT_THROW(embedding_forward(gpu(), Tensor::from_ints(bad, {2}).to(Device::cuda(0)),
                                 on_gpu(rnd({50, 8}), dt()), out),
               Error);
}

TEST_P(CudaOps, RmsNorm) {
  UL_REQUIRE_GPU();
  for (const std::int64_t C : {320, 13}) {
    const std::int64_t N = 37;
    const Tensor x = rnd({N, C}, 2.0f), w = rnd({C});
    Tensor y_gpu = gpu_poisoned({N, C}, dt()), rstd_gpu = gpu_poisoned({N}, DType::f32);
    rmsnorm_forward(gpu(), on_gpu(x, dt()), on_gpu(w, dt()), 1e-5f, y_gpu, rstd_gpu);
    Tensor y_cpu = testing::poisoned({N, C}), rstd_cpu = testing::poisoned({N});
    rmsnorm_forward(cpu_ctx, x, w, 1e-5f, y_cpu, rstd_cpu);
    EXPECT_LT(relative_error(y_gpu, y_cpu), tolerance(dt())) << C;
    EXPECT_LT(relative_error(rstd_gpu, rstd_cpu), 1e-5) << C;

    const Tensor dy = rnd({N, C}), dx = rnd({N, C}), dw = rnd_f32({C});
    Tensor dx_gpu = on_gpu(dx, dt()), dw_gpu = on_gpu(dw, DType::f32);
    rmsnorm_backward(gpu(), on_gpu(x, dt()), on_gpu(w, dt()), rstd_gpu, on_gpu(dy, dt()), dx_gpu,
                     dw_gpu);
    Tensor dx_cpu = dx.clone(), dw_cpu = dw.clone();
    rmsnorm_backward(cpu_ctx, x, w, rstd_cpu, dy, dx_cpu, dw_cpu);
    EXPECT_LT(relative_error(dx_gpu, dx_cpu), tolerance(dt())) << C;
    EXPECT_LT(relative_error(dw_gpu, dw_cpu), 1e-5) << C;
  }
}

TEST_P(CudaOps, Linear) {
  UL_REQUIRE_GPU();
  const std::int64_t N = 67, K = 96, M = 80;
  for (const bool with_bias : {true, false}) {
    const Tensor x = rnd({N, K}), w = rnd({M, K}, 0.2f);
    const Tensor b = with_bias ? rnd({M}) : Tensor();
    Tensor y_gpu = gpu_poisoned({N, M}, dt());
    linear_forward(gpu(), on_gpu(x, dt()), on_gpu(w, dt()), with_bias ? on_gpu(b, dt()) : Tensor(),
                   y_gpu);
    Tensor y_cpu = testing::poisoned({N, M});
    linear_forward(cpu_ctx, x, w, b, y_cpu);
    EXPECT_LT(relative_error(y_gpu, y_cpu), tolerance(dt())) << with_bias;

    const Tensor dy = rnd({N, M}), dx = rnd({N, K}), dw = rnd_f32({M, K}), db = rnd_f32({M});
    Tensor dx_gpu = on_gpu(dx, dt()), dw_gpu = on_gpu(dw, DType::f32);
    Tensor db_gpu = with_bias ? on_gpu(db, DType::f32) : Tensor();
    linear_backward(gpu(), on_gpu(x, dt()), on_gpu(w, dt()), on_gpu(dy, dt()), dx_gpu, dw_gpu,
                    db_gpu);
    Tensor dx_cpu = dx.clone(), dw_cpu = dw.clone(), db_cpu = with_bias ? db.clone() : Tensor();
    linear_backward(cpu_ctx, x, w, dy, dx_cpu, dw_cpu, db_cpu);
    EXPECT_LT(relative_error(dx_gpu, dx_cpu), tolerance(dt())) << with_bias;
    EXPECT_LT(relative_error(dw_gpu, dw_cpu), 1e-5) << with_bias;
    if (with_bias) {
      EXPECT_LT(relative_error(db_gpu, db_cpu), 1e-5);
    }
    // Overwriting: dx starts as NaN on both sides and is never read.
    Tensor dx_over_gpu = gpu_poisoned({N, K}, dt()), dx_over_cpu = testing::poisoned({N, K});
    linear_backward(gpu(), on_gpu(x, dt()), on_gpu(w, dt()), on_gpu(dy, dt()), dx_over_gpu, dw_gpu,
                    Tensor(), GradWrite::overwrite);
    linear_backward(cpu_ctx, x, w, dy, dx_over_cpu, dw_cpu, Tensor(), GradWrite::overwrite);
    EXPECT_LT(relative_error(dx_over_gpu, dx_over_cpu), tolerance(dt())) << with_bias;
  }
}

TEST_P(CudaOps, Rope) {
  UL_REQUIRE_GPU();
  const std::int64_t T = 11, H = 3, D = 16;
  std::vector<std::int32_t> positions(T);
  for (std::int64_t t = 0; t < T; ++t) positions[t] = static_cast<std::int32_t>(t % 6 * 7);
  RopeConfig config;
  config.theta = 500.0;
  const Tensor pos_cpu = Tensor::from_ints(positions, {T});
  const RopeTable table_cpu = rope_table(cpu_ctx, config, D, pos_cpu);
  const RopeTable table_gpu = rope_table(gpu(), config, D, pos_cpu.to(Device::cuda(0)));
  const Tensor x = rnd({T, H, D});
  Tensor out_gpu = gpu_poisoned({T, H, D}, dt());
  rope_forward(gpu(), table_gpu, on_gpu(x, dt()), out_gpu);
  Tensor out_cpu = testing::poisoned({T, H, D});
  rope_forward(cpu_ctx, table_cpu, x, out_cpu);
  EXPECT_LT(relative_error(out_gpu, out_cpu), tolerance(dt()));
  Tensor in_place = on_gpu(x, dt());
  rope_forward(gpu(), table_gpu, in_place, in_place);
  EXPECT_LT(relative_error(in_place, out_cpu), tolerance(dt()));

  const Tensor dout = rnd({T, H, D}), dx = rnd({T, H, D});
  Tensor dx_gpu = on_gpu(dx, dt());
  rope_backward(gpu(), table_gpu, on_gpu(dout, dt()), dx_gpu);
  Tensor dx_cpu = dx.clone();
  rope_backward(cpu_ctx, table_cpu, dout, dx_cpu);
  EXPECT_LT(relative_error(dx_gpu, dx_cpu), tolerance(dt()));
}

// The RoPE table built by the CUDA kernel (double angle, double cos/sin, rounded to f32) against
// the CPU's: every value within one f32 ulp, almost all bit for bit (CUDA's double cos/sin may
// differ from the host's by an ulp of double, which changes the f32 rounding only at a tie's
// doorstep). Positions up to 2^20 with Qwen's theta and Llama 3's scaled frequencies.
TEST(CudaRopeTable, BuiltOnTheDeviceEqualsTheCpuTable) {
  UL_REQUIRE_GPU();
  const std::int64_t T = 4096, D = 128;
  std::vector<std::int32_t> positions(T);
  for (std::int64_t t = 0; t < T; ++t)
    positions[t] = static_cast<std::int32_t>((t * 7919) % (std::int64_t{1} << 20));
  RopeConfig llama3;
  llama3.theta = 500000.0;
  llama3.type = RopeType::llama3;
  llama3.factor = 8.0;
  for (const RopeConfig& config : {RopeConfig{1000000.0}, llama3}) {
    const Tensor pos = Tensor::from_ints(positions, {T});
    const RopeTable want = rope_table(cpu_ctx, config, D, pos);
    const RopeTable got = rope_table(gpu(), config, D, pos.to(Device::cuda(0)));
    std::int64_t differ = 0;
    for (const auto& [g, w] : {std::pair{got.cos, want.cos}, std::pair{got.sin, want.sin}}) {
      const std::vector<float> gv = g.to_floats(), wv = w.to_floats();
      ASSERT_EQ(gv.size(), wv.size());
      for (std::size_t i = 0; i < gv.size(); ++i) {
        if (gv[i] == wv[i]) continue;
        ++differ;
        EXPECT_TRUE(gv[i] == std::nextafter(wv[i], 2.0f) || gv[i] == std::nextafter(wv[i], -2.0f))
            << "element " << i << ": " << gv[i] << " vs " << wv[i];
      }
    }
    EXPECT_LE(differ, 8) << "of " << 2 * T * D / 2 << " values";
  }
}

TEST_P(CudaOps, SwiGlu) {
  UL_REQUIRE_GPU();
  for (const std::int64_t I : {40, 7}) {
    const std::int64_t N = 9;
    const Tensor gate = rnd({N, I}, 3.0f), up = rnd({N, I});
    Tensor out_gpu = gpu_poisoned({N, I}, dt());
    swiglu_forward(gpu(), on_gpu(gate, dt()), on_gpu(up, dt()), out_gpu);
    Tensor out_cpu = testing::poisoned({N, I});
    swiglu_forward(cpu_ctx, gate, up, out_cpu);
    EXPECT_LT(relative_error(out_gpu, out_cpu), tolerance(dt())) << I;

    const Tensor dout = rnd({N, I}), dgate = rnd({N, I}), dup = rnd({N, I});
    Tensor dgate_gpu = on_gpu(dgate, dt()), dup_gpu = on_gpu(dup, dt());
    swiglu_backward(gpu(), on_gpu(gate, dt()), on_gpu(up, dt()), on_gpu(dout, dt()), dgate_gpu,
                    dup_gpu);
    Tensor dgate_cpu = dgate.clone(), dup_cpu = dup.clone();
    swiglu_backward(cpu_ctx, gate, up, dout, dgate_cpu, dup_cpu);
    EXPECT_LT(relative_error(dgate_gpu, dgate_cpu), tolerance(dt())) << I;
    EXPECT_LT(relative_error(dup_gpu, dup_cpu), tolerance(dt())) << I;
    // Overwriting: both start as NaN and are never read.
    Tensor dgate_over_gpu = gpu_poisoned({N, I}, dt()), dup_over_gpu = gpu_poisoned({N, I}, dt());
    Tensor dgate_over_cpu = testing::poisoned({N, I}), dup_over_cpu = testing::poisoned({N, I});
    swiglu_backward(gpu(), on_gpu(gate, dt()), on_gpu(up, dt()), on_gpu(dout, dt()), dgate_over_gpu,
                    dup_over_gpu, GradWrite::overwrite);
    swiglu_backward(cpu_ctx, gate, up, dout, dgate_over_cpu, dup_over_cpu, GradWrite::overwrite);
    EXPECT_LT(relative_error(dgate_over_gpu, dgate_over_cpu), tolerance(dt())) << I;
    EXPECT_LT(relative_error(dup_over_gpu, dup_over_cpu), tolerance(dt())) << I;
  }
}

TEST_P(CudaOps, AdamWWithCopy) {
  UL_REQUIRE_GPU();
  const std::int64_t n = 1000;
  const Tensor p = rnd_f32({n}), g = rnd_f32({n}), m = rnd_f32({n}, 0.1f);
  Tensor v = rnd_f32({n}, 0.1f);
  for (std::int64_t i = 0; i < n; ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);
  AdamWConfig config;
  config.lr = 1e-2f;
  config.weight_decay = 0.1f;
  Tensor p_gpu = on_gpu(p, DType::f32), m_gpu = on_gpu(m, DType::f32),
         v_gpu = on_gpu(v, DType::f32);
  Tensor copy = gpu_poisoned({n}, dt());
  adamw_step_with_copy(gpu(), config, 3, p_gpu, on_gpu(g, DType::f32), m_gpu, v_gpu, copy);
  Tensor p_cpu = p.clone(), m_cpu = m.clone(), v_cpu = v.clone();
  adamw_step(cpu_ctx, config, 3, p_cpu, g, m_cpu, v_cpu);
  // Every operation rounded on its own on both devices: the CPU's bits.
  EXPECT_EQ(p_gpu.to_floats(), p_cpu.to_floats());
  EXPECT_EQ(m_gpu.to_floats(), m_cpu.to_floats());
  EXPECT_EQ(v_gpu.to_floats(), v_cpu.to_floats());
  EXPECT_EQ(copy.to_floats(), testing::rounded(p_gpu.to(Device::cpu()), dt()).to_floats());
}

TEST_P(CudaOps, LmHeadCrossEntropy) {
  UL_REQUIRE_GPU();
  const std::int64_t T = 50, C = 64, V = 300;
  const Tensor x = rnd({T, C}), w = rnd({V, C}, 0.5f);
  std::vector<std::int32_t> labels(T);
  for (auto& l : labels) l = static_cast<std::int32_t>(rng_.below(V));
  labels[0] = labels[17] = labels[49] = kIgnoreIndex;
  const Tensor labels_cpu = Tensor::from_ints(labels, {T});
  const Tensor dx = rnd({T, C}), dw = rnd_f32({V, C}, 0.01f);
  Context ctx = gpu();
  ctx.loss_tile_tokens = 16;  // several tiles, a partial last one
  Tensor dx_gpu = on_gpu(dx, dt()), dw_gpu = on_gpu(dw, DType::f32);
  const float grad_scale = 1.0f / 47;
  const LossSum got =
      lm_head_cross_entropy(ctx, on_gpu(x, dt()), on_gpu(w, dt()), labels_cpu.to(Device::cuda(0)),
                            grad_scale, dx_gpu, dw_gpu);
  Context cpu = cpu_ctx;
  cpu.loss_tile_tokens = 16;
  Tensor dx_cpu = dx.clone(), dw_cpu = dw.clone();
  const LossSum want = lm_head_cross_entropy(cpu, x, w, labels_cpu, grad_scale, dx_cpu, dw_cpu);
  EXPECT_EQ(got.valid_count(), want.valid_count());
  EXPECT_NEAR(got.loss_sum(), want.loss_sum(), 1e-4 * std::fabs(want.loss_sum()));
  EXPECT_LT(relative_error(dx_gpu, dx_cpu), tolerance(dt()));
  EXPECT_LT(relative_error(dw_gpu, dw_cpu), dt() == DType::bf16 ? 1e-2 : 1e-5);
  // Evaluation only: same loss, gradients untouched.
  const LossSum eval =
      lm_head_cross_entropy(ctx, on_gpu(x, dt()), on_gpu(w, dt()), labels_cpu.to(Device::cuda(0)),
                            0.0f, Tensor(), Tensor());
  EXPECT_DOUBLE_EQ(eval.loss_sum(), got.loss_sum());
  labels[4] = static_cast<std::int32_t>(V);
  EXPECT_THROW(lm_head_cross_entropy(ctx, on_gpu(x, dt()), on_gpu(w, dt()),
                                     Tensor::from_ints(labels, {T}).to(Device::cuda(0)), 0.0f,
                                     Tensor(), Tensor()),
               Error);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaOps, ::testing::Values(DType::bf16, DType::f32),
                         testing::dtype_param_name);

}  // namespace
}  // namespace ulysses::ops
