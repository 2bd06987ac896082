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
int cuda_device_count();
bool built_with_cuda();

}  // namespace ulysses
