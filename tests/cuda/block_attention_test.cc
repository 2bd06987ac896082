// CUDA block attention and merge against the CPU op: zigzag block pairs of a packed sequence
// (GQA, documents crossing the chunk borders, a one-token and an empty document), each pair's
// output and lse, the merge over all key blocks, and backward from the merged output and lse:
// the reference kernel (bf16 and f32 inputs, no host boundaries), cuDNN's fused path for the
// diagonal and keys-before pairs (head_dim 64 and 128; the path taken is checked), a whole
// zigzag ring simulated on one GPU against the whole-sequence attention, and the fallback to the
// reference kernel for placements cuDNN does not cover.
#include "ulysses/ops/block_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cuda_test_util.h"
#include "ulysses/ops/attention.h"

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
      attention_block_forward(cpu, qa, kb, vb, cu_cpu, cu, a * C, b * C, scale, bo_cpu, bl_cpu);
      Tensor bo_gpu = gpu_poisoned({C, Hq, D}, DType::f32);
      Tensor bl_gpu = gpu_poisoned({Hq, C}, DType::f32);
      // No host boundaries: the reference kernel runs every pair.
      EXPECT_EQ(attention_block_forward(gpu, qa_gpu, on_gpu(kb, dt), on_gpu(vb, dt), cu_gpu, {},
                                        a * C, b * C, scale, bo_gpu, bl_gpu),
                BlockAttentionPath::reference);
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
      attention_block_backward(cpu, qa, kb, vb, cu_cpu, cu, a * C, b * C, scale, out_cpu, lse_cpu,
                               douta, dq_cpu, dk_cpu, dv_cpu);
      EXPECT_EQ(attention_block_backward(gpu, qa_gpu, on_gpu(kb, dt), on_gpu(vb, dt), cu_gpu, {},
                                         a * C, b * C, scale, on_gpu(out_cpu, DType::f32),
                                         on_gpu(lse_cpu, DType::f32), on_gpu(douta, dt), dq_gpu,
                                         dk_gpu, dv_gpu),
                BlockAttentionPath::reference);
      EXPECT_LT(relative_error(dk_gpu, dk_cpu), tol);
      EXPECT_LT(relative_error(dv_gpu, dv_cpu), tol);
    }
    EXPECT_LT(relative_error(dq_gpu, dq_cpu), tol);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaBlockAttention, ::testing::Values(DType::bf16, DType::f32),
                         testing::dtype_param_name);

// ---- cuDNN's fused path -------------------------------------------------------------------

// 512 tokens: documents [0, 70) [70, 71) [71, 200) [200, 200) [200, 333) [333, 340) [340, 512)
// cross the borders of chunks of 128 (and of 64) tokens; a one-token, an empty and a 7-token
// document are shorter than a chunk.
const std::vector<std::int32_t> kDocs = {0, 70, 71, 200, 200, 333, 340, 512};
constexpr std::int64_t kHq = 8, kHkv = 2;

Context cudnn_only() {
  Context ctx = testing::gpu();
  ctx.attention_kernel = AttentionKernel::cudnn;  // an Error where cuDNN cannot run a pair
  return ctx;
}

const char* path_name(BlockAttentionPath p) {
  switch (p) {
    case BlockAttentionPath::cpu: return "cpu";
    case BlockAttentionPath::reference: return "reference";
    case BlockAttentionPath::cudnn: return "cudnn";
    case BlockAttentionPath::masked: return "masked";
  }
  return "?";
}

struct Sequence {
  Tensor q, k, v, dout;  // CPU f32, bf16-rounded: [S, Hq, D], [S, Hkv, D] x 2, [S, Hq, D]
  Tensor q_gpu, k_gpu, v_gpu, dout_gpu;
  Tensor cu_cpu, cu_gpu;
  float scale;
};

Sequence make_sequence(std::int64_t D, std::uint64_t seed) {
  Rng rng(seed);
  const std::int64_t S = kDocs.back();
  const DType bf = DType::bf16;
  Sequence s;
  s.q = testing::random_rounded({S, kHq, D}, rng, bf, 2.0f);
  s.k = testing::random_rounded({S, kHkv, D}, rng, bf, 2.0f);
  s.v = testing::random_rounded({S, kHkv, D}, rng, bf);
  s.dout = testing::random_rounded({S, kHq, D}, rng, bf);
  s.q_gpu = on_gpu(s.q, bf);
  s.k_gpu = on_gpu(s.k, bf);
  s.v_gpu = on_gpu(s.v, bf);
  s.dout_gpu = on_gpu(s.dout, bf);
  s.cu_cpu = Tensor::from_ints(kDocs, {static_cast<std::int64_t>(kDocs.size())});
  s.cu_gpu = s.cu_cpu.to(Device::cuda(0));
  s.scale = 1.0f / std::sqrt(static_cast<float>(D));
  return s;
}

class CudnnBlockPairs : public ::testing::TestWithParam<std::int64_t> {};

// Every pair of 4 chunks of 128 tokens, each against the CPU op on the same inputs. With kDocs
// the diagonal pairs and (1, 0), (2, 1), (3, 2) have visible keys (the document of the first
// query starts before the key chunk ends); (2, 0), (3, 0), (3, 1) and every pair with keys after
// the queries are fully masked.
TEST_P(CudnnBlockPairs, DiagonalAndKeysBeforeMatchCpu) {
  UL_REQUIRE_GPU();
  const std::int64_t D = GetParam(), C = 128, chunks = 4;
  const Sequence s = make_sequence(D, static_cast<std::uint64_t>(D) + 77);
  const Context ctx = cudnn_only();
  const Context cpu;
  const DType bf = DType::bf16;
  auto expected_path = [](std::int64_t a, std::int64_t b) {
    return b == a || b == a - 1 ? BlockAttentionPath::cudnn : BlockAttentionPath::masked;
  };
  Rng rng(static_cast<std::uint64_t>(D) + 5);
  for (std::int64_t a = 0; a < chunks; ++a) {
    const Tensor qa = s.q.rows(a * C, (a + 1) * C), qa_gpu = s.q_gpu.rows(a * C, (a + 1) * C);
    Tensor out_cpu = Tensor::zeros({C, kHq, D}, DType::f32);
    Tensor lse_cpu = Tensor::full({kHq, C}, -std::numeric_limits<float>::infinity());
    Tensor out_gpu = on_gpu(out_cpu, DType::f32), lse_gpu = on_gpu(lse_cpu, DType::f32);
    for (std::int64_t b = 0; b < chunks; ++b) {
      SCOPED_TRACE("query chunk " + std::to_string(a) + " key chunk " + std::to_string(b));
      const Tensor kb = s.k.rows(b * C, (b + 1) * C), vb = s.v.rows(b * C, (b + 1) * C);
      Tensor bo_cpu = testing::poisoned({C, kHq, D}), bl_cpu = testing::poisoned({kHq, C});
      attention_block_forward(cpu, qa, kb, vb, s.cu_cpu, kDocs, a * C, b * C, s.scale, bo_cpu,
                              bl_cpu);
      Tensor bo_gpu = gpu_poisoned({C, kHq, D}, DType::f32);
      Tensor bl_gpu = gpu_poisoned({kHq, C}, DType::f32);
      const BlockAttentionPath path = attention_block_forward(
          ctx, qa_gpu, s.k_gpu.rows(b * C, (b + 1) * C), s.v_gpu.rows(b * C, (b + 1) * C), s.cu_gpu,
          kDocs, a * C, b * C, s.scale, bo_gpu, bl_gpu);
      EXPECT_EQ(path, expected_path(a, b)) << path_name(path);
      if (path == BlockAttentionPath::masked) {
        EXPECT_EQ(bo_gpu.to_floats(), bo_cpu.to_floats());  // zeros
      } else {
        EXPECT_LT(relative_error(bo_gpu, bo_cpu), 1e-2);
      }
      expect_lse_matches(bl_gpu, bl_cpu, 1e-3);
      attention_merge(cpu, out_cpu, lse_cpu, bo_cpu, bl_cpu);
      attention_merge(ctx, out_gpu, lse_gpu, bo_gpu, bl_gpu);
    }
    EXPECT_LT(relative_error(out_gpu, out_cpu), 1e-2);
    expect_lse_matches(lse_gpu, lse_cpu, 1e-3);
    // Backward of every pair with keys not after the queries, from the CPU's merged result
    // rounded to bf16 (cuDNN reads out in bf16; so both see the same inputs), accumulating into
    // gradients that start nonzero.
    const Tensor douta = s.dout.rows(a * C, (a + 1) * C);
    const Tensor douta_gpu = s.dout_gpu.rows(a * C, (a + 1) * C);
    const Tensor out_rounded = testing::rounded(out_cpu, bf);
    const Tensor out_final = on_gpu(out_rounded, DType::f32);
    const Tensor lse_final = on_gpu(lse_cpu, DType::f32);
    Tensor dq_cpu = testing::random_rounded({C, kHq, D}, rng, bf, 0.01f);
    Tensor dq_gpu = on_gpu(dq_cpu, DType::f32);
    for (std::int64_t b = 0; b <= a; ++b) {
      SCOPED_TRACE("backward: query chunk " + std::to_string(a) + " key chunk " +
                   std::to_string(b));
      const Tensor kb = s.k.rows(b * C, (b + 1) * C), vb = s.v.rows(b * C, (b + 1) * C);
      const Tensor dk0 = testing::random_rounded({C, kHkv, D}, rng, bf, 0.01f);
      const Tensor dv0 = testing::random_rounded({C, kHkv, D}, rng, bf, 0.01f);
      Tensor dk_cpu = dk0.clone(), dv_cpu = dv0.clone();
      Tensor dk_gpu = on_gpu(dk0, DType::f32), dv_gpu = on_gpu(dv0, DType::f32);
      const Tensor dq_before = dq_gpu.to(Device::cpu());
      attention_block_backward(cpu, qa, kb, vb, s.cu_cpu, kDocs, a * C, b * C, s.scale, out_rounded,
                               lse_cpu, douta, dq_cpu, dk_cpu, dv_cpu);
      const BlockAttentionPath path = attention_block_backward(
          ctx, qa_gpu, s.k_gpu.rows(b * C, (b + 1) * C), s.v_gpu.rows(b * C, (b + 1) * C), s.cu_gpu,
          kDocs, a * C, b * C, s.scale, out_final, lse_final, douta_gpu, dq_gpu, dk_gpu, dv_gpu);
      EXPECT_EQ(path, expected_path(a, b)) << path_name(path);
      if (path == BlockAttentionPath::masked) {  // nothing added, bit for bit
        EXPECT_EQ(dk_gpu.to_floats(), dk0.to_floats());
        EXPECT_EQ(dv_gpu.to_floats(), dv0.to_floats());
        EXPECT_EQ(dq_gpu.to_floats(), dq_before.to_floats());
      }
      EXPECT_LT(relative_error(dk_gpu, dk_cpu), 1e-2);
      EXPECT_LT(relative_error(dv_gpu, dv_cpu), 1e-2);
    }
    EXPECT_LT(relative_error(dq_gpu, dq_cpu), 1e-2);
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, CudnnBlockPairs, ::testing::Values(64, 128),
                         [](const ::testing::TestParamInfo<std::int64_t>& info) {
                           return "d" + std::to_string(info.param);
                         });

struct RingCase {
  std::int64_t ring, head_dim;
};

class CudnnZigzagRing : public ::testing::TestWithParam<RingCase> {};

// Ring attention's schedule on one GPU (parallel/ring_attention.cc): ring position i holds
// query chunks i and 2R - 1 - i; at step s it computes them against the key chunks of position
// i - s (pairs with every key after every query skipped), the first block of each query chunk
// written in place and the others merged; backward runs every pair again from the merged
// output and lse. The result equals the whole-sequence attention (the CPU op), and every pair
// ran on cuDNN or was fully masked (the 2R diagonal pairs on cuDNN).
TEST_P(CudnnZigzagRing, EqualsWholeSequenceAttention) {
  UL_REQUIRE_GPU();
  const std::int64_t R = GetParam().ring, D = GetParam().head_dim;
  const std::int64_t S = kDocs.back(), C = S / (2 * R);
  const Sequence s = make_sequence(D, static_cast<std::uint64_t>(R * 1000 + D));
  const Context ctx = cudnn_only();
  const Context cpu;
  const float inf = std::numeric_limits<float>::infinity();

  Tensor out_ref = testing::poisoned({S, kHq, D}), lse_ref = testing::poisoned({kHq, S});
  attention_forward(cpu, s.q, s.k, s.v, s.cu_cpu, s.scale, out_ref, lse_ref);
  Tensor dq_ref = Tensor::zeros({S, kHq, D}, DType::f32);
  Tensor dk_ref = Tensor::zeros({S, kHkv, D}, DType::f32), dv_ref = dk_ref.clone();
  // From the output rounded to bf16, as the GPU's backward reads it.
  attention_backward(cpu, s.q, s.k, s.v, s.cu_cpu, s.scale, testing::rounded(out_ref, DType::bf16),
                     lse_ref, s.dout, dq_ref, dk_ref, dv_ref);

  auto rows = [&](const Tensor& t, std::int64_t c) { return t.rows(c * C, (c + 1) * C); };
  const std::int64_t chunks = 2 * R;
  std::vector<Tensor> out(chunks), lse(chunks), dq(chunks), dk(chunks), dv(chunks);
  for (std::int64_t c = 0; c < chunks; ++c) {
    out[c] = gpu_poisoned({C, kHq, D}, DType::f32);
    lse[c] = gpu_poisoned({kHq, C}, DType::f32);
    dq[c] = Tensor::zeros({C, kHq, D}, DType::f32, Device::cuda(0));
    dk[c] = Tensor::zeros({C, kHkv, D}, DType::f32, Device::cuda(0));
    dv[c] = Tensor::zeros({C, kHkv, D}, DType::f32, Device::cuda(0));
  }
  Tensor block_out = Tensor::empty({C, kHq, D}, DType::f32, Device::cuda(0));
  Tensor block_lse = Tensor::empty({kHq, C}, DType::f32, Device::cuda(0));
  std::int64_t diagonal_cudnn = 0, pairs = 0;
  // Runs f(query chunk, key chunk, first) over the ring's schedule.
  auto schedule = [&](const auto& f) {
    for (std::int64_t i = 0; i < R; ++i) {
      bool started[2] = {false, false};
      for (std::int64_t step = 0; step < R; ++step) {
        const std::int64_t source = (i - step + R) % R;
        for (std::int64_t qc = 0; qc < 2; ++qc) {
          for (std::int64_t kc = 0; kc < 2; ++kc) {
            const std::int64_t query_chunk = qc == 0 ? i : chunks - 1 - i;
            const std::int64_t key_chunk = kc == 0 ? source : chunks - 1 - source;
            if (key_chunk > query_chunk) continue;
            f(query_chunk, key_chunk, !started[qc]);
            started[qc] = true;
          }
        }
      }
    }
  };
  schedule([&](std::int64_t a, std::int64_t b, bool first) {
    const BlockAttentionPath path = attention_block_forward(
        ctx, rows(s.q_gpu, a), rows(s.k_gpu, b), rows(s.v_gpu, b), s.cu_gpu, kDocs, a * C, b * C,
        s.scale, first ? out[a] : block_out, first ? lse[a] : block_lse);
    EXPECT_TRUE(path == BlockAttentionPath::cudnn || path == BlockAttentionPath::masked)
        << "pair (" << a << ", " << b << "): " << path_name(path);
    if (a == b && path == BlockAttentionPath::cudnn) ++diagonal_cudnn;
    ++pairs;
    if (!first) attention_merge(ctx, out[a], lse[a], block_out, block_lse);
  });
  EXPECT_EQ(diagonal_cudnn, chunks);
  EXPECT_EQ(pairs, chunks * (chunks + 1) / 2);  // every pair with keys not after the queries
  schedule([&](std::int64_t a, std::int64_t b, bool) {
    const BlockAttentionPath path = attention_block_backward(
        ctx, rows(s.q_gpu, a), rows(s.k_gpu, b), rows(s.v_gpu, b), s.cu_gpu, kDocs, a * C, b * C,
        s.scale, out[a], lse[a], rows(s.dout_gpu, a), dq[a], dk[b], dv[b]);
    EXPECT_TRUE(path == BlockAttentionPath::cudnn || path == BlockAttentionPath::masked)
        << "backward pair (" << a << ", " << b << "): " << path_name(path);
  });

  for (std::int64_t c = 0; c < chunks; ++c) {
    SCOPED_TRACE("chunk " + std::to_string(c));
    EXPECT_LT(relative_error(out[c], rows(out_ref, c)), 1e-2);
    // lse [Hq, S] -> this chunk's [Hq, C]
    std::vector<float> want;
    const auto all = lse_ref.to_floats();
    for (std::int64_t h = 0; h < kHq; ++h)
      for (std::int64_t t = c * C; t < (c + 1) * C; ++t)
        want.push_back(all[static_cast<std::size_t>(h * S + t)]);
    for (const float x : want) ASSERT_LT(x, inf);  // every query sees itself
    expect_lse_matches(lse[c], Tensor::from_floats(want, {kHq, C}), 1e-3);
    EXPECT_LT(relative_error(dq[c], rows(dq_ref, c)), 1e-2);
    EXPECT_LT(relative_error(dk[c], rows(dk_ref, c)), 1e-2);
    EXPECT_LT(relative_error(dv[c], rows(dv_ref, c)), 1e-2);
  }
}

INSTANTIATE_TEST_SUITE_P(Rings, CudnnZigzagRing,
                         ::testing::Values(RingCase{2, 64}, RingCase{4, 128}, RingCase{4, 64}),
                         [](const ::testing::TestParamInfo<RingCase>& info) {
                           return "ring" + std::to_string(info.param.ring) + "_d" +
                                  std::to_string(info.param.head_dim);
                         });

// Placements and calls cuDNN does not cover run the reference kernel (and agree with the CPU).
TEST(CudaBlockAttentionFallback, UncoveredPairsRunTheReferenceKernel) {
  UL_REQUIRE_GPU();
  const std::int64_t D = 64, C = 128;
  const Sequence s = make_sequence(D, 91);
  const Context cpu;
  Context automatic = testing::gpu();
  automatic.attention_kernel = AttentionKernel::automatic;
  Context builtin = automatic;
  builtin.attention_kernel = AttentionKernel::builtin;
  struct Call {
    const char* what;
    const Context* ctx;
    std::int64_t q_begin, k_begin;
    bool host_boundaries;
  };
  const Call calls[] = {
      {"overlapping ranges", &automatic, 100, 50, true},  // queries [100, 228), keys [50, 178)
      {"builtin kernel, diagonal", &builtin, 128, 128, true},
      {"builtin kernel, keys before", &builtin, 256, 128, true},
      {"no host boundaries, diagonal", &automatic, 128, 128, false},
  };
  for (const Call& call : calls) {
    SCOPED_TRACE(call.what);
    const std::vector<std::int32_t> cu = call.host_boundaries ? kDocs : std::vector<std::int32_t>{};
    const std::int64_t qa = call.q_begin, kb = call.k_begin;
    const Tensor q = s.q.rows(qa, qa + C), k = s.k.rows(kb, kb + C), v = s.v.rows(kb, kb + C);
    Tensor out_cpu = testing::poisoned({C, kHq, D}), lse_cpu = testing::poisoned({kHq, C});
    attention_block_forward(cpu, q, k, v, s.cu_cpu, kDocs, qa, kb, s.scale, out_cpu, lse_cpu);
    Tensor out_gpu = gpu_poisoned({C, kHq, D}, DType::f32);
    Tensor lse_gpu = gpu_poisoned({kHq, C}, DType::f32);
    const Tensor q_gpu = s.q_gpu.rows(qa, qa + C), k_gpu = s.k_gpu.rows(kb, kb + C);
    const Tensor v_gpu = s.v_gpu.rows(kb, kb + C);
    BlockAttentionPath path = attention_block_forward(*call.ctx, q_gpu, k_gpu, v_gpu, s.cu_gpu, cu,
                                                      qa, kb, s.scale, out_gpu, lse_gpu);
    EXPECT_EQ(path, BlockAttentionPath::reference) << path_name(path);
    EXPECT_LT(relative_error(out_gpu, out_cpu), 1e-2);
    expect_lse_matches(lse_gpu, lse_cpu, 1e-3);
    // Backward from this block alone as if it were the final result (any out/lse pair works).
    const Tensor dout = s.dout.rows(qa, qa + C);
    Tensor dq_cpu = Tensor::zeros({C, kHq, D}, DType::f32);
    Tensor dk_cpu = Tensor::zeros({C, kHkv, D}, DType::f32), dv_cpu = dk_cpu.clone();
    Tensor dq_gpu = on_gpu(dq_cpu, DType::f32), dk_gpu = on_gpu(dk_cpu, DType::f32);
    Tensor dv_gpu = on_gpu(dv_cpu, DType::f32);
    attention_block_backward(cpu, q, k, v, s.cu_cpu, kDocs, qa, kb, s.scale, out_cpu, lse_cpu, dout,
                             dq_cpu, dk_cpu, dv_cpu);
    path = attention_block_backward(*call.ctx, q_gpu, k_gpu, v_gpu, s.cu_gpu, cu, qa, kb, s.scale,
                                    on_gpu(out_cpu, DType::f32), on_gpu(lse_cpu, DType::f32),
                                    s.dout_gpu.rows(qa, qa + C), dq_gpu, dk_gpu, dv_gpu);
    EXPECT_EQ(path, BlockAttentionPath::reference) << path_name(path);
    EXPECT_LT(relative_error(dq_gpu, dq_cpu), 1e-2);
    EXPECT_LT(relative_error(dk_gpu, dk_cpu), 1e-2);
    EXPECT_LT(relative_error(dv_gpu, dv_cpu), 1e-2);
  }
}

// f32 inputs have no cuDNN path: automatic falls back, cudnn-only is an Error.
TEST(CudaBlockAttentionFallback, F32InputsFallBackOrFailWhenCudnnIsRequired) {
  UL_REQUIRE_GPU();
  const std::int64_t D = 64, C = 128;
  const Sequence s = make_sequence(D, 92);
  const Tensor q = on_gpu(s.q.rows(C, 2 * C), DType::f32);
  const Tensor k = on_gpu(s.k.rows(C, 2 * C), DType::f32);
  const Tensor v = on_gpu(s.v.rows(C, 2 * C), DType::f32);
  Tensor out = gpu_poisoned({C, kHq, D}, DType::f32), lse = gpu_poisoned({kHq, C}, DType::f32);
  Context automatic = testing::gpu();
  automatic.attention_kernel = AttentionKernel::automatic;
  EXPECT_EQ(attention_block_forward(automatic, q, k, v, s.cu_gpu, kDocs, C, C, s.scale, out, lse),
            BlockAttentionPath::reference);
  Tensor out_cpu = testing::poisoned({C, kHq, D}), lse_cpu = testing::poisoned({kHq, C});
  attention_block_forward(Context{}, s.q.rows(C, 2 * C), s.k.rows(C, 2 * C), s.v.rows(C, 2 * C),
                          s.cu_cpu, kDocs, C, C, s.scale, out_cpu, lse_cpu);
  EXPECT_LT(relative_error(out, out_cpu), 1e-5);
  EXPECT_THROW(
      attention_block_forward(cudnn_only(), q, k, v, s.cu_gpu, kDocs, C, C, s.scale, out, lse),
      Error);
}

}  // namespace
}  // namespace ulysses::ops
