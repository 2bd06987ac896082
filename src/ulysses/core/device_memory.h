// Raw device memory primitives used by Tensor. With CUDA built in (ULYSSES_HAS_CUDA) they are
// implemented in device_memory.cu; otherwise every call fails with a message saying this build
// has no CUDA support. cuda_device_count() returns 0 in that case.
#pragma once

#include <cstddef>

#include "ulysses/core/tensor.h"

namespace ulysses {

// Bytes the caching allocator of a CUDA device reserves for a request of `bytes` (its size
// class: 512-byte steps up to 1 MiB, steps of an eighth of the power of two below up to 64 MiB,
// then 2 MiB steps, so the large model-state and activation buffers waste almost nothing), so
// the memory plan can count what allocations really take.
constexpr std::size_t device_size_class(std::size_t bytes) {
  constexpr std::size_t small_limit = std::size_t{1} << 20, large_limit = std::size_t{64} << 20;
  constexpr std::size_t large_step = std::size_t{2} << 20;
  if (bytes <= small_limit) return bytes <= 512 ? 512 : (bytes + 511) / 512 * 512;
  if (bytes > large_limit) return (bytes + large_step - 1) / large_step * large_step;
  std::size_t floor = 1;
  while (floor <= bytes / 2) floor *= 2;
  const std::size_t step = floor / 8;
  return (bytes + step - 1) / step * step;
}

void* device_alloc(std::size_t bytes, Device device);
void device_free(void* ptr, Device device) noexcept;
// Copies between any two devices (CPU included); synchronous (one with a host side is counted
// as a host synchronization of the device).
void device_copy(void* dst, Device dst_device, const void* src, Device src_device,
                 std::size_t bytes);
void device_memset_zero(void* ptr, Device device, std::size_t bytes);
// Adds one to DeviceMemoryStats::host_synchronizations of CUDA device `device_index` (every
// place the host waits for a device calls it; no-op without CUDA).
void count_host_synchronization(int device_index);
// Page-locks `bytes` of host memory at ptr for the GPU's copy engines (cudaHostRegister).
// Returns false, leaving the memory pageable, when it cannot (no CUDA in this build, no driver
// or GPU, or the lock limit). host_unregister undoes a successful host_register.
bool host_register(void* ptr, std::size_t bytes);
void host_unregister(void* ptr) noexcept;
int cuda_device_count();
bool built_with_cuda();

}  // namespace ulysses
