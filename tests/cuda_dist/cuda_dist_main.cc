// main() for the multi-GPU tests under mpirun (tests/cuda_dist/): one rank per GPU.
//
// Before any test, the ranks agree on whether every rank has a GPU of its own (a CUDA build, and
// at least as many visible GPUs as ranks on the node). If one does not, every rank exits 0 and
// rank 0 prints "cuda_dist: skipped ..." (ctest reports the test as skipped): no rank waits for
// another. Otherwise it runs like tests/dist/dist_main.cc: only rank 0 prints GoogleTest's
// progress and a failure on any rank fails every rank.
#include <gtest/gtest.h>

#include <cstdio>

#include "cuda_dist_util.h"
#include "ulysses/comm/nccl_communicator.h"
#include "ulysses/core/cuda_context.h"
#include "ulysses/core/device_memory.h"

namespace ulysses::testing {
namespace {
std::unique_ptr<comm::Communicator> g_world;
std::unique_ptr<Context> g_gpu;
std::unique_ptr<comm::Communicator> g_nccl;
}  // namespace

comm::Communicator& world() { return *g_world; }
const Context& gpu() { return *g_gpu; }
comm::Communicator& nccl_world() {
  if (!g_nccl) g_nccl = comm::make_nccl_world(*g_world, *g_gpu);
  return *g_nccl;
}
}  // namespace ulysses::testing

int main(int argc, char** argv) {
  using namespace ulysses;  // ulysses::testing is spelled out (gtest has ::testing)
  ::testing::InitGoogleTest(&argc, argv);
  ulysses::testing::g_world = comm::make_mpi_world();
  comm::Communicator& world = *ulysses::testing::g_world;

  // Every rank needs its own GPU: agree on it (max of "missing") before touching CUDA further.
  const int devices = cuda_device_count();
  const LocalRank local = launcher_local_rank();
  const int ranks_here = local.size > 0 ? local.size : local.rank + 1;
  const bool enough = built_with_cuda() && devices > 0 && ranks_here <= devices &&
                      local.rank < devices;
  Tensor missing = Tensor::from_ints({enough ? 0 : 1}, {1});
  world.all_reduce(missing, comm::ReduceOp::max);
  if (missing.data<std::int32_t>()[0] != 0) {
    if (world.rank() == 0)
      std::printf("cuda_dist: skipped: %d ranks need a GPU each, but %s (rank 0 sees %d GPU(s), "
                  "%d rank(s) on its node)\n",
                  world.size(),
                  built_with_cuda() ? "some rank has none of its own" : "this build has no CUDA",
                  devices, ranks_here);
    return 0;
  }
  ulysses::testing::g_gpu = std::make_unique<Context>(make_cuda_context(local.rank));

  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int result = RUN_ALL_TESTS();
  Tensor flag = Tensor::from_ints({result != 0 ? 1 : 0}, {1});
  world.all_reduce(flag, comm::ReduceOp::max);
  // Communicators and the context go before MPI is finalized and CUDA torn down.
  ulysses::testing::g_nccl.reset();
  ulysses::testing::g_gpu.reset();
  return flag.data<std::int32_t>()[0];
}
