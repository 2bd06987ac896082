// Which GPU a rank takes (core/cuda_context.h): pure logic, tested without a GPU.
#include <gtest/gtest.h>

#include "ulysses/core/cuda_context.h"

namespace ulysses {
namespace {

TEST(DeviceChoice, OneRankTakesItsLocalRankModuloDevices) {
  EXPECT_EQ(choose_cuda_device({0, 0}, 1, 1), 0);
  EXPECT_EQ(choose_cuda_device({3, 4}, 2, 1), 1);
}

TEST(DeviceChoice, SeveralRanksTakeOneGpuEach) {
  EXPECT_EQ(choose_cuda_device({0, 2}, 2, 2), 0);
  EXPECT_EQ(choose_cuda_device({1, 2}, 8, 2), 1);
  EXPECT_EQ(choose_cuda_device({1, 0}, 2, 4), 1);  // local size unknown
}

TEST(DeviceChoice, MoreRanksOnANodeThanGpusIsAClearError) {
  try {
    choose_cuda_device({0, 4}, 2, 4);  // rank 0 fails too: every rank of the node agrees
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("4 ranks on this node but only 2 GPU(s) visible"), std::string::npos)
        << message;
    EXPECT_NE(message.find("one GPU per rank"), std::string::npos) << message;
  }
  EXPECT_THROW(choose_cuda_device({2, 0}, 2, 4), Error);  // local size unknown, rank 2 of 2 GPUs
  EXPECT_THROW(choose_cuda_device({0, 2}, 0, 2), Error);  // no GPU at all
}

}  // namespace
}  // namespace ulysses
