// Making contexts and reading device memory statistics. Usable in every build: without CUDA
// (ULYSSES_HAS_CUDA undefined) make_cuda_context throws an Error saying so and the memory
// statistics are zero.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ulysses/core/context.h"

namespace ulysses {

// CPU context: f32 compute, no CUDA resources.
Context make_cpu_context();

// CUDA context on one device: selects the device (cudaSetDevice), creates its compute stream
// (a blocking stream, so the synchronous copies and memsets of Tensor order with it), a
// cuBLASLt handle and a 64 MiB matmul workspace. compute_dtype is bf16.
// Every CUDA op of this context runs on its compute stream, asynchronously with the host, except
// where an op's header documents a host synchronization.
Context make_cuda_context(int device_index = 0);

// Where this process sits on its node, from the launcher's environment (Open MPI
// OMPI_COMM_WORLD_LOCAL_RANK/_LOCAL_SIZE, Slurm SLURM_LOCALID, torchrun-style
// LOCAL_RANK/LOCAL_WORLD_SIZE). size is 0 when the launcher does not say.
struct LocalRank {
  int rank = 0;
  int size = 0;
};
LocalRank launcher_local_rank();

// The GPU of this rank among `devices` visible ones. One rank (world_size 1): local.rank modulo
// devices. Several ranks: every rank needs its own GPU (NCCL cannot put two ranks of a
// communicator on one GPU), so local.rank is the device, and an Error explains how to launch
// when the node has more ranks than GPUs.
int choose_cuda_device(LocalRank local, int devices, int world_size);

// Waits for all work queued on the context's stream (no-op on CPU); counted in
// DeviceMemoryStats::host_synchronizations.
void synchronize(const Context& ctx);

// Caching device allocator statistics of one device, in bytes.
struct DeviceMemoryStats {
  std::size_t in_use = 0;               // handed out to live tensors (rounded sizes)
  std::size_t peak_in_use = 0;          // maximum of in_use since start or the last reset_peak
  std::size_t reserved = 0;             // obtained from cudaMalloc (in use + cached free blocks)
  std::size_t peak_reserved = 0;        // maximum of reserved
  std::int64_t device_allocations = 0;  // cudaMalloc calls (cache misses)
  std::int64_t cache_hits = 0;          // allocations served from the cache
  // Times the host waited for this device: synchronous copies between host and device memory
  // (Tensor::to, copy_from), synchronize(ctx), CopyStream::host_waits and the staging ring's
  // waits (core/host_upload.h). A warm training step's forward and backward make none
  // (tests/cuda/zero_test.cc asserts it); the step reads its loss and norm after them.
  std::int64_t host_synchronizations = 0;
};
DeviceMemoryStats device_memory_stats(int device_index = 0);
// The device's total memory in bytes (cudaMemGetInfo); 0 without CUDA.
std::size_t device_total_memory(int device_index = 0);
// Sets peak_in_use to in_use and peak_reserved to reserved.
void reset_peak_device_memory(int device_index = 0);
// Returns the cached free blocks to the driver (cudaFree); live tensors are untouched.
void empty_device_cache(int device_index = 0);

}  // namespace ulysses
