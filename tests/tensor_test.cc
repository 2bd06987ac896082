#include "ulysses/core/tensor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ulysses/core/cuda_context.h"
#include "ulysses/core/device_memory.h"
#include "ulysses/core/rng.h"

namespace ulysses {
namespace {

TEST(Tensor, RowsShareStorage) {
  Tensor t = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor r = t.rows(1, 3);
  EXPECT_EQ(r.shape(), (Shape{2, 2}));
  EXPECT_EQ(r.data<float>()[0], 3.0f);
  r.data<float>()[0] = 30.0f;
  EXPECT_EQ(t.data<float>()[2], 30.0f);
}

TEST(Tensor, ViewChecksElementCount) {
  Tensor t = Tensor::zeros({4, 6}, DType::f32);
  EXPECT_EQ(t.view({2, 12}).dim(-1), 12);
  EXPECT_THROW(t.view({5, 5}), Error);
}

TEST(Tensor, WrongTypeAccessThrows) {
  Tensor t = Tensor::zeros({2}, DType::i32);
  EXPECT_THROW(t.data<float>(), Error);
}

TEST(Tensor, Bf16RoundTripIsNearestEven) {
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f)), 1.0f);
  // 1 + 2^-8 lies exactly between two bf16 values; ties go to the even mantissa (1.0).
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 0x1.0p-8f)), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 0x1.8p-8f)), 1.0f + 0x1.0p-7f);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))));
  Tensor t = Tensor::from_floats({0.1f, -3.5f, 1e30f}, {3});
  Tensor back = t.to(DType::bf16).to(DType::f32);
  for (int i = 0; i < 3; ++i)
    EXPECT_NEAR(back.data<float>()[i], t.data<float>()[i], std::fabs(t.data<float>()[i]) / 128);
}

TEST(Tensor, LargeHostCopyAndZeroCoverEveryChunk) {
  // 80 MiB + 12 bytes: above the size copied and zeroed in parallel chunks, with a partial
  // last chunk.
  const std::int64_t n = (std::int64_t{80} << 18) + 3;
  Tensor a = Tensor::empty({n}, DType::f32);
  for (std::int64_t i = 0; i < n; ++i) a.data<float>()[i] = static_cast<float>(i % 1009) + 1.0f;
  Tensor b = Tensor::full({n}, -1.0f);
  b.copy_from(a);
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  b.zero_();
  std::int64_t nonzero = 0;
  for (std::int64_t i = 0; i < n; ++i) nonzero += b.data<float>()[i] != 0.0f;
  EXPECT_EQ(nonzero, 0);
}

TEST(Rng, DerivedStreamsAreReproducibleAndDistinct) {
  Rng a = Rng::derive(7, {1, 2});
  Rng b = Rng::derive(7, {1, 2});
  Rng c = Rng::derive(7, {2, 1});
  const auto x = a.next_u64();
  EXPECT_EQ(x, b.next_u64());
  EXPECT_NE(x, c.next_u64());
  Rng r(3);
  for (int i = 0; i < 1000; ++i) {
    const float u = r.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    ASSERT_LT(r.below(10), 10u);
  }
}

}  // namespace
}  // namespace ulysses

namespace ulysses {
namespace {

// zeros_pinned: zeroed host memory of any size (huge-page aligned from 2 MiB up), page-locked
// only where a GPU can register it (never without one), usable like any host tensor.
TEST(Tensor, ZerosPinnedIsZeroedHostMemory) {
  for (const std::int64_t n : {std::int64_t{0}, std::int64_t{5}, std::int64_t{3} << 20}) {
    Tensor t = Tensor::zeros_pinned({n}, DType::f32);
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_EQ(t.numel(), n);
    if (cuda_device_count() == 0) {
      EXPECT_FALSE(t.pinned());
    }
    const std::vector<float> v = t.to_floats();
    EXPECT_EQ(std::count(v.begin(), v.end(), 0.0f), n);
    if (n > 0) {
      t.data<float>()[n - 1] = 3.0f;
      EXPECT_EQ(t.clone().to_floats().back(), 3.0f);
    }
  }
  EXPECT_EQ(Tensor::zeros_pinned({2, 3}, DType::bf16).shape(), (Shape{2, 3}));
}

}  // namespace
}  // namespace ulysses
