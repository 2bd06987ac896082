// make_cpu_context for every build; host-only stand-ins for the CUDA context functions.
#include "ulysses/core/cuda_context.h"

#include "ulysses/core/process_env.h"

namespace ulysses {

Context make_cpu_context() { return Context{}; }

LocalRank launcher_local_rank() {
  const process_env::Launcher launcher = process_env::launcher();
  LocalRank local;
  local.rank = launcher.local_rank >= 0 ? launcher.local_rank : 0;
  local.size = launcher.local_size >= 0 ? launcher.local_size : 0;
  return local;
}

int choose_cuda_device(LocalRank local, int devices, int world_size) {
  if (devices <= 0) UL_FAIL("--device cuda: no CUDA device is visible (use --device cpu)");
  if (world_size <= 1) return local.rank % devices;
  const int ranks_here = local.size > 0 ? local.size : local.rank + 1;
  if (ranks_here > devices || local.rank >= devices)
    UL_FAIL("--device cuda: ", local.size > 0 ? std::to_string(local.size) : std::string("at least ") +
            std::to_string(ranks_here), " ranks on this node but only ", devices,
            " GPU(s) visible; multi-GPU training needs one GPU per rank (NCCL cannot share a GPU "
            "between ranks): launch at most ", devices, " ranks per node (e.g. mpirun -np ",
            devices, ") or make more GPUs visible (CUDA_VISIBLE_DEVICES)");
  return local.rank;
}

#ifndef ULYSSES_HAS_CUDA
Context make_cuda_context(int) {
  UL_FAIL("a CUDA context was requested, but this build has no CUDA support; configure with "
          "-DULYSSES_CUDA=on on a machine with nvcc, or run with --device cpu");
}
void synchronize(const Context&) {}
DeviceMemoryStats device_memory_stats(int) { return {}; }
std::size_t device_total_memory(int) { return 0; }
void reset_peak_device_memory(int) {}
void empty_device_cache(int) {}
#endif

}  // namespace ulysses
