// Caching device allocator and CUDA context.
#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "ulysses/core/copy_stream.h"
#include "ulysses/core/host_upload.h"
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
  const std::int64_t syncs = device_memory_stats(0).host_synchronizations;
  const Tensor back = host.to(Device::cuda(0)).to(Device::cpu());
  EXPECT_EQ(host.to_floats(), back.to_floats());
  // Both synchronous copies are counted as the host waiting for the device.
  EXPECT_EQ(device_memory_stats(0).host_synchronizations, syncs + 2);
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

namespace ulysses {
namespace {

std::vector<std::int32_t> ints_of(const Tensor& t) {
  const Tensor host = t.to(Device::cpu());
  return {host.data<std::int32_t>(), host.data<std::int32_t>() + host.numel()};
}

// upload_ints: every upload arrives, in stream order, though the ring wraps onto copies still
// queued behind slow work (the host then waits, and counts it) and grows for a request larger
// than itself; with the device idle, uploads that fit make the host wait for nothing.
TEST(CudaMemory, UploadsGoThroughTheStagingRingWithoutLosingOne) {
  UL_REQUIRE_GPU();
  const Context ctx = make_cuda_context(0);  // a context of its own: a fresh ring
  EXPECT_EQ(upload_ring_bytes(ctx), 0u);
  const Tensor big = Tensor::zeros({std::int64_t{1} << 28}, DType::f32, ctx.device);  // 1 GiB
  Tensor sums = Tensor::empty({256}, DType::i64, ctx.device);
  for (std::int64_t i = 0; i < 256; ++i) ops::sum_of_squares_into(ctx, big, sums, i);  // ~60 ms
  std::vector<Tensor> uploaded;
  std::vector<std::vector<std::int32_t>> values;
  for (std::int32_t u = 0; u < 40; ++u) {
    // 64 KiB to 512 KiB each, and one of 6 MiB (above the first 4 MiB ring).
    const std::size_t n =
        u == 20 ? (std::size_t{6} << 20) / 4 : (std::size_t{16} << 10) * (1 + u % 8);
    std::vector<std::int32_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = u * 1000003 + static_cast<std::int32_t>(i);
    uploaded.push_back(upload_ints(ctx, v));
    values.push_back(std::move(v));
  }
  EXPECT_GE(upload_ring_bytes(ctx), std::size_t{6} << 20);
  for (std::size_t u = 0; u < values.size(); ++u)
    EXPECT_EQ(ints_of(uploaded[u]), values[u]) << "upload " << u;
  EXPECT_TRUE(upload_ints(ctx, {}).numel() == 0);

  synchronize(ctx);
  const std::int64_t syncs = device_memory_stats(0).host_synchronizations;
  std::vector<Tensor> idle;
  const std::vector<std::int32_t> small(1000, 7);
  for (int u = 0; u < 64; ++u) idle.push_back(upload_ints(ctx, small));
  EXPECT_EQ(device_memory_stats(0).host_synchronizations, syncs);
  EXPECT_EQ(ints_of(idle.back()), small);
  // A CPU context gets a CPU tensor.
  const Tensor on_cpu = upload_ints(Context{}, small);
  EXPECT_TRUE(on_cpu.device().is_cpu());
  EXPECT_EQ(ints_of(on_cpu), small);
}

}  // namespace
}  // namespace ulysses
