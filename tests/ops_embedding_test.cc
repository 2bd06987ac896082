#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "test_util.h"
#include "ulysses/ops/embedding.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::numerical_gradient;
using testing::poisoned;
using testing::random_tensor;
using testing::relative_error;
using testing::weighted_sum;

struct Problem {
  std::int64_t V = 10, C = 70;  // C = 70 spans two column blocks of the backward
  std::vector<std::int32_t> ids = {3, 0, 9, 3, 3, 7, 0, 1, 9};  // repeated ids
  std::int64_t T = 9;
  Tensor id_tensor, table, g;
  explicit Problem(std::uint64_t seed) {
    Rng rng(seed);
    id_tensor = Tensor::from_ints(ids, {T});
    table = random_tensor({V, C}, rng);
    g = random_tensor({T, C}, rng);
  }
};

// Float64 scatter-add of dout: [T, C] into a [V, C] table by ids.
std::vector<double> scatter_reference(const std::vector<std::int32_t>& ids,
                                      const std::vector<double>& dout, std::int64_t V,
                                      std::int64_t C) {
  std::vector<double> dtable(static_cast<std::size_t>(V * C), 0.0);
  for (std::size_t t = 0; t < ids.size(); ++t)
    for (std::int64_t c = 0; c < C; ++c) dtable[ids[t] * C + c] += dout[t * C + c];
  return dtable;
}

TEST(Embedding, ForwardCopiesRows) {
  const Context ctx;
  Problem p(1);
  Tensor out = poisoned({p.T, p.C});
  ops::embedding_forward(ctx, p.id_tensor, p.table, out);
  const float* table = p.table.data<float>();
  const float* o = out.data<float>();
  for (std::int64_t t = 0; t < p.T; ++t)
    for (std::int64_t c = 0; c < p.C; ++c)
      ASSERT_EQ(o[t * p.C + c], table[p.ids[t] * p.C + c]) << "t = " << t << ", c = " << c;
}

TEST(Embedding, IdOutsideVocabularyThrows) {
  const Context ctx;
  Problem p(2);
  Tensor out = poisoned({6, p.C});
  const Tensor too_large = Tensor::from_ints({1, 2, 3, 4, 5, 10}, {6});
  EXPECT_NE(testing::error_message([&] {
              ops::embedding_forward(ctx, too_large, p.table, out);
            }).find("token id 10 at position 5 is outside the vocabulary (vocab_size 10)"),
            std::string::npos);
  const Tensor negative = Tensor::from_ints({1, -1, 3, 4, 5, 6}, {6});
  EXPECT_NE(testing::error_message([&] {
              ops::embedding_forward(ctx, negative, p.table, out);
            }).find("token id -1 at position 1 is outside the vocabulary (vocab_size 10)"),
            std::string::npos);
  Tensor dtable = Tensor::zeros({p.V, p.C}, DType::f32);
  EXPECT_THROW(ops::embedding_backward(ctx, too_large, poisoned({6, p.C}), dtable), Error);
}

TEST(Embedding, BackwardMatchesScatterAndFiniteDifferences) {
  const Context ctx;
  Problem p(3);
  Tensor dtable = Tensor::zeros({p.V, p.C}, DType::f32);
  ops::embedding_backward(ctx, p.id_tensor, p.g, dtable);

  // (a) Float64 reference scatter.
  EXPECT_LT(relative_error(as_doubles(dtable), scatter_reference(p.ids, as_doubles(p.g), p.V, p.C)),
            1e-6);

  // (b) Finite differences of the f32 op itself.
  Tensor out = poisoned({p.T, p.C});
  const auto loss_f32 = [&] {
    ops::embedding_forward(ctx, p.id_tensor, p.table, out);
    return weighted_sum(out, p.g);
  };
  EXPECT_LT(relative_error(as_doubles(dtable), numerical_gradient(p.table, loss_f32)), 1e-3);
}

TEST(Embedding, BackwardAccumulates) {
  const Context ctx;
  Problem p(4);
  Tensor dtable_once = Tensor::zeros({p.V, p.C}, DType::f32);
  ops::embedding_backward(ctx, p.id_tensor, p.g, dtable_once);
  Tensor dtable = Tensor::zeros({p.V, p.C}, DType::f32);
  ops::embedding_backward(ctx, p.id_tensor, p.g, dtable);
  ops::embedding_backward(ctx, p.id_tensor, p.g, dtable);
  std::vector<double> doubled = as_doubles(dtable_once);
  for (double& v : doubled) v *= 2;
  EXPECT_LT(relative_error(as_doubles(dtable), doubled), 1e-6);
}

TEST(Embedding, BadArgumentsThrow) {
  const Context ctx;
  Problem p(5);
  Tensor out = poisoned({p.T, p.C});
  EXPECT_THROW(ops::embedding_forward(ctx, Tensor::zeros({p.T}, DType::f32), p.table, out), Error);
  EXPECT_THROW(ops::embedding_forward(ctx, p.id_tensor.view({1, p.T}), p.table, out), Error);
  EXPECT_THROW(ops::embedding_forward(ctx, p.id_tensor, p.table, poisoned({p.T, p.C + 1})), Error);
  EXPECT_THROW(ops::embedding_forward(ctx, p.id_tensor, p.table.view({p.V * p.C}), out), Error);
  Tensor dtable = Tensor::zeros({p.V, p.C}, DType::f32);
  EXPECT_THROW(ops::embedding_backward(ctx, p.id_tensor, poisoned({p.T + 1, p.C}), dtable), Error);
  EXPECT_THROW(
      ops::embedding_backward(ctx, p.id_tensor, p.g, Tensor::zeros({p.V, p.C}, DType::i32)), Error);
}

}  // namespace
}  // namespace ulysses
