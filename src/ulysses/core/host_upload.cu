// CUDA build of core/host_upload.h: the page-locked staging ring of a context.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ulysses/core/cuda_context.h"
#include "ulysses/core/cuda_resources.h"
#include "ulysses/core/device_memory.h"
#include "ulysses/core/host_upload.h"

namespace ulysses {

struct UploadRing {
  struct Pending {
    std::size_t begin = 0, end = 0;  // the bytes of the ring the copy reads
    cudaEvent_t event = nullptr;     // recorded after the copy on the compute stream
  };
  int device_index = 0;
  char* base = nullptr;
  std::size_t capacity = 0;
  std::size_t head = 0;  // where the next upload starts
  std::vector<Pending> pending;
  std::vector<cudaEvent_t> idle_events;

  UploadRing() = default;
  UploadRing(const UploadRing&) = delete;
  UploadRing& operator=(const UploadRing&) = delete;
  // Errors are ignored: this may run while the process tears the CUDA runtime down.
  ~UploadRing() {
    cudaSetDevice(device_index);
    for (const Pending& p : pending) {
      cudaEventSynchronize(p.event);  // the copy still reads the ring
      cudaEventDestroy(p.event);
    }
    for (cudaEvent_t e : idle_events) cudaEventDestroy(e);
    if (base) cudaFreeHost(base);
  }
};

namespace {

constexpr std::size_t kInitialBytes = std::size_t{4} << 20;
constexpr std::size_t kAlign = 256;

// Retires the uploads whose copies have finished; waits for those still reading [begin, end).
void retire(UploadRing& ring, std::size_t begin, std::size_t end) {
  std::vector<UploadRing::Pending> still;
  for (const UploadRing::Pending& p : ring.pending) {
    cudaError_t status = cudaEventQuery(p.event);
    if (status == cudaErrorNotReady && p.begin < end && begin < p.end) {
      UL_CUDA_CHECK(cudaEventSynchronize(p.event));
      count_host_synchronization(ring.device_index);
      status = cudaSuccess;
    }
    if (status == cudaErrorNotReady) {
      still.push_back(p);
      continue;
    }
    UL_CUDA_CHECK(status);
    ring.idle_events.push_back(p.event);
  }
  ring.pending = std::move(still);
}

// A ring of at least `bytes`: the old one is dropped once every copy from it has finished.
void grow(const Context& ctx, UploadRing& ring, std::size_t bytes) {
  if (!ring.pending.empty()) synchronize(ctx);
  retire(ring, 0, 0);
  if (ring.base) UL_CUDA_CHECK(cudaFreeHost(ring.base));
  ring.base = nullptr;
  std::size_t capacity = std::max(kInitialBytes, ring.capacity);
  while (capacity < bytes) capacity *= 2;
  UL_CUDA_CHECK(
      cudaHostAlloc(reinterpret_cast<void**>(&ring.base), capacity, cudaHostAllocPortable));
  ring.capacity = capacity;
  ring.head = 0;
}

}  // namespace

Tensor upload_ints(const Context& ctx, std::span<const std::int32_t> values) {
  const auto n = static_cast<std::int64_t>(values.size());
  if (ctx.device.is_cpu())
    return Tensor::from_ints(std::vector<std::int32_t>(values.begin(), values.end()), {n});
  Tensor out = Tensor::empty({n}, DType::i32, ctx.device);
  const std::size_t bytes = values.size() * sizeof(std::int32_t);
  if (bytes == 0) return out;
  CudaResources& cuda = cuda_resources(ctx);
  std::lock_guard<std::mutex> lock(cuda.upload_mutex);
  if (!cuda.uploads) {
    cuda.uploads = std::make_shared<UploadRing>();
    cuda.uploads->device_index = cuda.device_index;
  }
  UploadRing& ring = *cuda.uploads;
  UL_CUDA_CHECK(cudaSetDevice(cuda.device_index));
  const std::size_t need = (bytes + kAlign - 1) / kAlign * kAlign;
  if (need > ring.capacity) grow(ctx, ring, need);
  if (ring.head + need > ring.capacity) ring.head = 0;
  const std::size_t begin = ring.head, end = begin + need;
  retire(ring, begin, end);
  std::memcpy(ring.base + begin, values.data(), bytes);
  UL_CUDA_CHECK(
      cudaMemcpyAsync(out.raw(), ring.base + begin, bytes, cudaMemcpyHostToDevice, cuda.stream));
  cudaEvent_t event = nullptr;
  if (!ring.idle_events.empty()) {
    event = ring.idle_events.back();
    ring.idle_events.pop_back();
  } else {
    UL_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  }
  UL_CUDA_CHECK(cudaEventRecord(event, cuda.stream));
  ring.pending.push_back({begin, end, event});
  ring.head = end;
  return out;
}

std::size_t upload_ring_bytes(const Context& ctx) {
  if (!ctx.device.is_cuda()) return 0;
  CudaResources& cuda = cuda_resources(ctx);
  std::lock_guard<std::mutex> lock(cuda.upload_mutex);
  return cuda.uploads ? cuda.uploads->capacity : 0;
}

}  // namespace ulysses
