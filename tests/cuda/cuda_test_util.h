// Helpers for the GPU tests: skip without a GPU, move tensors to the device in a dtype, compare
// a CUDA op against the CPU op on the same (bf16-rounded) inputs.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "test_util.h"
#include "ulysses/core/cuda_context.h"
#include "ulysses/core/device_memory.h"

namespace ulysses::testing {

// Skips the test (it passes) when no GPU is visible or the build has no CUDA backend.
#define UL_REQUIRE_GPU()                                                                    \
  do {                                                                                      \
    if (::ulysses::cuda_device_count() == 0)                                                \
      GTEST_SKIP() << "no CUDA device visible (or a build without CUDA): GPU test skipped"; \
  } while (0)

inline const Context& gpu() {
  static const Context ctx = make_cuda_context(0);
  return ctx;
}

// The f32 tensor with every value rounded to the nearest bf16 when dtype is bf16, so the CPU
// reference sees exactly what the GPU sees.
inline Tensor rounded(const Tensor& t, DType dtype) {
  return dtype == DType::bf16 ? t.to(DType::bf16).to(DType::f32) : t.clone();
}

// A copy of the f32 CPU tensor on the GPU in dtype.
inline Tensor on_gpu(const Tensor& t, DType dtype) {
  return (dtype == DType::f32 ? t : t.to(dtype)).to(Device::cuda(0));
}

// A GPU tensor of NaN.
inline Tensor gpu_poisoned(const Shape& shape, DType dtype) {
  return on_gpu(poisoned(shape), dtype);
}

// Random CPU f32 tensor already rounded to dtype.
inline Tensor random_rounded(const Shape& shape, Rng& rng, DType dtype, float scale = 1.0f) {
  return rounded(random_tensor(shape, rng, scale), dtype);
}

// Tolerance of ||gpu - cpu|| / ||cpu|| for outputs stored in dtype.
inline double tolerance(DType dtype) { return dtype == DType::bf16 ? 1e-2 : 1e-5; }

inline std::string dtype_param_name(const ::testing::TestParamInfo<DType>& info) {
  return dtype_name(info.param);
}

// A test parameterized by the compute dtype, with random inputs rounded to it. Seeds differ per
// dtype (and per suite: each passes its own pair) so the two runs see different data.
template <std::uint32_t kBf16Seed, std::uint32_t kF32Seed>
class DtypeParamTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dt() const { return GetParam(); }
  Tensor rnd(const Shape& shape, float scale = 1.0f) {
    return random_rounded(shape, rng_, dt(), scale);
  }
  Tensor rnd_f32(const Shape& shape, float scale = 1.0f) {
    return random_tensor(shape, rng_, scale);
  }
  Rng rng_{GetParam() == DType::bf16 ? kBf16Seed : kF32Seed};
};

}  // namespace ulysses::testing
