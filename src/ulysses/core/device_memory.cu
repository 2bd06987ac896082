// CUDA build of the device memory primitives, with a caching allocator.
//
// Sizes are rounded to size classes (device_size_class: multiples of 512 B up to 1 MiB, 8 classes
// per power of two up to 64 MiB, 2 MiB steps above); freed blocks go to a free list of their
// class and are handed out again to a request
// of the same class. cudaMalloc runs only on a miss; when it fails, the cached free blocks are
// released and the allocation retried once. A block freed on the host may be reused at once:
// every CUDA op runs on its context's compute stream, a blocking stream, and Tensor's copies and
// memsets run on the legacy default stream, which orders with it, so work queued after the free
// runs after the work that used the block. (Code that uses other non-blocking streams must
// synchronize before freeing, or make the compute stream wait for an event recorded after the
// last use on its stream before dropping the tensor, as the copy streams of
// core/copy_stream.h and parallel/activation_offload.h do.) The allocator state is never destroyed,
// so tensors that outlive main() free safely.
#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "ulysses/core/cuda_context.h"
#include "ulysses/core/cuda_resources.h"
#include "ulysses/core/device_memory.h"

namespace ulysses {

namespace {

constexpr int kMaxDevices = 64;

std::size_t size_class(std::size_t bytes) { return device_size_class(bytes); }

struct DeviceCache {
  std::mutex mutex;
  std::unordered_map<std::size_t, std::vector<void*>> free_blocks;  // size class -> blocks
  std::unordered_map<void*, std::size_t> block_bytes;               // every block we own
  DeviceMemoryStats stats;

  // Caller holds the mutex.
  void release_free_blocks() {
    for (auto& [bytes, blocks] : free_blocks) {
      for (void* ptr : blocks) {
        cudaFree(ptr);
        block_bytes.erase(ptr);
        stats.reserved -= bytes;
      }
    }
    free_blocks.clear();
  }
};

DeviceCache& device_cache(int device_index) {
  UL_CHECK(device_index >= 0 && device_index < kMaxDevices, "CUDA device index ", device_index,
           " out of range");
  static auto* caches = new DeviceCache[kMaxDevices];  // never destroyed (see above)
  return caches[device_index];
}

}  // namespace

void* device_alloc(std::size_t bytes, Device device) {
  DeviceCache& cache = device_cache(device.index);
  const std::size_t rounded = size_class(bytes);
  std::lock_guard<std::mutex> lock(cache.mutex);
  DeviceMemoryStats& stats = cache.stats;
  void* ptr = nullptr;
  auto it = cache.free_blocks.find(rounded);
  if (it != cache.free_blocks.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    ++stats.cache_hits;
  } else {
    UL_CUDA_CHECK(cudaSetDevice(device.index));
    cudaError_t status = cudaMalloc(&ptr, rounded);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state of the failed call
      cache.release_free_blocks();
      status = cudaMalloc(&ptr, rounded);
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      UL_FAIL("out of memory on ", device.str(), ": cudaMalloc of ", rounded, " bytes failed (",
              cudaGetErrorString(status), "); in use ", stats.in_use, " bytes, reserved ",
              stats.reserved, " bytes");
    }
    cache.block_bytes[ptr] = rounded;
    ++stats.device_allocations;
    stats.reserved += rounded;
    stats.peak_reserved = std::max(stats.peak_reserved, stats.reserved);
  }
  stats.in_use += rounded;
  stats.peak_in_use = std::max(stats.peak_in_use, stats.in_use);
  return ptr;
}

void device_free(void* ptr, Device device) noexcept {
  if (!ptr || device.index < 0 || device.index >= kMaxDevices) return;
  DeviceCache& cache = device_cache(device.index);
  std::lock_guard<std::mutex> lock(cache.mutex);
  const auto it = cache.block_bytes.find(ptr);
  if (it == cache.block_bytes.end()) return;  // not ours: ignore rather than corrupt the cache
  cache.free_blocks[it->second].push_back(ptr);
  cache.stats.in_use -= it->second;
}

void device_copy(void* dst, Device dst_device, const void* src, Device src_device,
                 std::size_t bytes) {
  const cudaMemcpyKind kind =
      dst_device.is_cpu()
          ? (src_device.is_cpu() ? cudaMemcpyHostToHost : cudaMemcpyDeviceToHost)
          : (src_device.is_cpu() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
  UL_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
  if (dst_device.is_cpu() != src_device.is_cpu())
    count_host_synchronization(dst_device.is_cpu() ? src_device.index : dst_device.index);
}

void count_host_synchronization(int device_index) {
  DeviceCache& cache = device_cache(device_index);
  std::lock_guard<std::mutex> lock(cache.mutex);
  ++cache.stats.host_synchronizations;
}

void device_memset_zero(void* ptr, Device device, std::size_t bytes) {
  UL_CUDA_CHECK(cudaSetDevice(device.index));
  UL_CUDA_CHECK(cudaMemset(ptr, 0, bytes));
}

bool host_register(void* ptr, std::size_t bytes) {
  if (cuda_device_count() == 0) return false;
  if (cudaHostRegister(ptr, bytes, cudaHostRegisterDefault) != cudaSuccess) {
    cudaGetLastError();  // clear the error: the memory stays pageable
    return false;
  }
  return true;
}

void host_unregister(void* ptr) noexcept {
  if (cudaHostUnregister(ptr) != cudaSuccess) cudaGetLastError();
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

bool built_with_cuda() { return true; }

std::size_t device_total_memory(int device_index) {
  UL_CUDA_CHECK(cudaSetDevice(device_index));
  std::size_t free_bytes = 0, total_bytes = 0;
  UL_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return total_bytes;
}

DeviceMemoryStats device_memory_stats(int device_index) {
  DeviceCache& cache = device_cache(device_index);
  std::lock_guard<std::mutex> lock(cache.mutex);
  return cache.stats;
}

void reset_peak_device_memory(int device_index) {
  DeviceCache& cache = device_cache(device_index);
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.stats.peak_in_use = cache.stats.in_use;
  cache.stats.peak_reserved = cache.stats.reserved;
}

void empty_device_cache(int device_index) {
  DeviceCache& cache = device_cache(device_index);
  std::lock_guard<std::mutex> lock(cache.mutex);
  cache.release_free_blocks();
}

}  // namespace ulysses
