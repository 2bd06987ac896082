// main() for tests under mpirun: starts MPI through the MPI communicator, lets only rank 0
// print GoogleTest's progress (every rank still runs every test and a failure on any rank fails
// the run, since mpirun returns the worst exit code), and gives tests the world communicator.
#include <gtest/gtest.h>

#include "dist_util.h"

namespace ulysses::testing {
comm::Communicator& world() {
  static std::unique_ptr<comm::Communicator> world = comm::make_mpi_world();
  return *world;
}
}  // namespace ulysses::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto& world = ulysses::testing::world();
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int result = RUN_ALL_TESTS();
  // Every rank must agree: a failure anywhere fails everywhere.
  ulysses::Tensor flag = ulysses::Tensor::from_ints({result != 0 ? 1 : 0}, {1});
  world.all_reduce(flag, ulysses::comm::ReduceOp::max);
  return flag.data<std::int32_t>()[0];
}
