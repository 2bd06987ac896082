#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "test_util.h"
#include "ulysses/ops/elementwise.h"

namespace ulysses {
namespace {

using testing::as_doubles;
using testing::random_tensor;
using testing::relative_error;

TEST(Elementwise, AddInplaceMatchesReference) {
  const Context ctx;
  Rng rng(1);
  Tensor y = random_tensor({3, 5, 7}, rng);
  const Tensor x = random_tensor({3, 5, 7}, rng);
  std::vector<double> expected = as_doubles(y);
  const std::vector<double> x64 = as_doubles(x);
  for (std::size_t i = 0; i < expected.size(); ++i) expected[i] += x64[i];
  ops::add_inplace(ctx, y, x);
  EXPECT_LT(relative_error(as_doubles(y), expected), 1e-7);
}

TEST(Elementwise, ScaleInplaceMatchesReference) {
  const Context ctx;
  Rng rng(2);
  Tensor x = random_tensor({4, 9}, rng);
  std::vector<double> expected = as_doubles(x);
  for (double& v : expected) v *= 0.37;
  ops::scale_inplace(ctx, x, 0.37f);
  EXPECT_LT(relative_error(as_doubles(x), expected), 1e-7);
}

TEST(Elementwise, SumOfSquaresIsAccurateAndDeterministic) {
  const Context ctx;
  Rng rng(3);
  // Spans several chunks with a partial last one; includes an empty tensor.
  for (const std::int64_t n : {std::int64_t{0}, std::int64_t{1}, std::int64_t{100003}}) {
    const Tensor x = random_tensor({n}, rng, 3.0f);
    double expected = 0;
    for (const double v : as_doubles(x)) expected += v * v;
    const double sum = ops::sum_of_squares(ctx, x);
    EXPECT_NEAR(sum, expected, 1e-12 * (1 + expected)) << "n = " << n;
    EXPECT_EQ(sum, ops::sum_of_squares(ctx, x));  // bitwise the same on every call
  }
  // Any shape: all elements count.
  EXPECT_DOUBLE_EQ(ops::sum_of_squares(ctx, Tensor::full({2, 3}, 2.0f)), 24.0);
  // Into slots, read back together: the same bits, each in its slot, the others untouched.
  const Tensor a = random_tensor({100003}, rng, 3.0f), b = random_tensor({17}, rng, 1.0f);
  Tensor sums = Tensor::zeros({3}, DType::i64);
  ops::sum_of_squares_into(ctx, a, sums, 2);
  ops::sum_of_squares_into(ctx, b, sums, 0);
  const std::vector<double> got = ops::read_sums(ctx, sums);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2], ops::sum_of_squares(ctx, a));
  EXPECT_EQ(got[0], ops::sum_of_squares(ctx, b));
  EXPECT_EQ(got[1], 0.0);
}

TEST(Elementwise, BadArgumentsThrow) {
  const Context ctx;
  Tensor y = Tensor::zeros({4, 5}, DType::f32);
  EXPECT_THROW(ops::add_inplace(ctx, y, Tensor::zeros({5, 4}, DType::f32)), Error);
  EXPECT_THROW(ops::add_inplace(ctx, y, Tensor::zeros({4, 5}, DType::i32)), Error);
  EXPECT_THROW(ops::add_inplace(ctx, y, Tensor()), Error);
  EXPECT_THROW(ops::scale_inplace(ctx, Tensor::zeros({3}, DType::bf16), 2.0f), Error);
  EXPECT_THROW(ops::sum_of_squares(ctx, Tensor::zeros({3}, DType::i32)), Error);
  Tensor sums = Tensor::zeros({2}, DType::i64);
  EXPECT_THROW(ops::sum_of_squares_into(ctx, y, sums, 2), Error);  // no such slot
  EXPECT_THROW(ops::sum_of_squares_into(ctx, y, Tensor::zeros({2}, DType::f32), 0), Error);
  EXPECT_THROW(ops::read_sums(ctx, Tensor::zeros({2}, DType::f32)), Error);
}

}  // namespace
}  // namespace ulysses
