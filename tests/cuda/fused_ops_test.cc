// The fused CUDA ops against the CPU ops (tests/cuda/ops_test.cc conventions: inputs rounded to
// the GPU dtype first, outputs NaN-poisoned, ||gpu - cpu|| / ||cpu|| <= 1e-2 for bf16 outputs
// and 1e-5 for f32): add + RMSNorm, q/k RMSNorm + RoPE (vector and scalar paths, with and
// without the norm), the linear residual epilogue and the multi-tensor AdamW.
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "ulysses/ops/adamw.h"
#include "ulysses/ops/add_rmsnorm.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/linear.h"
#include "ulysses/ops/qk_norm_rope.h"

namespace ulysses::ops {
namespace {

using testing::gpu;
using testing::gpu_poisoned;
using testing::on_gpu;
using testing::random_rounded;
using testing::relative_error;
using testing::tolerance;

const Context cpu_ctx;

using CudaFusedOps = testing::DtypeParamTest<4321, 77>;

TEST_P(CudaFusedOps, AddRmsNorm) {
  UL_REQUIRE_GPU();
  for (const std::int64_t C : {2560, 320, 13}) {  // vector (several packs per lane), scalar
    const std::int64_t N = 37;
    const Tensor x = rnd({N, C}, 2.0f), r = rnd({N, C}), w = rnd({C});
    Tensor y_gpu = gpu_poisoned({N, C}, dt()), n_gpu = gpu_poisoned({N, C}, dt());
    Tensor rstd_gpu = gpu_poisoned({N}, DType::f32);
    add_rmsnorm_forward(gpu(), on_gpu(x, dt()), on_gpu(r, dt()), on_gpu(w, dt()), 1e-6f, y_gpu,
                        n_gpu, rstd_gpu);
    Tensor y_cpu = testing::poisoned({N, C}), n_cpu = testing::poisoned({N, C});
    Tensor rstd_cpu = testing::poisoned({N});
    add_rmsnorm_forward(cpu_ctx, x, r, w, 1e-6f, y_cpu, n_cpu, rstd_cpu);
    EXPECT_LT(relative_error(y_gpu, y_cpu), tolerance(dt())) << C;
    EXPECT_LT(relative_error(n_gpu, n_cpu), tolerance(dt())) << C;
    EXPECT_LT(relative_error(rstd_gpu, rstd_cpu), tolerance(dt())) << C;
    // In place (y = x) gives the same.
    Tensor x_gpu = on_gpu(x, dt()), n2 = gpu_poisoned({N, C}, dt());
    Tensor rstd2 = gpu_poisoned({N}, DType::f32);
    add_rmsnorm_forward(gpu(), x_gpu, on_gpu(r, dt()), on_gpu(w, dt()), 1e-6f, x_gpu, n2, rstd2);
    EXPECT_EQ(x_gpu.to_floats(), y_gpu.to_floats()) << C;
    EXPECT_EQ(n2.to_floats(), n_gpu.to_floats()) << C;

    // Backward on identical inputs: y rounded, the CPU's rstd on both.
    const Tensor y = testing::rounded(y_cpu, dt());
    Tensor n_ref = testing::poisoned({N, C}), rstd = testing::poisoned({N});
    add_rmsnorm_forward(cpu_ctx, y, Tensor::zeros({N, C}, DType::f32), w, 1e-6f,
                        testing::poisoned({N, C}), n_ref, rstd);
    const Tensor dn = rnd({N, C}), dres = rnd({N, C}), dw = rnd_f32({C});
    Tensor dy_gpu = gpu_poisoned({N, C}, dt()), dw_gpu = on_gpu(dw, DType::f32);
    add_rmsnorm_backward(gpu(), on_gpu(y, dt()), on_gpu(w, dt()), on_gpu(rstd, DType::f32),
                         on_gpu(dn, dt()), on_gpu(dres, dt()), dy_gpu, dw_gpu);
    Tensor dy_cpu = testing::poisoned({N, C}), dw_cpu = dw.clone();
    add_rmsnorm_backward(cpu_ctx, y, w, rstd, dn, dres, dy_cpu, dw_cpu);
    EXPECT_LT(relative_error(dy_gpu, dy_cpu), tolerance(dt())) << C;
    EXPECT_LT(relative_error(dw_gpu, dw_cpu), 1e-5) << C;
    // In place: dy = dresidual.
    Tensor acc = on_gpu(dres, dt()), dw2 = on_gpu(dw, DType::f32);
    add_rmsnorm_backward(gpu(), on_gpu(y, dt()), on_gpu(w, dt()), on_gpu(rstd, DType::f32),
                         on_gpu(dn, dt()), acc, acc, dw2);
    EXPECT_EQ(acc.to_floats(), dy_gpu.to_floats()) << C;
  }
}

TEST_P(CudaFusedOps, QkNormRope) {
  UL_REQUIRE_GPU();
  // D = 128: 8 lanes per row; 16: one lane per row; 12: the scalar path; 512: 32 lanes, 2 packs.
  for (const std::int64_t D : {128, 16, 12, 512}) {
    for (const bool norm : {true, false}) {
      const std::int64_t T = 11, H = 3;
      std::vector<std::int32_t> positions(T);
      for (std::int64_t t = 0; t < T; ++t) positions[t] = static_cast<std::int32_t>(t % 6 * 97);
      const Tensor pos = Tensor::from_ints(positions, {T});
      const RopeTable table_cpu = rope_table(cpu_ctx, RopeConfig{}, D, pos);
      const RopeTable table_gpu = rope_table(gpu(), RopeConfig{}, D, pos.to(Device::cuda(0)));
      const Tensor x = rnd({T, H, D}, 2.0f), w = rnd({D});
      Tensor out_gpu = gpu_poisoned({T, H, D}, dt());
      Tensor rstd_gpu = norm ? gpu_poisoned({T * H}, DType::f32) : Tensor();
      qk_norm_rope_forward(gpu(), table_gpu, on_gpu(x, dt()), norm ? on_gpu(w, dt()) : Tensor(),
                           1e-6f, out_gpu, rstd_gpu);
      Tensor out_cpu = testing::poisoned({T, H, D});
      Tensor rstd_cpu = norm ? testing::poisoned({T * H}) : Tensor();
      qk_norm_rope_forward(cpu_ctx, table_cpu, x, norm ? w : Tensor(), 1e-6f, out_cpu, rstd_cpu);
      EXPECT_LT(relative_error(out_gpu, out_cpu), tolerance(dt())) << D << norm;
      if (norm) {
        EXPECT_LT(relative_error(rstd_gpu, rstd_cpu), 1e-5) << D;
      }
      Tensor in_place = on_gpu(x, dt());
      Tensor rstd2 = norm ? gpu_poisoned({T * H}, DType::f32) : Tensor();
      qk_norm_rope_forward(gpu(), table_gpu, in_place, norm ? on_gpu(w, dt()) : Tensor(), 1e-6f,
                           in_place, rstd2);
      EXPECT_EQ(in_place.to_floats(), out_gpu.to_floats()) << D << norm;

      const Tensor dout = rnd({T, H, D}), dw = rnd_f32({D});
      Tensor dx_gpu = gpu_poisoned({T, H, D}, dt());
      Tensor dw_gpu = norm ? on_gpu(dw, DType::f32) : Tensor();
      qk_norm_rope_backward(
          gpu(), table_gpu, norm ? on_gpu(x, dt()) : Tensor(), norm ? on_gpu(w, dt()) : Tensor(),
          norm ? on_gpu(rstd_cpu, DType::f32) : Tensor(), on_gpu(dout, dt()), dx_gpu, dw_gpu);
      Tensor dx_cpu = testing::poisoned({T, H, D});
      Tensor dw_cpu = norm ? dw.clone() : Tensor();
      qk_norm_rope_backward(cpu_ctx, table_cpu, norm ? x : Tensor(), norm ? w : Tensor(), rstd_cpu,
                            dout, dx_cpu, dw_cpu);
      EXPECT_LT(relative_error(dx_gpu, dx_cpu), tolerance(dt())) << D << norm;
      if (norm) {
        EXPECT_LT(relative_error(dw_gpu, dw_cpu), 1e-5) << D;
      }
    }
  }
}

TEST_P(CudaFusedOps, LinearResidual) {
  UL_REQUIRE_GPU();
  const std::int64_t N = 67, K = 96, M = 80;
  for (const bool with_bias : {true, false}) {
    const Tensor x = rnd({N, K}), w = rnd({M, K}, 0.2f), res = rnd({N, M});
    const Tensor b = with_bias ? rnd({M}) : Tensor();
    Tensor y_gpu = gpu_poisoned({N, M}, dt());
    linear_forward_residual(gpu(), on_gpu(x, dt()), on_gpu(w, dt()),
                            with_bias ? on_gpu(b, dt()) : Tensor(), on_gpu(res, dt()), y_gpu);
    Tensor y_cpu = testing::poisoned({N, M});
    linear_forward_residual(cpu_ctx, x, w, b, res, y_cpu);
    EXPECT_LT(relative_error(y_gpu, y_cpu), tolerance(dt())) << with_bias;
    Tensor acc = on_gpu(res, dt());
    linear_forward_residual(gpu(), on_gpu(x, dt()), on_gpu(w, dt()),
                            with_bias ? on_gpu(b, dt()) : Tensor(), acc, acc);
    EXPECT_LT(relative_error(acc, y_cpu), tolerance(dt())) << with_bias;
  }
}

TEST_P(CudaFusedOps, AdamWMulti) {
  UL_REQUIRE_GPU();
  const std::int64_t n = 5000;
  // 40 ranges (two launches), one empty, decay on every other one; odd cuts, so ranges start at
  // every phase of the 16-byte quads (a scalar head, then quads, then a tail).
  std::vector<std::int64_t> cuts = {0};
  for (int k = 1; k < 40; ++k) cuts.push_back(k == 7 ? cuts.back() : cuts.back() + (37 * k) % 120);
  cuts.push_back(n);
  const Tensor p = rnd_f32({n}), g = rnd_f32({n + 1}), m = rnd_f32({n}, 0.1f);
  Tensor v = rnd_f32({n}, 0.1f);
  for (std::int64_t i = 0; i < n; ++i) v.data<float>()[i] = std::fabs(v.data<float>()[i]);
  AdamWConfig config;
  config.lr = 1e-2f;
  config.weight_decay = 0.1f;
  const float clip = 0.625f;
  // The gradients one element off the others in the ranges past the first launch: their
  // pointers are not co-aligned, so those ranges go element by element.
  const Tensor g_all = on_gpu(g, DType::f32);
  Tensor p_gpu = on_gpu(p, DType::f32), m_gpu = on_gpu(m, DType::f32),
         v_gpu = on_gpu(v, DType::f32);
  Tensor p1 = p_gpu.clone(), m1 = m_gpu.clone(), v1 = v_gpu.clone();
  Tensor copy = gpu_poisoned({n}, dt()), copy1 = gpu_poisoned({n}, dt());
  Tensor p_cpu = p.clone(), m_cpu = m.clone(), v_cpu = v.clone();
  std::vector<AdamWRange> ranges;
  for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
    const std::int64_t a = cuts[k], b = cuts[k + 1], shift = k >= 32 ? 1 : 0;
    const bool decay = k % 2 == 0;
    const Tensor g_gpu = g_all.rows(a + shift, b + shift);
    const Tensor g_cpu = g.rows(a + shift, b + shift).clone();
    ranges.push_back(
        {p_gpu.rows(a, b), g_gpu, m_gpu.rows(a, b), v_gpu.rows(a, b), copy.rows(a, b), decay});
    AdamWConfig c = config;
    if (!decay) c.weight_decay = 0.0f;
    Tensor scaled = g_gpu.clone();
    scale_inplace(gpu(), scaled, clip);
    adamw_step_with_copy(gpu(), c, 3, p1.rows(a, b), scaled, m1.rows(a, b), v1.rows(a, b),
                         copy1.rows(a, b));
    scale_inplace(cpu_ctx, g_cpu, clip);
    adamw_step(cpu_ctx, c, 3, p_cpu.rows(a, b), g_cpu, m_cpu.rows(a, b), v_cpu.rows(a, b));
  }
  const std::vector<float> g_before = g_all.to_floats();
  adamw_multi_step(gpu(), config, 3, ranges, clip);
  // Bit for bit: one launch per range (the clip by scale_inplace first), and the CPU kernel
  // (every operation rounded on its own on both devices).
  EXPECT_EQ(p_gpu.to_floats(), p1.to_floats());
  EXPECT_EQ(m_gpu.to_floats(), m1.to_floats());
  EXPECT_EQ(v_gpu.to_floats(), v1.to_floats());
  EXPECT_EQ(copy.to_floats(), copy1.to_floats());
  EXPECT_EQ(p_gpu.to_floats(), p_cpu.to_floats());
  EXPECT_EQ(m_gpu.to_floats(), m_cpu.to_floats());
  EXPECT_EQ(v_gpu.to_floats(), v_cpu.to_floats());
  EXPECT_EQ(copy.to_floats(), testing::rounded(p_cpu, dt()).to_floats());
  EXPECT_EQ(g_all.to_floats(), g_before) << "the gradients are read, not written";
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaFusedOps, ::testing::Values(DType::bf16, DType::f32),
                         testing::dtype_param_name);

}  // namespace
}  // namespace ulysses::ops
