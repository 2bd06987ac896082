// Counter-based initialization on the GPU: bit-identical to the CPU for the same seed and
// parameter (f32 and bf16), whole buffers and ranges.
#include "ulysses/ops/random_init.h"

#include <gtest/gtest.h>

#include "cuda_test_util.h"
#include "ulysses/core/counter_rng.h"
#include "ulysses/model/config.h"
#include "ulysses/model/params.h"

namespace ulysses {
namespace {

TEST(CudaRandomInit, FillNormalIsBitIdenticalToTheCpu) {
  UL_REQUIRE_GPU();
  const std::uint64_t key = counter_rng::key(5, 123);
  for (const std::int64_t first : {std::int64_t{0}, std::int64_t{3} << 31}) {
    const std::int64_t n = 1 << 20;
    Tensor cpu = Tensor::empty({n}, DType::f32);
    ops::fill_normal(Context{}, cpu, key, first, 0.02f);
    Tensor gpu = testing::gpu_poisoned({n}, DType::f32);
    ops::fill_normal(testing::gpu(), gpu, key, first, 0.02f);
    const auto a = cpu.to_floats(), b = gpu.to_floats();
    std::int64_t differ = 0;
    for (std::int64_t i = 0; i < n; ++i) differ += a[i] != b[i];
    EXPECT_EQ(differ, 0) << "first " << first;
    Tensor gpu16 = testing::gpu_poisoned({n}, DType::bf16);
    ops::fill_normal(testing::gpu(), gpu16, key, first, 0.02f);
    EXPECT_EQ(gpu16.to_floats(), cpu.to(DType::bf16).to_floats());
  }
}

TEST(CudaRandomInit, InitWeightsOnTheDeviceEqualsTheCpu) {
  UL_REQUIRE_GPU();
  model::ModelConfig c = model::preset_config("tiny");
  model::ParamBuffers host(c);
  model::init_weights(host, 21, 0.05f);
  model::ParamBuffers device(c, Device::cuda(0));
  model::init_weights(device, 21, 0.05f);  // through a temporary context
  model::ParamBuffers device16(c, Device::cuda(0), DType::bf16);
  model::init_weights(testing::gpu(), device16, 21, 0.05f);
  for (std::size_t g = 0; g < host.flat().size(); ++g) {
    EXPECT_EQ(device.flat()[g].to_floats(), host.flat()[g].to_floats()) << g;
    EXPECT_EQ(device16.flat()[g].to_floats(), host.flat()[g].to(DType::bf16).to_floats()) << g;
  }
  // A shard-sized range of layer 0, drawn alone on the device.
  const model::ParamGroup& group = host.layout().groups()[1];
  const std::int64_t lo = group.numel / 3, hi = group.numel + 5;
  Tensor shard = testing::gpu_poisoned({hi - lo}, DType::f32);
  model::init_group_range(testing::gpu(), group, shard, lo, 21, 0.05f);
  const auto got = shard.to_floats(), want = host.flat()[1].to_floats();
  for (std::int64_t i = lo; i < hi; ++i)
    ASSERT_EQ(got[i - lo], i < group.numel ? want[i] : 0.0f) << i;
}

}  // namespace
}  // namespace ulysses
