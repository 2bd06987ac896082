// CUDA head-chunk gather/scatter (the layout changes around the Ulysses all-to-alls) against
// the CPU op, f32 and bf16, split and replicated (overlapping) chunks. Copies and the
// accumulating scatter must match bit for bit (same f32 additions in chunk order, one rounding).
#include <gtest/gtest.h>

#include <cstring>

#include "cuda_test_util.h"
#include "ulysses/ops/head_chunks.h"

namespace ulysses::ops {
namespace {

using testing::gpu;

struct Layout {
  std::int64_t T, H, D, chunk;
  std::vector<std::int64_t> first_head;
};

std::vector<Layout> layouts() {
  return {
      {5, 8, 64, 2, {0, 2, 4, 6}},  // kv split over 4 ranks, head_dim 64 (16-byte units)
      {7, 2, 6, 1, {0, 0, 1, 1}},   // replicated over 4 ranks, odd head size (2-byte units)
      {3, 3, 4, 1, {0, 0}},         // overlapping chunks that do not cover heads 1 and 2
      {4, 4, 128, 4, {0}},          // one chunk
  };
}

// Bitwise equality of two tensors of the same dtype (on any devices).
void expect_same_bits(const Tensor& got, const Tensor& expected, const std::string& what) {
  const Tensor a = got.to(Device::cpu()), b = expected.to(Device::cpu());
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what << ": not bitwise equal";
  for (const float v : a.to_floats()) ASSERT_FALSE(std::isnan(v)) << what << ": NaN in output";
}

class CudaHeadChunks : public ::testing::TestWithParam<DType> {};

TEST_P(CudaHeadChunks, GatherEqualsCpu) {
  UL_REQUIRE_GPU();
  const DType dtype = GetParam();
  const Context cpu;
  Rng rng(5);
  for (const Layout& l : layouts()) {
    const auto P = static_cast<std::int64_t>(l.first_head.size());
    const Tensor x = testing::random_rounded({l.T, l.H, l.D}, rng, dtype).to(dtype);
    Tensor expected = Tensor::empty({P, l.T, l.chunk, l.D}, dtype);
    gather_head_chunks(cpu, x, l.first_head, l.chunk, expected);
    Tensor out = testing::gpu_poisoned({P, l.T, l.chunk, l.D}, dtype);
    gather_head_chunks(gpu(), x.to(Device::cuda(0)), l.first_head, l.chunk, out);
    expect_same_bits(out, expected, "gather T " + std::to_string(l.T) + " D " + std::to_string(l.D));
  }
}

TEST_P(CudaHeadChunks, ScatterEqualsCpu) {
  UL_REQUIRE_GPU();
  const DType dtype = GetParam();
  const Context cpu;
  Rng rng(6);
  for (const Layout& l : layouts()) {
    const auto P = static_cast<std::int64_t>(l.first_head.size());
    const Tensor chunks = testing::random_rounded({P, l.T, l.chunk, l.D}, rng, dtype).to(dtype);
    const bool covers_once = l.chunk * P == l.H && l.first_head.size() > 0 &&
                             l.first_head.back() == (P - 1) * l.chunk;
    if (!covers_once) continue;  // a plain scatter needs chunks that cover every head once
    Tensor expected = Tensor::empty({l.T, l.H, l.D}, dtype);
    scatter_head_chunks(cpu, chunks, l.first_head, l.chunk, expected, false);
    Tensor x = testing::gpu_poisoned({l.T, l.H, l.D}, dtype);
    scatter_head_chunks(gpu(), chunks.to(Device::cuda(0)), l.first_head, l.chunk, x, false);
    expect_same_bits(x, expected, "scatter D " + std::to_string(l.D));
  }
}

TEST_P(CudaHeadChunks, AccumulatingScatterSumsReplicasInChunkOrder) {
  UL_REQUIRE_GPU();
  const DType dtype = GetParam();
  const Context cpu;
  Rng rng(7);
  for (const Layout& l : layouts()) {
    const auto P = static_cast<std::int64_t>(l.first_head.size());
    // The CPU op accumulates in f32: give it the values the GPU sees, round its result once.
    const Tensor chunks = testing::random_rounded({P, l.T, l.chunk, l.D}, rng, dtype);
    const Tensor x0 = testing::random_rounded({l.T, l.H, l.D}, rng, dtype);
    Tensor expected = x0.clone();
    scatter_head_chunks(cpu, chunks, l.first_head, l.chunk, expected, true);
    Tensor x = x0.to(dtype).to(Device::cuda(0));
    scatter_head_chunks(gpu(), chunks.to(dtype).to(Device::cuda(0)), l.first_head, l.chunk, x,
                        true);
    expect_same_bits(x, expected.to(dtype), "accumulate T " + std::to_string(l.T) + " H " +
                                                std::to_string(l.H) + " D " + std::to_string(l.D));
  }
}

TEST(CudaHeadChunks, RejectsBadLayouts) {
  UL_REQUIRE_GPU();
  Tensor x = Tensor::zeros({2, 4, 8}, DType::bf16, Device::cuda(0));
  Tensor out = Tensor::empty({2, 2, 2, 8}, DType::bf16, Device::cuda(0));
  EXPECT_THROW(gather_head_chunks(gpu(), x, {0, 3}, 2, out), Error);  // heads [3, 5) of 4
  Tensor ints = Tensor::zeros({2, 4, 8}, DType::i32, Device::cuda(0));
  Tensor int_chunks = Tensor::zeros({2, 2, 2, 8}, DType::i32, Device::cuda(0));
  EXPECT_THROW(scatter_head_chunks(gpu(), int_chunks, {0, 2}, 2, ints, true), Error);
  Tensor host_out = Tensor::empty({2, 2, 2, 8}, DType::bf16);
  EXPECT_THROW(gather_head_chunks(gpu(), x, {0, 2}, 2, host_out), Error);  // wrong device
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaHeadChunks, ::testing::Values(DType::f32, DType::bf16),
                         testing::dtype_param_name);

}  // namespace
}  // namespace ulysses::ops
