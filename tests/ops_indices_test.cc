// Index arguments with host copies (ops/indices.h): the copy is what the ops check and plan by;
// against a CPU tensor it must agree with the tensor, and a bad value in it is reported as the
// op's own error.
#include <gtest/gtest.h>

#include <vector>

#include "test_util.h"
#include "ulysses/ops/attention.h"
#include "ulysses/ops/cross_entropy.h"
#include "ulysses/ops/embedding.h"
#include "ulysses/ops/indices.h"

namespace ulysses {
namespace {

using testing::expect_error;
using testing::random_tensor;

TEST(Indices, HostValuesComeFromTheCopyOrTheTensor) {
  const std::vector<std::int32_t> values = {3, 1, 4, 1, 5};
  const Tensor t = Tensor::from_ints(values, {5});
  std::vector<std::int32_t> storage;
  const auto own = ops::host_values(ops::Indices(t), storage, "ids");
  EXPECT_EQ(std::vector<std::int32_t>(own.begin(), own.end()), values);
  EXPECT_EQ(own.data(), t.data<std::int32_t>());  // a CPU tensor is read in place
  const auto given = ops::host_values(ops::Indices(t, values), storage, "ids");
  EXPECT_EQ(given.data(), values.data());
  EXPECT_TRUE(storage.empty());

  const std::vector<std::int32_t> other = {3, 1, 4, 2, 5};
  expect_error([&] { ops::host_values(ops::Indices(t, other), storage, "ids"); },
               "ids: the host copy differs from the tensor at 3 (2 vs 1)");
  const std::vector<std::int32_t> shorter = {3, 1};
  expect_error([&] { ops::host_values(ops::Indices(t, shorter), storage, "ids"); },
               "ids: the host copy has 2 values for a tensor of 5");
  // An empty vector means "no copy"; an empty tensor needs none.
  EXPECT_EQ(ops::host_values(ops::Indices(t, std::vector<std::int32_t>{}), storage, "ids").size(),
            5u);
  EXPECT_TRUE(ops::host_values(ops::Indices(Tensor::from_ints({}, {0})), storage, "ids").empty());
  expect_error(
      [&] { ops::host_values(ops::Indices(Tensor::zeros({2}, DType::f32)), storage, "labels"); },
      "labels must be an i32 tensor");
}

TEST(Indices, OpsReadTheHostCopy) {
  const Context ctx;
  Rng rng(5);
  const std::int64_t V = 6, C = 4, T = 3;
  const Tensor table = random_tensor({V, C}, rng);
  const std::vector<std::int32_t> ids = {2, 5, 0};
  const Tensor id_tensor = Tensor::from_ints(ids, {T});
  Tensor a = Tensor::zeros({T, C}, DType::f32), b = Tensor::zeros({T, C}, DType::f32);
  ops::embedding_forward(ctx, id_tensor, table, a);
  ops::embedding_forward(ctx, {id_tensor, ids}, table, b);
  EXPECT_EQ(a.to_floats(), b.to_floats());
  const std::vector<std::int32_t> wrong = {2, 5, 1};
  expect_error(
      [&] {
        ops::embedding_forward(ctx, {id_tensor, wrong}, table, b);
      },
      "embedding: ids: the host copy differs from the tensor at 2");
  Tensor dtable = Tensor::zeros({V, C}, DType::f32);
  expect_error(
      [&] {
        ops::embedding_backward(ctx, {id_tensor, wrong}, a, dtable);
      },
      "embedding: ids: the host copy differs");

  // Labels: the copy is checked like the tensor, and an out-of-range label named.
  const Tensor x = random_tensor({T, C}, rng);
  const std::vector<std::int32_t> labels = {1, -100, 5};
  const Tensor label_tensor = Tensor::from_ints(labels, {T});
  const ops::LossSum plain = ops::lm_head_cross_entropy(ctx, x, table, label_tensor, 0.0f, {}, {});
  const ops::LossSum copied =
      ops::lm_head_cross_entropy(ctx, x, table, {label_tensor, labels}, 0.0f, {}, {});
  EXPECT_FALSE(copied.pending());  // a CPU loss is a value at once
  EXPECT_EQ(plain.loss_sum(), copied.loss_sum());
  EXPECT_EQ(copied.valid_count(), 2);
  const std::vector<std::int32_t> other = {1, 0, 5};
  expect_error(
      [&] {
        ops::lm_head_cross_entropy(ctx, x, table, {label_tensor, other}, 0.0f, {}, {});
      },
      "lm_head_cross_entropy: labels: the host copy differs from the tensor at 1");

  // Document boundaries of attention.
  const std::int64_t H = 2, D = 4;
  const Tensor q = random_tensor({T, H, D}, rng), k = random_tensor({T, H, D}, rng),
               v = random_tensor({T, H, D}, rng);
  const std::vector<std::int32_t> cu = {0, 1, 3};
  const Tensor cu_tensor = Tensor::from_ints(cu, {3});
  Tensor out = Tensor::zeros({T, H, D}, DType::f32), lse = Tensor::zeros({H, T}, DType::f32);
  ops::attention_forward(ctx, q, k, v, {cu_tensor, cu}, 0.5f, out, lse);
  Tensor out_plain = Tensor::zeros({T, H, D}, DType::f32),
         lse_plain = Tensor::zeros({H, T}, DType::f32);
  ops::attention_forward(ctx, q, k, v, cu_tensor, 0.5f, out_plain, lse_plain);
  EXPECT_EQ(out.to_floats(), out_plain.to_floats());
  const std::vector<std::int32_t> cu_other = {0, 2, 3};
  expect_error(
      [&] {
        ops::attention_forward(ctx, q, k, v, {cu_tensor, cu_other}, 0.5f, out, lse);
      },
      "attention: cu_seqlens: the host copy differs from the tensor at 1");
}

}  // namespace
}  // namespace ulysses
