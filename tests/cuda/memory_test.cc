// Caching device allocator and CUDA context.
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "ulysses/core/copy_stream.h"
#include "ulysses/ops/elementwise.h"

namespace ulysses {
namespace {

TEST(CudaMemory, FreedBlocksAreReusedAndCounted) {
  UL_REQUIRE_GPU();
  const Device device = Device::cuda(0);
  const DeviceMemoryStats before = device_memory_stats(0);
  std::size_t reserved_after_first = 0;
  {
    Tensor a = Tensor::empty({1000, 1000}, DType::f32, device);  // 4 MB
    const DeviceMemoryStats s = device_memory_stats(0);
    EXPECT_GE(s.in_use, before.in_use + 4000000);
    EXPECT_GE(s.peak_in_use, s.in_use);
    reserved_after_first = s.reserved;
  }
  const DeviceMemoryStats freed = device_memory_stats(0);
  EXPECT_EQ(freed.in_use, before.in_use);
  EXPECT_EQ(freed.reserved, reserved_after_first);  // kept in the cache
  {
    Tensor b = Tensor::empty({1000, 1000}, DType::f32, device);
    const DeviceMemoryStats s = device_memory_stats(0);
    EXPECT_EQ(s.cache_hits, freed.cache_hits + 1);
    EXPECT_EQ(s.device_allocations, freed.device_allocations);
    EXPECT_EQ(s.reserved, reserved_after_first);
  }
  empty_device_cache(0);
  EXPECT_LT(device_memory_stats(0).reserved, reserved_after_first);
}

TEST(CudaMemory, CopiesRoundTrip) {
  UL_REQUIRE_GPU();
  Rng rng(1);
  const Tensor host = testing::random_tensor({33, 7}, rng);
  const Tensor back = host.to(Device::cuda(0)).to(Device::cpu());
  EXPECT_EQ(host.to_floats(), back.to_floats());
  Tensor zeros = Tensor::zeros({5}, DType::bf16, Device::cuda(0));
  for (float v : zeros.to_floats()) EXPECT_EQ(v, 0.0f);
}

TEST(CudaContext, HasStreamAndComputeDtype) {
  UL_REQUIRE_GPU();
  const Context& ctx = testing::gpu();
  EXPECT_TRUE(ctx.device.is_cuda());
  EXPECT_EQ(ctx.compute_dtype, DType::bf16);
  ASSERT_TRUE(ctx.cuda);
  synchronize(ctx);
  EXPECT_THROW(make_cuda_context(cuda_device_count()), Error);
}

}  // namespace
}  // namespace ulysses

namespace ulysses {
namespace {

// Pinned host memory and the copy stream: zeros_pinned is page-locked (and zero) on a GPU
// machine; a round trip through the copy stream, ordered by marks only (compute stream waits,
// host waits), returns the same bits, with a device op on the compute stream in between
// (scale by 2 after the upload, before the download).
TEST(CudaMemory, PinnedCopiesOnTheCopyStreamAreOrderedByMarks) {
  UL_REQUIRE_GPU();
  const Context& ctx = testing::gpu();
  const std::int64_t n = (std::int64_t{1} << 22) + 3;  // 16 MiB and a tail
  Tensor pinned = Tensor::zeros_pinned({n}, DType::f32);
  ASSERT_TRUE(pinned.pinned());
  EXPECT_EQ(pinned.to_floats(), std::vector<float>(static_cast<std::size_t>(n), 0.0f));
  Rng rng(3);
  const Tensor values = testing::random_tensor({n}, rng);
  pinned.copy_from(values);
  CopyStream stream(ctx);
  ASSERT_TRUE(stream.asynchronous());
  Tensor device = Tensor::empty({n}, DType::f32, ctx.device);
  stream.wait_for_compute();
  stream.copy(device, pinned);
  stream.compute_waits(stream.record());
  ops::scale_inplace(ctx, device, 2.0f);  // compute stream, after the upload
  Tensor back = Tensor::zeros_pinned({n}, DType::f32);
  stream.wait_for_compute();  // after the scale
  stream.copy(back, device);
  CopyStream::host_waits(stream.record());
  std::vector<float> expected = values.to_floats();
  for (float& x : expected) x *= 2.0f;
  EXPECT_EQ(back.to_floats(), expected);
  // A CPU context's stream copies synchronously.
  CopyStream cpu{Context{}};
  EXPECT_FALSE(cpu.asynchronous());
  Tensor plain = Tensor::zeros({n}, DType::f32);
  cpu.copy(plain, values);
  EXPECT_EQ(plain.to_floats(), values.to_floats());
}

}  // namespace
}  // namespace ulysses
