// CUDA attention against the CPU op: GQA, packed documents (one of a single token, one empty),
// tiles that straddle document boundaries, forward and backward, head_dim 64 and 128.
#include <gtest/gtest.h>

#include <cmath>

#include "cuda_test_util.h"
#include "ulysses/ops/attention.h"

namespace ulysses::ops {
namespace {

using testing::gpu_poisoned;
using testing::on_gpu;
using testing::relative_error;

class CudaAttention : public ::testing::TestWithParam<std::int64_t> {};

TEST_P(CudaAttention, MatchesCpuForwardAndBackward) {
  UL_REQUIRE_GPU();
  const std::int64_t D = GetParam(), Hq = 8, Hkv = 2;
  const std::vector<std::int32_t> cu = {0, 70, 71, 200, 200, 333};
  const std::int64_t T = cu.back();
  Rng rng(static_cast<std::uint64_t>(D));
  const DType bf = DType::bf16;
  // Scores of a few units so the softmax is far from uniform.
  const Tensor q = testing::random_rounded({T, Hq, D}, rng, bf, 2.0f);
  const Tensor k = testing::random_rounded({T, Hkv, D}, rng, bf, 2.0f);
  const Tensor v = testing::random_rounded({T, Hkv, D}, rng, bf);
  const Tensor cu_cpu = Tensor::from_ints(cu, {static_cast<std::int64_t>(cu.size())});
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const Context& ctx = testing::gpu();
  const Context cpu;

  Tensor out_gpu = gpu_poisoned({T, Hq, D}, bf), lse_gpu = gpu_poisoned({Hq, T}, DType::f32);
  const Tensor q_gpu = on_gpu(q, bf), k_gpu = on_gpu(k, bf), v_gpu = on_gpu(v, bf);
  const Tensor cu_gpu = cu_cpu.to(Device::cuda(0));
  attention_forward(ctx, q_gpu, k_gpu, v_gpu, cu_gpu, scale, out_gpu, lse_gpu);
  Tensor out_cpu = testing::poisoned({T, Hq, D}), lse_cpu = testing::poisoned({Hq, T});
  attention_forward(cpu, q, k, v, cu_cpu, scale, out_cpu, lse_cpu);
  EXPECT_LT(relative_error(out_gpu, out_cpu), 1e-2);
  EXPECT_LT(relative_error(lse_gpu, lse_cpu), 1e-3);

  // Backward from the CPU forward's (rounded) output, so both sides see the same inputs.
  const Tensor out = testing::rounded(out_cpu, bf);
  const Tensor dout = testing::random_rounded({T, Hq, D}, rng, bf);
  const Tensor dq = testing::random_rounded({T, Hq, D}, rng, bf, 0.01f);
  const Tensor dk = testing::random_rounded({T, Hkv, D}, rng, bf, 0.01f);
  const Tensor dv = testing::random_rounded({T, Hkv, D}, rng, bf, 0.01f);
  Tensor dq_gpu = on_gpu(dq, bf), dk_gpu = on_gpu(dk, bf), dv_gpu = on_gpu(dv, bf);
  attention_backward(ctx, q_gpu, k_gpu, v_gpu, cu_gpu, scale, on_gpu(out, bf), lse_gpu,
                     on_gpu(dout, bf), dq_gpu, dk_gpu, dv_gpu);
  Tensor dq_cpu = dq.clone(), dk_cpu = dk.clone(), dv_cpu = dv.clone();
  attention_backward(cpu, q, k, v, cu_cpu, scale, out, lse_cpu, dout, dq_cpu, dk_cpu, dv_cpu);
  EXPECT_LT(relative_error(dq_gpu, dq_cpu), 1e-2);
  EXPECT_LT(relative_error(dk_gpu, dk_cpu), 1e-2);
  EXPECT_LT(relative_error(dv_gpu, dv_cpu), 1e-2);

  // Deterministic: the same call gives the same bits.
  Tensor dq2 = on_gpu(dq, bf), dk2 = on_gpu(dk, bf), dv2 = on_gpu(dv, bf);
  attention_backward(ctx, q_gpu, k_gpu, v_gpu, cu_gpu, scale, on_gpu(out, bf), lse_gpu,
                     on_gpu(dout, bf), dq2, dk2, dv2);
  EXPECT_EQ(dq2.to_floats(), dq_gpu.to_floats());
  EXPECT_EQ(dk2.to_floats(), dk_gpu.to_floats());
  EXPECT_EQ(dv2.to_floats(), dv_gpu.to_floats());
}

INSTANTIATE_TEST_SUITE_P(HeadDims, CudaAttention, ::testing::Values(64, 128));

TEST(CudaAttentionArgs, RejectsUnsupportedHeadDimAndF32) {
  UL_REQUIRE_GPU();
  const Context& ctx = testing::gpu();
  const Tensor cu = Tensor::from_ints({0, 4}, {2}).to(Device::cuda(0));
  Tensor q = Tensor::zeros({4, 2, 32}, DType::bf16, Device::cuda(0));
  Tensor lse = Tensor::zeros({2, 4}, DType::f32, Device::cuda(0));
  EXPECT_THROW(attention_forward(ctx, q, q, q, cu, 1.0f, q, lse), Error);
  Tensor q32 = Tensor::zeros({4, 2, 64}, DType::f32, Device::cuda(0));
  EXPECT_THROW(attention_forward(ctx, q32, q32, q32, cu, 1.0f, q32, lse), Error);
}

}  // namespace
}  // namespace ulysses::ops
