// Block attention with statistics and the lse merge (the pieces of ring attention): blocks
// merged over a split sequence equal the full attention (float64 reference and the fp32 op),
// backward from the final output and lse equals the full backward, and finite differences
// agree.
#include "ulysses/ops/block_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "attention_reference.h"
#include "test_util.h"
#include "ulysses/ops/attention.h"
#include "ulysses/ops/block_pair.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::expect_error;
using testing::numerical_gradient;
using testing::poisoned;
using testing::random_tensor;
using testing::Reference;
using testing::reference_attention;
using testing::relative_error;
using testing::weighted_sum;

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

struct Inputs {
  Tensor q, k, v, cu, dout;
  std::vector<std::int32_t> cu_values;
  float scale;
};

Inputs make_inputs(std::int64_t Hq, std::int64_t Hkv, std::int64_t D,
                   const std::vector<std::int32_t>& cu, std::uint64_t seed) {
  Rng rng(seed);
  const std::int64_t T = cu.back();
  Inputs in;
  in.q = random_tensor({T, Hq, D}, rng, 1.5f);
  in.k = random_tensor({T, Hkv, D}, rng, 1.5f);
  in.v = random_tensor({T, Hkv, D}, rng);
  in.dout = random_tensor({T, Hq, D}, rng);
  in.cu = Tensor::from_ints(cu, {static_cast<std::int64_t>(cu.size())});
  in.cu_values = cu;
  in.scale = 1.0f / std::sqrt(static_cast<float>(D));
  return in;
}

struct Outputs {
  Tensor out, lse, dq, dk, dv;  // whole sequence: [T, Hq, D], [Hq, T], grads like q, k, v
};

// Attention computed block by block over the blocks [bounds[i], bounds[i + 1]): every query
// block merges the results of every key block (in order, or reversed), then the backward of
// every block pair runs from the query block's final output and lse.
Outputs blocked_attention(const Inputs& in, const std::vector<std::int64_t>& bounds,
                          std::int64_t tile, bool reverse = false) {
  Context ctx;
  ctx.attention_block = tile;
  const std::int64_t T = in.q.dim(0), Hq = in.q.dim(1);
  const std::size_t blocks = bounds.size() - 1;
  Outputs o;
  o.out = poisoned(in.q.shape());
  o.lse = poisoned({Hq, T});
  o.dq = Tensor::zeros(in.q.shape(), DType::f32);
  o.dk = Tensor::zeros(in.k.shape(), DType::f32);
  o.dv = Tensor::zeros(in.v.shape(), DType::f32);
  for (std::size_t a = 0; a < blocks; ++a) {
    const std::int64_t qa = bounds[a], qe = bounds[a + 1], nq = qe - qa;
    const Tensor q = in.q.rows(qa, qe);
    Tensor out = Tensor::zeros(q.shape(), DType::f32);  // [nq, Hq, D]
    Tensor lse = Tensor::full({Hq, nq}, kMinusInf);     // [Hq, nq]
    for (std::size_t i = 0; i < blocks; ++i) {
      const std::size_t b = reverse ? blocks - 1 - i : i;
      const std::int64_t kb = bounds[b], ke = bounds[b + 1];
      Tensor block_out = poisoned(q.shape());
      Tensor block_lse = poisoned({Hq, nq});
      ops::attention_block_forward(ctx, q, in.k.rows(kb, ke), in.v.rows(kb, ke), in.cu,
                                   in.cu_values, qa, kb, in.scale, block_out, block_lse);
      ops::attention_merge(ctx, out, lse, block_out, block_lse);
    }
    for (std::size_t b = 0; b < blocks; ++b) {
      const std::int64_t kb = bounds[b], ke = bounds[b + 1];
      ops::attention_block_backward(ctx, q, in.k.rows(kb, ke), in.v.rows(kb, ke), in.cu,
                                    in.cu_values, qa, kb, in.scale, out, lse, in.dout.rows(qa, qe),
                                    o.dq.rows(qa, qe), o.dk.rows(kb, ke), o.dv.rows(kb, ke));
    }
    o.out.rows(qa, qe).copy_from(out);
    for (std::int64_t h = 0; h < Hq; ++h)
      for (std::int64_t t = 0; t < nq; ++t)
        o.lse.data<float>()[h * T + qa + t] = lse.data<float>()[h * nq + t];
  }
  return o;
}

// The whole-sequence op (one block).
Outputs full_attention(const Inputs& in, std::int64_t tile) {
  Context ctx;
  ctx.attention_block = tile;
  Outputs o;
  o.out = poisoned(in.q.shape());
  o.lse = poisoned({in.q.dim(1), in.q.dim(0)});
  ops::attention_forward(ctx, in.q, in.k, in.v, in.cu, in.scale, o.out, o.lse);
  o.dq = Tensor::zeros(in.q.shape(), DType::f32);
  o.dk = Tensor::zeros(in.k.shape(), DType::f32);
  o.dv = Tensor::zeros(in.v.shape(), DType::f32);
  ops::attention_backward(ctx, in.q, in.k, in.v, in.cu, in.scale, o.out, o.lse, in.dout, o.dq, o.dk,
                          o.dv);
  return o;
}

void expect_matches(const Outputs& got, const Reference& r, const Outputs& op) {
  EXPECT_LE(relative_error(as_doubles(got.out), r.out), 1e-5);
  EXPECT_LE(relative_error(as_doubles(got.lse), r.lse), 1e-5);
  EXPECT_LE(relative_error(as_doubles(got.dq), r.dq), 1e-5);
  EXPECT_LE(relative_error(as_doubles(got.dk), r.dk), 1e-5);
  EXPECT_LE(relative_error(as_doubles(got.dv), r.dv), 1e-5);
  EXPECT_LE(relative_error(got.out, op.out), 1e-5);
  EXPECT_LE(relative_error(got.lse, op.lse), 1e-5);
  EXPECT_LE(relative_error(got.dq, op.dq), 1e-5);
  EXPECT_LE(relative_error(got.dk, op.dk), 1e-5);
  EXPECT_LE(relative_error(got.dv, op.dv), 1e-5);
}

TEST(BlockAttention, MergedBlocksEqualFullAttention) {
  // Packed documents of uneven lengths crossing the block borders, an empty document, a
  // one-token document and documents shorter than a block; GQA (4 query heads on 2 kv heads).
  const std::vector<std::int32_t> cu = {0, 3, 11, 11, 12, 26, 33, 40};
  const Inputs in = make_inputs(4, 2, 8, cu, 5);
  const Reference r = reference_attention(in.q, in.k, in.v, cu, in.scale, in.dout);
  const Outputs op = full_attention(in, 4);
  // Zigzag-sized chunks (8 of 5 tokens), uneven blocks, and the whole sequence as one block.
  for (const auto& bounds : std::vector<std::vector<std::int64_t>>{
           {0, 5, 10, 15, 20, 25, 30, 35, 40}, {0, 1, 9, 24, 40}, {0, 40}}) {
    for (const std::int64_t tile : {3, 4, 16}) {
      SCOPED_TRACE("blocks " + std::to_string(bounds.size() - 1) + " tile " + std::to_string(tile));
      expect_matches(blocked_attention(in, bounds, tile), r, op);
    }
  }
}

TEST(BlockAttention, MultiHeadAndOneKvHead) {
  const std::vector<std::int32_t> cu = {0, 17, 24};
  for (const std::int64_t kv_heads : {2, 1}) {
    const Inputs in = make_inputs(2, kv_heads, 4, cu, 9);
    const Reference r = reference_attention(in.q, in.k, in.v, cu, in.scale, in.dout);
    expect_matches(blocked_attention(in, {0, 6, 12, 18, 24}, 4), r, full_attention(in, 4));
  }
}

TEST(BlockAttention, MergeOrderChangesOnlyRounding) {
  const std::vector<std::int32_t> cu = {0, 9, 30};
  const Inputs in = make_inputs(2, 1, 8, cu, 13);
  const Outputs forward = blocked_attention(in, {0, 7, 14, 21, 30}, 4);
  const Outputs backward = blocked_attention(in, {0, 7, 14, 21, 30}, 4, true);
  EXPECT_LE(relative_error(forward.out, backward.out), 1e-6);
  EXPECT_LE(relative_error(forward.lse, backward.lse), 1e-6);
  EXPECT_LE(relative_error(forward.dq, backward.dq), 1e-6);
}

TEST(BlockAttention, FullyMaskedBlockContributesNothing) {
  // Keys after every query (one document), and keys of another document before the queries.
  const std::vector<std::int32_t> cu = {0, 8, 16, 24};
  const Inputs in = make_inputs(2, 1, 4, cu, 3);
  Context ctx;
  ctx.attention_block = 4;
  struct Pair {
    std::int64_t q_begin, k_begin;
  };
  for (const Pair pair : {Pair{8, 12}, Pair{16, 8}, Pair{0, 16}}) {
    const Tensor q = in.q.rows(pair.q_begin, pair.q_begin + 4);
    const Tensor k = in.k.rows(pair.k_begin, pair.k_begin + 4);
    const Tensor v = in.v.rows(pair.k_begin, pair.k_begin + 4);
    Tensor out = poisoned(q.shape());
    Tensor lse = poisoned({2, 4});
    ops::attention_block_forward(ctx, q, k, v, in.cu, in.cu_values, pair.q_begin, pair.k_begin,
                                 in.scale, out, lse);
    for (const float x : out.to_floats()) EXPECT_EQ(x, 0.0f);
    for (const float x : lse.to_floats()) EXPECT_EQ(x, kMinusInf);
    // Merging it changes nothing, bit for bit.
    Rng rng(4);
    Tensor acc = random_tensor(q.shape(), rng);
    Tensor acc_lse = random_tensor({2, 4}, rng);
    const Tensor acc0 = acc.clone(), acc_lse0 = acc_lse.clone();
    ops::attention_merge(ctx, acc, acc_lse, out, lse);
    EXPECT_EQ(acc.to_floats(), acc0.to_floats());
    EXPECT_EQ(acc_lse.to_floats(), acc_lse0.to_floats());
    // Its backward adds nothing.
    Tensor dq = Tensor::zeros(q.shape(), DType::f32);
    Tensor dk = Tensor::zeros(k.shape(), DType::f32);
    Tensor dv = Tensor::zeros(v.shape(), DType::f32);
    ops::attention_block_backward(ctx, q, k, v, in.cu, in.cu_values, pair.q_begin, pair.k_begin,
                                  in.scale, acc, acc_lse,
                                  in.dout.rows(pair.q_begin, pair.q_begin + 4), dq, dk, dv);
    for (const Tensor* t : {&dq, &dk, &dv})
      for (const float x : t->to_floats()) EXPECT_EQ(x, 0.0f);
  }
}

TEST(BlockAttention, PartlyMaskedBlockMatchesReference) {
  // One block pair: queries [6, 14) over keys [2, 12) with a document border at 9: the block's
  // own softmax over its visible keys, against float64.
  const std::vector<std::int32_t> cu = {0, 9, 20};
  const Inputs in = make_inputs(2, 1, 4, cu, 21);
  Context ctx;
  ctx.attention_block = 3;
  const std::int64_t q0 = 6, q1 = 14, k0 = 2, k1 = 12, Hq = 2, D = 4;
  Tensor out = poisoned({q1 - q0, Hq, D});
  Tensor lse = poisoned({Hq, q1 - q0});
  ops::attention_block_forward(ctx, in.q.rows(q0, q1), in.k.rows(k0, k1), in.v.rows(k0, k1), in.cu,
                               in.cu_values, q0, k0, in.scale, out, lse);
  const auto q = as_doubles(in.q), k = as_doubles(in.k), v = as_doubles(in.v);
  auto document = [&](std::int64_t t) { return t < 9 ? 0 : 1; };
  for (std::int64_t h = 0; h < Hq; ++h) {
    for (std::int64_t t = q0; t < q1; ++t) {
      std::vector<double> scores;
      std::vector<std::int64_t> keys;
      for (std::int64_t s = k0; s < k1 && s <= t; ++s) {
        if (document(s) != document(t)) continue;
        double dot = 0;
        for (std::int64_t d = 0; d < D; ++d) dot += q[(t * Hq + h) * D + d] * k[s * D + d];
        scores.push_back(in.scale * dot);
        keys.push_back(s);
      }
      ASSERT_FALSE(scores.empty());
      const double max = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (const double s : scores) sum += std::exp(s - max);
      EXPECT_NEAR(lse.data<float>()[h * (q1 - q0) + t - q0], max + std::log(sum), 1e-5);
      for (std::int64_t d = 0; d < D; ++d) {
        double expected = 0;
        for (std::size_t j = 0; j < keys.size(); ++j)
          expected += std::exp(scores[j] - max) / sum * v[keys[j] * D + d];
        EXPECT_NEAR(out.data<float>()[((t - q0) * Hq + h) * D + d], expected, 1e-5);
      }
    }
  }
}

TEST(BlockAttention, BackwardMatchesFiniteDifferences) {
  // L = sum(out * G) with out merged over three blocks (GQA, a document crossing two borders).
  const Inputs in = make_inputs(2, 1, 3, {0, 2, 9, 12}, 7);
  const std::vector<std::int64_t> bounds = {0, 4, 8, 12};
  const Outputs o = blocked_attention(in, bounds, 2);  // dout plays the role of G
  auto loss = [&]() { return weighted_sum(blocked_attention(in, bounds, 2).out, in.dout); };
  EXPECT_LE(relative_error(as_doubles(o.dq), numerical_gradient(in.q, loss)), 1e-2);
  EXPECT_LE(relative_error(as_doubles(o.dk), numerical_gradient(in.k, loss)), 1e-2);
  EXPECT_LE(relative_error(as_doubles(o.dv), numerical_gradient(in.v, loss)), 1e-2);
}

TEST(BlockAttention, ResultsAreBitwiseReproducible) {
  const Inputs in = make_inputs(4, 2, 8, {0, 13, 40}, 17);
  const Outputs a = blocked_attention(in, {0, 10, 20, 30, 40}, 4);
  const Outputs b = blocked_attention(in, {0, 10, 20, 30, 40}, 4);
  EXPECT_EQ(a.out.to_floats(), b.out.to_floats());
  EXPECT_EQ(a.dq.to_floats(), b.dq.to_floats());
  EXPECT_EQ(a.dk.to_floats(), b.dk.to_floats());
}

TEST(BlockAttention, BadArgumentsThrow) {
  const Inputs in = make_inputs(4, 2, 8, {0, 6, 10}, 1);
  const Context ctx;
  Tensor out = Tensor::zeros({4, 4, 8}, DType::f32);
  Tensor lse = Tensor::zeros({4, 4}, DType::f32);
  expect_error(
      [&] {
        ops::attention_block_forward(ctx, in.q.rows(0, 4), in.k.rows(0, 4), in.v.rows(0, 4), in.cu,
                                     in.cu_values, 8, 0, in.scale, out, lse);
      },
      "outside the sequence");
  expect_error(
      [&] {
        ops::attention_block_forward(ctx, in.q.rows(0, 4), in.k.rows(0, 4), in.v.rows(0, 4), in.cu,
                                     in.cu_values, 0, -1, in.scale, out, lse);
      },
      "keys [-1, 3)");
  Tensor bad_lse = Tensor::zeros({4, 5}, DType::f32);
  expect_error(
      [&] {
        ops::attention_block_forward(ctx, in.q.rows(0, 4), in.k.rows(0, 4), in.v.rows(0, 4), in.cu,
                                     in.cu_values, 0, 0, in.scale, out, bad_lse);
      },
      "lse");
  expect_error([&] { ops::attention_merge(ctx, out, bad_lse, out, lse); }, "attention_merge");
  // The host boundaries must be the device's (here: the same tensor's) values.
  expect_error(
      [&] {
        ops::attention_block_forward(ctx, in.q.rows(0, 4), in.k.rows(0, 4), in.v.rows(0, 4), in.cu,
                                     {0, 5, 10}, 0, 0, in.scale, out, lse);
      },
      "differs from cu_seqlens");
  expect_error(
      [&] {
        ops::attention_block_forward(ctx, in.q.rows(0, 4), in.k.rows(0, 4), in.v.rows(0, 4), in.cu,
                                     {0, 10}, 0, 0, in.scale, out, lse);
      },
      "cu_host has 2 values");
}

TEST(BlockAttention, CpuRunsEveryPairWithOrWithoutHostBoundaries) {
  const Inputs in = make_inputs(2, 1, 8, {0, 6, 10}, 2);
  const Context ctx;
  Tensor out = poisoned({4, 2, 8}), lse = poisoned({2, 4});
  EXPECT_EQ(ops::attention_block_forward(ctx, in.q.rows(4, 8), in.k.rows(4, 8), in.v.rows(4, 8),
                                         in.cu, in.cu_values, 4, 4, in.scale, out, lse),
            ops::BlockAttentionPath::cpu);
  Tensor out2 = poisoned({4, 2, 8}), lse2 = poisoned({2, 4});
  EXPECT_EQ(ops::attention_block_forward(ctx, in.q.rows(4, 8), in.k.rows(4, 8), in.v.rows(4, 8),
                                         in.cu, {}, 4, 4, in.scale, out2, lse2),
            ops::BlockAttentionPath::cpu);
  EXPECT_EQ(out.to_floats(), out2.to_floats());
  EXPECT_EQ(lse.to_floats(), lse2.to_floats());
}

// The host classification of block pairs that picks the fused CUDA path (ops/block_pair.h).
TEST(BlockPair, DiagonalListsTheDocumentsMeetingTheRange) {
  // Documents [0, 3) [3, 11) [11, 11) [11, 12) [12, 26) [26, 40).
  const std::vector<std::int32_t> cu = {0, 3, 11, 11, 12, 26, 40};
  const ops::BlockPair p = ops::classify_block_pair(cu, 10, 5, 10, 5);  // tokens [10, 15)
  EXPECT_EQ(p.kind, ops::BlockPairKind::diagonal);
  EXPECT_EQ(p.first_document, 1);
  EXPECT_EQ(p.documents, 4);  // [3, 11), the empty [11, 11), [11, 12), [12, 26)
  EXPECT_EQ(p.longest, 3);    // [12, 15)
  EXPECT_EQ(p.query_rows, 5);
  EXPECT_EQ(p.key_rows, 5);
  EXPECT_EQ(p.key_begin, 0);
  const ops::BlockPair one = ops::classify_block_pair(cu, 28, 8, 28, 8);  // inside [26, 40)
  EXPECT_EQ(one.kind, ops::BlockPairKind::diagonal);
  EXPECT_EQ(one.first_document, 5);
  EXPECT_EQ(one.documents, 1);
  EXPECT_EQ(one.longest, 8);
  const ops::BlockPair start = ops::classify_block_pair(cu, 0, 12, 0, 12);
  EXPECT_EQ(start.first_document, 0);
  EXPECT_EQ(start.documents, 4);  // [0, 3) [3, 11) [11, 11) [11, 12)
  EXPECT_EQ(start.longest, 8);
}

TEST(BlockPair, KeysBeforeQueriesSeeOnlyTheDocumentOfTheFirstQuery) {
  const std::vector<std::int32_t> cu = {0, 3, 11, 11, 12, 26, 40};
  // Queries [20, 30) over keys [5, 15): document [12, 26) meets both: queries [20, 26) (6 rows)
  // see keys [12, 15) (block rows 7 .. 9).
  ops::BlockPair p = ops::classify_block_pair(cu, 20, 10, 5, 10);
  EXPECT_EQ(p.kind, ops::BlockPairKind::before);
  EXPECT_EQ(p.first_document, 4);
  EXPECT_EQ(p.documents, 1);
  EXPECT_EQ(p.query_rows, 6);
  EXPECT_EQ(p.key_begin, 7);
  EXPECT_EQ(p.key_rows, 3);
  // Adjacent ranges inside one document: everything visible.
  p = ops::classify_block_pair(cu, 30, 5, 26, 4);
  EXPECT_EQ(p.kind, ops::BlockPairKind::before);
  EXPECT_EQ(p.query_rows, 5);
  EXPECT_EQ(p.key_begin, 0);
  EXPECT_EQ(p.key_rows, 4);
  // The first query's document starts at the end of the keys: masked.
  EXPECT_EQ(ops::classify_block_pair(cu, 12, 10, 5, 7).kind, ops::BlockPairKind::masked);
  // Queries [8, 12) over keys [0, 6): the first query's document [3, 11) holds queries [8, 11)
  // and keys [3, 6).
  p = ops::classify_block_pair(cu, 8, 4, 0, 6);
  EXPECT_EQ(p.kind, ops::BlockPairKind::before);
  EXPECT_EQ(p.first_document, 1);
  EXPECT_EQ(p.query_rows, 3);
  EXPECT_EQ(p.key_begin, 3);
  EXPECT_EQ(p.key_rows, 3);
}

TEST(BlockPair, OtherPlacementsAndErrors) {
  const std::vector<std::int32_t> cu = {0, 3, 11, 11, 12, 26, 40};
  EXPECT_EQ(ops::classify_block_pair(cu, 0, 10, 10, 10).kind, ops::BlockPairKind::masked);
  EXPECT_EQ(ops::classify_block_pair(cu, 0, 0, 0, 10).kind, ops::BlockPairKind::masked);
  EXPECT_EQ(ops::classify_block_pair(cu, 10, 10, 5, 10).kind, ops::BlockPairKind::other);
  EXPECT_EQ(ops::classify_block_pair(cu, 10, 10, 10, 5).kind, ops::BlockPairKind::other);
  expect_error([&] { ops::classify_block_pair(cu, 35, 10, 0, 5); }, "outside the sequence");
  expect_error([&] { ops::classify_block_pair({0, 5, 4}, 0, 2, 0, 2); }, "non-decreasing");
}

}  // namespace
}  // namespace ulysses
