// CUDA block attention and merge against the CPU op: zigzag block pairs of a packed sequence
// (GQA, documents crossing the chunk borders, a one-token and an empty document), each pair's
// output and lse, the merge over all key blocks, and backward from the merged output and lse;
// bf16 and f32 inputs.
#include "ulysses/ops/block_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cuda_test_util.h"

namespace ulysses::ops {
namespace {

using testing::gpu_poisoned;
using testing::on_gpu;
using testing::relative_error;

class CudaBlockAttention : public testing::DtypeParamTest<501, 502> {};

// lse compared where finite; -inf (no visible key) must match exactly.
void expect_lse_matches(const Tensor& gpu, const Tensor& cpu, double tolerance) {
  const auto g = gpu.to_floats(), c = cpu.to_floats();
  ASSERT_EQ(g.size(), c.size());
  std::vector<double> gf, cf;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (std::isinf(c[i])) {
      EXPECT_EQ(g[i], c[i]) << "lse " << i;
    } else {
      gf.push_back(g[i]);
      cf.push_back(c[i]);
    }
  }
  if (!cf.empty()) {
    EXPECT_LT(relative_error(gf, cf), tolerance);
  }
}

TEST_P(CudaBlockAttention, ZigzagBlocksMatchCpu) {
  UL_REQUIRE_GPU();
  const DType dt = this->dt();
  // 4 zigzag chunks of 96 tokens (ring of 2); documents cross the chunk borders.
  const std::vector<std::int32_t> cu = {0, 70, 71, 200, 200, 333, 384};
  const std::int64_t S = 384, C = 96, Hq = 8, Hkv = 2, D = 64;
  const Tensor q = this->rnd({S, Hq, D}, 2.0f), k = this->rnd({S, Hkv, D}, 2.0f);
  const Tensor v = this->rnd({S, Hkv, D}), dout = this->rnd({S, Hq, D});
  const Tensor cu_cpu = Tensor::from_ints(cu, {static_cast<std::int64_t>(cu.size())});
  const Tensor cu_gpu = cu_cpu.to(Device::cuda(0));
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const Context& gpu = testing::gpu();
  const Context cpu;
  const double tol = testing::tolerance(dt);
  for (std::int64_t a = 0; a < 4; ++a) {
    const Tensor qa = q.rows(a * C, (a + 1) * C), qa_gpu = on_gpu(qa, dt);
    Tensor out_cpu = Tensor::zeros({C, Hq, D}, DType::f32);
    Tensor lse_cpu = Tensor::full({Hq, C}, -std::numeric_limits<float>::infinity());
    Tensor out_gpu = on_gpu(out_cpu, DType::f32), lse_gpu = on_gpu(lse_cpu, DType::f32);
    for (std::int64_t b = 0; b < 4; ++b) {  // every key chunk, fully masked ones included
      SCOPED_TRACE("query chunk " + std::to_string(a) + " key chunk " + std::to_string(b));
      const Tensor kb = k.rows(b * C, (b + 1) * C), vb = v.rows(b * C, (b + 1) * C);
      Tensor bo_cpu = testing::poisoned({C, Hq, D}), bl_cpu = testing::poisoned({Hq, C});
      attention_block_forward(cpu, qa, kb, vb, cu_cpu, a * C, b * C, scale, bo_cpu, bl_cpu);
      Tensor bo_gpu = gpu_poisoned({C, Hq, D}, DType::f32);
      Tensor bl_gpu = gpu_poisoned({Hq, C}, DType::f32);
      attention_block_forward(gpu, qa_gpu, on_gpu(kb, dt), on_gpu(vb, dt), cu_gpu, a * C, b * C,
                              scale, bo_gpu, bl_gpu);
      if (b <= a) {
        EXPECT_LT(relative_error(bo_gpu, bo_cpu), tol);
      }
      for (const float x : bo_gpu.to_floats()) ASSERT_FALSE(std::isnan(x));
      expect_lse_matches(bl_gpu, bl_cpu, 1e-3);
      attention_merge(cpu, out_cpu, lse_cpu, bo_cpu, bl_cpu);
      attention_merge(gpu, out_gpu, lse_gpu, bo_gpu, bl_gpu);
    }
    EXPECT_LT(relative_error(out_gpu, out_cpu), tol);
    expect_lse_matches(lse_gpu, lse_cpu, 1e-3);
    // Backward of every pair from the merged result (the CPU's, so both see the same inputs).
    const Tensor douta = dout.rows(a * C, (a + 1) * C);
    Tensor dq_cpu = Tensor::zeros({C, Hq, D}, DType::f32);
    Tensor dq_gpu = on_gpu(dq_cpu, DType::f32);
    for (std::int64_t b = 0; b <= a; ++b) {
      SCOPED_TRACE("backward: query chunk " + std::to_string(a) + " key chunk " +
                   std::to_string(b));
      const Tensor kb = k.rows(b * C, (b + 1) * C), vb = v.rows(b * C, (b + 1) * C);
      Tensor dk_cpu = Tensor::zeros({C, Hkv, D}, DType::f32), dv_cpu = dk_cpu.clone();
      Tensor dk_gpu = on_gpu(dk_cpu, DType::f32), dv_gpu = on_gpu(dv_cpu, DType::f32);
      attention_block_backward(cpu, qa, kb, vb, cu_cpu, a * C, b * C, scale, out_cpu, lse_cpu,
                               douta, dq_cpu, dk_cpu, dv_cpu);
      attention_block_backward(gpu, qa_gpu, on_gpu(kb, dt), on_gpu(vb, dt), cu_gpu, a * C, b * C,
                               scale, on_gpu(out_cpu, DType::f32), on_gpu(lse_cpu, DType::f32),
                               on_gpu(douta, dt), dq_gpu, dk_gpu, dv_gpu);
      EXPECT_LT(relative_error(dk_gpu, dk_cpu), tol);
      EXPECT_LT(relative_error(dv_gpu, dv_cpu), tol);
    }
    EXPECT_LT(relative_error(dq_gpu, dq_cpu), tol);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaBlockAttention, ::testing::Values(DType::bf16, DType::f32),
                         testing::dtype_param_name);

}  // namespace
}  // namespace ulysses::ops
