// Host-only build of the device memory primitives (no CUDA compiler was found at configure time).
#ifndef ULYSSES_HAS_CUDA

#include "ulysses/core/device_memory.h"

namespace ulysses {

namespace {
[[noreturn]] void no_cuda(Device device) {
  UL_FAIL("tensor on ", device.str(),
          " requested, but this build has no CUDA support; configure with -DULYSSES_CUDA=on on a "
          "machine with nvcc, or run with --device cpu");
}
}  // namespace

void* device_alloc(std::size_t, Device device) { no_cuda(device); }
void device_free(void*, Device) noexcept {}
void device_copy(void*, Device dst_device, const void*, Device src_device, std::size_t) {
  no_cuda(dst_device.is_cpu() ? src_device : dst_device);
}
void device_memset_zero(void*, Device device, std::size_t) { no_cuda(device); }
void count_host_synchronization(int) {}
bool host_register(void*, std::size_t) { return false; }
void host_unregister(void*) noexcept {}
int cuda_device_count() { return 0; }
bool built_with_cuda() { return false; }

}  // namespace ulysses

#endif
