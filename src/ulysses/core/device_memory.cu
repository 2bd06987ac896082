// CUDA build of the device memory primitives. Plain cudaMalloc for now; the caching allocator of
// the CUDA backend replaces it so no allocation happens inside a training step.
#include <cuda_runtime.h>

#include "ulysses/core/device_memory.h"

namespace ulysses {

namespace {
void check_cuda(cudaError_t status, const char* what) {
  UL_CHECK(status == cudaSuccess, what, " failed: ", cudaGetErrorString(status));
}
}  // namespace

void* device_alloc(std::size_t bytes, Device device) {
  check_cuda(cudaSetDevice(device.index), "cudaSetDevice");
  void* ptr = nullptr;
  check_cuda(cudaMalloc(&ptr, bytes), "cudaMalloc");
  return ptr;
}

void device_free(void* ptr, Device) noexcept { cudaFree(ptr); }

void device_copy(void* dst, Device dst_device, const void* src, Device src_device,
                 std::size_t bytes) {
  const cudaMemcpyKind kind =
      dst_device.is_cpu() ? (src_device.is_cpu() ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
                          : (src_device.is_cpu() ? cudaMemcpyHostToDevice
                                                 : cudaMemcpyDeviceToDevice);
  check_cuda(cudaMemcpy(dst, src, bytes, kind), "cudaMemcpy");
}

void device_memset_zero(void* ptr, Device device, std::size_t bytes) {
  check_cuda(cudaSetDevice(device.index), "cudaSetDevice");
  check_cuda(cudaMemset(ptr, 0, bytes), "cudaMemset");
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

bool built_with_cuda() { return true; }

}  // namespace ulysses
