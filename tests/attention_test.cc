#include "ulysses/ops/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "attention_reference.h"
#include "test_util.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::reference_attention;
using testing::Reference;
using testing::numerical_gradient;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::weighted_sum;

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
  Tensor out, lse, dq, dk, dv;
};

// Forward into NaN-poisoned outputs, then backward into zeroed gradients.
Outputs run_attention(const Inputs& in, std::int64_t block) {
  Context ctx;
  ctx.attention_block = block;
  const std::int64_t T = in.q.dim(0), Hq = in.q.dim(1);
  Outputs o;
  o.out = poisoned(in.q.shape());
  o.lse = poisoned({Hq, T});
  ops::attention_forward(ctx, in.q, in.k, in.v, in.cu, in.scale, o.out, o.lse);
  o.dq = Tensor::zeros(in.q.shape(), DType::f32);
  o.dk = Tensor::zeros(in.k.shape(), DType::f32);
  o.dv = Tensor::zeros(in.v.shape(), DType::f32);
  ops::attention_backward(ctx, in.q, in.k, in.v, in.cu, in.scale, o.out, o.lse, in.dout, o.dq, o.dk,
                          o.dv);
  return o;
}

void expect_matches_reference(std::int64_t Hq, std::int64_t Hkv, std::int64_t D,
                              const std::vector<std::int32_t>& cu, std::int64_t block) {
  SCOPED_TRACE("Hq=" + std::to_string(Hq) + " Hkv=" + std::to_string(Hkv) +
               " T=" + std::to_string(cu.back()) + " block=" + std::to_string(block));
  const Inputs in = make_inputs(Hq, Hkv, D, cu, 1234 + static_cast<std::uint64_t>(block));
  const Outputs o = run_attention(in, block);
  const Reference r = reference_attention(in.q, in.k, in.v, cu, in.scale, in.dout);
  EXPECT_LE(relative_error(as_doubles(o.out), r.out), 1e-5);
  EXPECT_LE(relative_error(as_doubles(o.lse), r.lse), 1e-5);
  EXPECT_LE(relative_error(as_doubles(o.dq), r.dq), 1e-5);
  EXPECT_LE(relative_error(as_doubles(o.dk), r.dk), 1e-5);
  EXPECT_LE(relative_error(as_doubles(o.dv), r.dv), 1e-5);
}

TEST(Attention, MhaSingleDocumentMatchesReference) {
  expect_matches_reference(2, 2, 8, {0, 24}, 8);
}

TEST(Attention, GroupedQueryHeadsMatchReference) {
  expect_matches_reference(4, 2, 8, {0, 21}, 8);
  expect_matches_reference(4, 1, 8, {0, 21}, 8);
}

TEST(Attention, PackedDocumentsWithEmptyAndSingleTokenDocuments) {
  expect_matches_reference(4, 2, 8, {0, 7, 7, 8, 25, 26, 37}, 8);
  expect_matches_reference(2, 1, 4, {0, 0, 1, 10, 10}, 4);
}

TEST(Attention, LengthsNotMultipleOfBlock) {
  expect_matches_reference(2, 1, 8, {0, 37}, 8);  // 4 full blocks and a partial one
  expect_matches_reference(2, 2, 8, {0, 5}, 8);   // T smaller than the block
}

TEST(Attention, BlockSizesAgree) {
  const std::vector<std::int32_t> cu = {0, 11, 30};
  for (const std::int64_t block : {1, 3, 8, 64}) expect_matches_reference(4, 2, 8, cu, block);
  const Inputs in = make_inputs(4, 2, 8, cu, 99);
  const Outputs a = run_attention(in, 3);
  const Outputs b = run_attention(in, 16);
  EXPECT_LE(relative_error(a.out, b.out), 1e-6);
  EXPECT_LE(relative_error(a.lse, b.lse), 1e-6);
  EXPECT_LE(relative_error(a.dq, b.dq), 1e-6);
  EXPECT_LE(relative_error(a.dk, b.dk), 1e-6);
  EXPECT_LE(relative_error(a.dv, b.dv), 1e-6);
}

TEST(Attention, EmptySequence) {
  const Inputs in = make_inputs(2, 1, 4, {0}, 5);
  const Outputs o = run_attention(in, 4);
  EXPECT_EQ(o.out.numel(), 0);
}

TEST(Attention, BackwardMatchesFiniteDifferences) {
  // Two documents, GQA, block 2: L = sum(out * G).
  const Inputs in = make_inputs(2, 1, 3, {0, 3, 7}, 7);
  Context ctx;
  ctx.attention_block = 2;
  Outputs o = run_attention(in, 2);  // dout plays the role of G
  Tensor out = Tensor::zeros(in.q.shape(), DType::f32);
  Tensor lse = Tensor::zeros({2, 7}, DType::f32);
  auto loss = [&]() {
    ops::attention_forward(ctx, in.q, in.k, in.v, in.cu, in.scale, out, lse);
    return weighted_sum(out, in.dout);
  };
  EXPECT_LE(relative_error(as_doubles(o.dq), numerical_gradient(in.q, loss)), 1e-2);
  EXPECT_LE(relative_error(as_doubles(o.dk), numerical_gradient(in.k, loss)), 1e-2);
  EXPECT_LE(relative_error(as_doubles(o.dv), numerical_gradient(in.v, loss)), 1e-2);
}

TEST(Attention, PackedDocumentsEqualSeparateRuns) {
  const std::int32_t split = 13, T = 30;
  const Inputs packed = make_inputs(4, 2, 8, {0, split, T}, 21);
  const Outputs whole = run_attention(packed, 8);
  const std::int32_t bounds[2][2] = {{0, split}, {split, T}};
  for (const auto& [begin, end] : bounds) {
    Inputs alone = packed;
    alone.q = packed.q.rows(begin, end).clone();
    alone.k = packed.k.rows(begin, end).clone();
    alone.v = packed.v.rows(begin, end).clone();
    alone.dout = packed.dout.rows(begin, end).clone();
    alone.cu = Tensor::from_ints({0, end - begin}, {2});
    const Outputs part = run_attention(alone, 8);
    EXPECT_LE(relative_error(part.out, whole.out.rows(begin, end)), 1e-6);
    EXPECT_LE(relative_error(part.dq, whole.dq.rows(begin, end)), 1e-6);
    EXPECT_LE(relative_error(part.dk, whole.dk.rows(begin, end)), 1e-6);
    EXPECT_LE(relative_error(part.dv, whole.dv.rows(begin, end)), 1e-6);
    // lse: [Hq, T] -> the columns of this document.
    const auto whole_lse = whole.lse.to_floats();
    std::vector<double> expected;
    for (std::int64_t h = 0; h < 4; ++h)
      for (std::int32_t t = begin; t < end; ++t)
        expected.push_back(whole_lse[static_cast<std::size_t>(h * T + t)]);
    EXPECT_LE(relative_error(as_doubles(part.lse), expected), 1e-6);
  }
}

TEST(Attention, BackwardAccumulatesIntoExistingGradientsOrOverwrites) {
  const std::vector<std::int32_t> cu = {0, 9, 20};
  const Inputs in = make_inputs(4, 2, 8, cu, 3);
  const Reference r = reference_attention(in.q, in.k, in.v, cu, in.scale, in.dout);
  Context ctx;
  ctx.attention_block = 4;
  Tensor out = poisoned(in.q.shape());
  Tensor lse = poisoned({4, 20});
  ops::attention_forward(ctx, in.q, in.k, in.v, in.cu, in.scale, out, lse);
  Rng rng(77);
  const Tensor dq0 = random_tensor(in.q.shape(), rng);
  const Tensor dk0 = random_tensor(in.k.shape(), rng);
  const Tensor dv0 = random_tensor(in.v.shape(), rng);
  Tensor dq = dq0.clone(), dk = dk0.clone(), dv = dv0.clone();
  ops::attention_backward(ctx, in.q, in.k, in.v, in.cu, in.scale, out, lse, in.dout, dq, dk, dv);
  auto plus = [](const Tensor& old, const std::vector<double>& grad) {
    std::vector<double> sum = as_doubles(old);
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += grad[i];
    return sum;
  };
  EXPECT_LE(relative_error(as_doubles(dq), plus(dq0, r.dq)), 1e-5);
  EXPECT_LE(relative_error(as_doubles(dk), plus(dk0, r.dk)), 1e-5);
  EXPECT_LE(relative_error(as_doubles(dv), plus(dv0, r.dv)), 1e-5);

  // GradWrite::overwrite: from NaN (never read), the gradients alone.
  Tensor dq_w = poisoned(in.q.shape()), dk_w = poisoned(in.k.shape());
  Tensor dv_w = poisoned(in.v.shape());
  ops::attention_backward(ctx, in.q, in.k, in.v, in.cu, in.scale, out, lse, in.dout, dq_w, dk_w,
                          dv_w, ops::GradWrite::overwrite);
  EXPECT_LE(relative_error(as_doubles(dq_w), r.dq), 1e-5);
  EXPECT_LE(relative_error(as_doubles(dk_w), r.dk), 1e-5);
  EXPECT_LE(relative_error(as_doubles(dv_w), r.dv), 1e-5);
}

TEST(Attention, ResultsAreBitwiseReproducible) {
  const Inputs in = make_inputs(4, 1, 8, {0, 17, 40}, 11);
  const Outputs a = run_attention(in, 4);
  const Outputs b = run_attention(in, 4);
  EXPECT_EQ(a.out.to_floats(), b.out.to_floats());
  EXPECT_EQ(a.lse.to_floats(), b.lse.to_floats());
  EXPECT_EQ(a.dq.to_floats(), b.dq.to_floats());
  EXPECT_EQ(a.dk.to_floats(), b.dk.to_floats());
  EXPECT_EQ(a.dv.to_floats(), b.dv.to_floats());
}

// Expects an Error whose message contains `needle`.
template <typename F>
void expect_error(F&& call, const std::string& needle) {
  try {
    call();
    ADD_FAILURE() << "expected ulysses::Error mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Attention, BadArgumentsThrow) {
  const Inputs in = make_inputs(4, 2, 8, {0, 6, 10}, 1);
  const Context ctx;
  Tensor out = Tensor::zeros({10, 4, 8}, DType::f32);
  Tensor lse = Tensor::zeros({4, 10}, DType::f32);
  auto forward = [&](const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& cu) {
    return [&, q, k, v, cu]() { ops::attention_forward(ctx, q, k, v, cu, in.scale, out, lse); };
  };
  expect_error(forward(in.q, in.k, in.v, Tensor::from_ints({0, 6, 9}, {3})), "cu_seqlens");
  expect_error(forward(in.q, in.k, in.v, Tensor::from_ints({1, 6, 10}, {3})), "cu_seqlens");
  expect_error(forward(in.q, in.k, in.v, Tensor::from_ints({0, 7, 6, 10}, {4})), "cu_seqlens");
  expect_error(forward(in.q, in.k, in.v, Tensor::zeros({3}, DType::f32)), "cu_seqlens");
  expect_error(forward(in.q.to(DType::bf16), in.k, in.v, in.cu), "attention: q");
  expect_error(forward(in.q, in.k.to(DType::bf16), in.v, in.cu), "attention: k");
  Rng rng(2);
  const Tensor k3 = random_tensor({10, 3, 8}, rng);
  expect_error(forward(in.q, k3, k3, in.cu), "multiple");
  expect_error(forward(in.q, in.k, random_tensor({10, 2, 4}, rng), in.cu), "attention: v");
  expect_error(
      [&]() {
        ops::attention_forward(ctx, in.q, in.k, in.v, in.cu, in.scale,
                               Tensor::zeros({10, 4, 4}, DType::f32), lse);
      },
      "attention_forward: out");
  expect_error(
      [&]() {
        Tensor dq = Tensor::zeros({10, 4, 8}, DType::f32);
        Tensor dk = Tensor::zeros({10, 4, 8}, DType::f32);  // wrong: Hkv = 2
        Tensor dv = Tensor::zeros({10, 2, 8}, DType::f32);
        ops::attention_backward(ctx, in.q, in.k, in.v, in.cu, in.scale, out, lse, in.dout, dq, dk,
                                dv);
      },
      "attention_backward: dk");
}

}  // namespace
}  // namespace ulysses
