// CUDA attention against the CPU op: GQA, packed documents (one of a single token, one empty),
// tiles that straddle document boundaries, forward and backward; the built-in kernel (head_dim
// 64 and 128) and cuDNN's fused engine (head_dim 16 to 128; ragged, and dense for a single
// document), each backward after the other kernel's forward (they share the lse layout), and
// the overwriting backward from NaN-filled gradients.
#include "ulysses/ops/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <string>

#include "cuda_test_util.h"
#include "ulysses/ops/cuda/cudnn_attention.h"

namespace ulysses::ops {
namespace {

using testing::gpu_poisoned;
using testing::on_gpu;
using testing::relative_error;

struct Case {
  AttentionKernel kernel;
  std::int64_t head_dim, query_heads, kv_heads;
  std::vector<std::int32_t> cu;
};

// gtest prints the parameter of a failing case with this (not as raw bytes).
void PrintTo(const Case& c, std::ostream* out) {
  *out << (c.kernel == AttentionKernel::cudnn ? "cudnn" : "builtin") << " head_dim " << c.head_dim
       << ", heads " << c.query_heads << "/" << c.kv_heads << ", " << c.cu.size() - 1
       << " documents";
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return std::string(c.kernel == AttentionKernel::cudnn ? "cudnn" : "builtin") + "_d" +
         std::to_string(c.head_dim) + "_h" + std::to_string(c.query_heads) + "_kv" +
         std::to_string(c.kv_heads) + "_docs" + std::to_string(c.cu.size() - 1);
}

class CudaAttention : public ::testing::TestWithParam<Case> {};

TEST_P(CudaAttention, MatchesCpuForwardAndBackward) {
  UL_REQUIRE_GPU();
  const Case& param = GetParam();
  const std::int64_t D = param.head_dim, Hq = param.query_heads, Hkv = param.kv_heads;
  const std::vector<std::int32_t>& cu = param.cu;
  const std::int64_t T = cu.back();
  Rng rng(static_cast<std::uint64_t>(D));
  const DType bf = DType::bf16;
  // Scores of a few units so the softmax is far from uniform.
  const Tensor q = testing::random_rounded({T, Hq, D}, rng, bf, 2.0f);
  const Tensor k = testing::random_rounded({T, Hkv, D}, rng, bf, 2.0f);
  const Tensor v = testing::random_rounded({T, Hkv, D}, rng, bf);
  const Tensor cu_cpu = Tensor::from_ints(cu, {static_cast<std::int64_t>(cu.size())});
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  Context ctx = testing::gpu();
  ctx.attention_kernel = param.kernel;
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

  // Overwriting: the gradients start as NaN on both sides and are never read.
  {
    Tensor dq_w = gpu_poisoned({T, Hq, D}, bf), dk_w = gpu_poisoned({T, Hkv, D}, bf);
    Tensor dv_w = gpu_poisoned({T, Hkv, D}, bf);
    attention_backward(ctx, q_gpu, k_gpu, v_gpu, cu_gpu, scale, on_gpu(out, bf), lse_gpu,
                       on_gpu(dout, bf), dq_w, dk_w, dv_w, GradWrite::overwrite);
    Tensor dq_c = testing::poisoned({T, Hq, D}), dk_c = testing::poisoned({T, Hkv, D});
    Tensor dv_c = testing::poisoned({T, Hkv, D});
    attention_backward(cpu, q, k, v, cu_cpu, scale, out, lse_cpu, dout, dq_c, dk_c, dv_c,
                       GradWrite::overwrite);
    EXPECT_LT(relative_error(dq_w, dq_c), 1e-2);
    EXPECT_LT(relative_error(dk_w, dk_c), 1e-2);
    EXPECT_LT(relative_error(dv_w, dv_c), 1e-2);
  }

  if (param.kernel == AttentionKernel::builtin) {
    // Deterministic: the same call gives the same bits (cuDNN sums dq with atomics).
    Tensor dq2 = on_gpu(dq, bf), dk2 = on_gpu(dk, bf), dv2 = on_gpu(dv, bf);
    attention_backward(ctx, q_gpu, k_gpu, v_gpu, cu_gpu, scale, on_gpu(out, bf), lse_gpu,
                       on_gpu(dout, bf), dq2, dk2, dv2);
    EXPECT_EQ(dq2.to_floats(), dq_gpu.to_floats());
    EXPECT_EQ(dk2.to_floats(), dk_gpu.to_floats());
    EXPECT_EQ(dv2.to_floats(), dv_gpu.to_floats());
  }

  // The other kernel's backward from this kernel's lse (head_dim 64/128: both kernels exist).
  if (D == 64 || D == 128) {
    Context other = ctx;
    other.attention_kernel = param.kernel == AttentionKernel::cudnn ? AttentionKernel::builtin
                                                                    : AttentionKernel::cudnn;
    Tensor dq3 = on_gpu(dq, bf), dk3 = on_gpu(dk, bf), dv3 = on_gpu(dv, bf);
    attention_backward(other, q_gpu, k_gpu, v_gpu, cu_gpu, scale, on_gpu(out, bf), lse_gpu,
                       on_gpu(dout, bf), dq3, dk3, dv3);
    EXPECT_LT(relative_error(dq3, dq_cpu), 1e-2);
    EXPECT_LT(relative_error(dk3, dk_cpu), 1e-2);
    EXPECT_LT(relative_error(dv3, dv_cpu), 1e-2);
  }
}

const std::vector<std::int32_t> kPacked = {0, 70, 71, 200, 200, 333};
// 9 documents: a document-count bucket of 16, one 600-token document.
const std::vector<std::int32_t> kMany = {0, 1, 17, 300, 301, 302, 900, 1000, 1000, 1100};
// One document over every token: cuDNN's dense graph (no ragged offsets).
const std::vector<std::int32_t> kOne = {0, 333};

INSTANTIATE_TEST_SUITE_P(Kernels, CudaAttention,
                         ::testing::Values(Case{AttentionKernel::builtin, 64, 8, 2, kPacked},
                                           Case{AttentionKernel::builtin, 128, 8, 2, kPacked},
                                           Case{AttentionKernel::cudnn, 64, 8, 2, kPacked},
                                           Case{AttentionKernel::cudnn, 128, 8, 2, kPacked},
                                           Case{AttentionKernel::cudnn, 128, 4, 4, kPacked},
                                           Case{AttentionKernel::cudnn, 16, 4, 1, kPacked},
                                           Case{AttentionKernel::cudnn, 32, 4, 2, kPacked},
                                           Case{AttentionKernel::cudnn, 128, 8, 1, kMany},
                                           Case{AttentionKernel::cudnn, 128, 8, 2, kOne},
                                           Case{AttentionKernel::cudnn, 64, 4, 4, kOne},
                                           Case{AttentionKernel::builtin, 64, 8, 1, kMany}),
                         case_name);

// The engine survey (cuda_ops_bench --attention-engines): every plan it lists, ragged and dense,
// computes the same attention as the CPU op, and the first one is the plan the op uses.
TEST(CudaAttentionEngines, EveryListedPlanMatchesTheCpuForward) {
  UL_REQUIRE_GPU();
  ASSERT_GT(cuda::cudnn_version(), 0) << "cuDNN did not load on a GPU machine";
  const std::int64_t T = 256, Hq = 4, Hkv = 2, D = 64;
  Rng rng(5);
  const DType bf = DType::bf16;
  const Tensor q = testing::random_rounded({T, Hq, D}, rng, bf, 2.0f);
  const Tensor k = testing::random_rounded({T, Hkv, D}, rng, bf, 2.0f);
  const Tensor v = testing::random_rounded({T, Hkv, D}, rng, bf);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const Context cpu;
  Tensor out_cpu = testing::poisoned({T, Hq, D}), lse_cpu = testing::poisoned({Hq, T});
  attention_forward(cpu, q, k, v, Tensor::from_ints({0, static_cast<std::int32_t>(T)}, {2}), scale,
                    out_cpu, lse_cpu);
  const Context ctx = testing::gpu();
  const cuda::SdpaOneEntry one = cuda::cudnn_sdpa_one_entry(ctx, T, Hq, Hkv, D);
  const Tensor q_gpu = on_gpu(q, bf), k_gpu = on_gpu(k, bf), v_gpu = on_gpu(v, bf);
  for (const bool ragged : {true, false}) {
    const auto choices = cuda::cudnn_sdpa_choices(ctx, /*backward=*/false, one.shape, ragged, 3);
    ASSERT_FALSE(choices.empty()) << "ragged " << ragged;
    EXPECT_EQ(choices.front().name.rfind("heuristic: engine", 0), 0u) << choices.front().name;
    for (const auto& c : choices) {
      Tensor out = gpu_poisoned({T, Hq, D}, bf), lse = gpu_poisoned({Hq, T}, DType::f32);
      cuda::cudnn_sdpa_forward(ctx, *c.plan, one.entries, q_gpu, k_gpu, v_gpu, scale, out, lse);
      EXPECT_LT(relative_error(out, out_cpu), 1e-2) << c.name << " ragged " << ragged;
      EXPECT_LT(relative_error(lse, lse_cpu), 1e-3) << c.name << " ragged " << ragged;
    }
  }
}

TEST(CudaAttentionArgs, RejectsUnsupportedHeadDimAndF32) {
  UL_REQUIRE_GPU();
  Context ctx = testing::gpu();
  ctx.attention_kernel = AttentionKernel::builtin;  // no built-in kernel for head_dim 32
  const Tensor cu = Tensor::from_ints({0, 4}, {2}).to(Device::cuda(0));
  Tensor q = Tensor::zeros({4, 2, 32}, DType::bf16, Device::cuda(0));
  Tensor lse = Tensor::zeros({2, 4}, DType::f32, Device::cuda(0));
  EXPECT_THROW(attention_forward(ctx, q, q, q, cu, 1.0f, q, lse), Error);
  ctx.attention_kernel = AttentionKernel::cudnn;  // nor cuDNN for head_dim 136
  Tensor q136 = Tensor::zeros({4, 2, 136}, DType::bf16, Device::cuda(0));
  EXPECT_THROW(attention_forward(ctx, q136, q136, q136, cu, 1.0f, q136, lse), Error);
  Tensor q32 = Tensor::zeros({4, 2, 64}, DType::f32, Device::cuda(0));
  EXPECT_THROW(attention_forward(ctx, q32, q32, q32, cu, 1.0f, q32, lse), Error);
}

}  // namespace
}  // namespace ulysses::ops
