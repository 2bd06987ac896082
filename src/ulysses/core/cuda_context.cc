// make_cpu_context for every build; host-only stand-ins for the CUDA context functions.
#include "ulysses/core/cuda_context.h"

namespace ulysses {

Context make_cpu_context() { return Context{}; }

#ifndef ULYSSES_HAS_CUDA
Context make_cuda_context(int) {
  UL_FAIL("a CUDA context was requested, but this build has no CUDA support; configure with "
          "-DULYSSES_CUDA=on on a machine with nvcc, or run with --device cpu");
}
void synchronize(const Context&) {}
DeviceMemoryStats device_memory_stats(int) { return {}; }
void reset_peak_device_memory(int) {}
void empty_device_cache(int) {}
#endif

}  // namespace ulysses
