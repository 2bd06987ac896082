// Uploading small host arrays (index lists, groupings) to a context's device without making the
// host wait.
//
// A synchronous copy from pageable host memory waits for the device's queued work first (the
// CUDA runtime stages it), so an op that builds a list on the host and copies it up in the
// middle of a step stalls the queue. upload_ints instead copies the values into a page-locked
// staging ring owned by the context (CudaResources) and queues cudaMemcpyAsync from there on
// the compute stream: the copy is ordered with the kernels around it and the host goes on at
// once. Each upload records an event; a region of the ring is reused only after the event of
// every upload that used it has passed, so the host waits only when the ring wraps onto a copy
// still queued (counted in DeviceMemoryStats::host_synchronizations, as is growing the ring,
// which synchronizes once). The ring starts at 4 MiB and doubles when a request does not fit.
//
// On a CPU context the values are copied into a new CPU tensor. Thread-safe per context.
#pragma once

#include <cstdint>
#include <span>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses {

// A [n] i32 tensor on ctx.device holding `values`, ready for the ops queued after the call.
Tensor upload_ints(const Context& ctx, std::span<const std::int32_t> values);

// Capacity in bytes of the context's staging ring (0 before the first upload or on the CPU).
std::size_t upload_ring_bytes(const Context& ctx);

}  // namespace ulysses
