// Raw device memory primitives used by Tensor. With CUDA built in (ULYSSES_HAS_CUDA) they are
// implemented in device_memory.cu; otherwise every call fails with a message saying this build
// has no CUDA support. cuda_device_count() returns 0 in that case.
#pragma once

#include <cstddef>

#include "ulysses/core/tensor.h"

namespace ulysses {

void* device_alloc(std::size_t bytes, Device device);
void device_free(void* ptr, Device device) noexcept;
// Copies between any two devices (CPU included); synchronous.
void device_copy(void* dst, Device dst_device, const void* src, Device src_device,
                 std::size_t bytes);
void device_memset_zero(void* ptr, Device device, std::size_t bytes);
// Page-locks `bytes` of host memory at ptr for the GPU's copy engines (cudaHostRegister).
// Returns false, leaving the memory pageable, when it cannot (no CUDA in this build, no driver
// or GPU, or the lock limit). host_unregister undoes a successful host_register.
bool host_register(void* ptr, std::size_t bytes);
void host_unregister(void* ptr) noexcept;
int cuda_device_count();
bool built_with_cuda();

}  // namespace ulysses
