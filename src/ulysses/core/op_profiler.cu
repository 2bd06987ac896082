#include "ulysses/core/cuda_resources.h"
#include "ulysses/core/profiler_events.h"

namespace ulysses::profiler_events {

void* create() {
  cudaEvent_t event = nullptr;
  UL_CUDA_CHECK(cudaEventCreate(&event));
  return event;
}

void destroy(void* event) { cudaEventDestroy(static_cast<cudaEvent_t>(event)); }

void record(const Context& ctx, void* event) {
  UL_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), cuda_resources(ctx).stream));
}

void synchronize(void* event) {
  UL_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event)));
}

float elapsed_ms(void* start, void* end) {
  float ms = 0;
  UL_CUDA_CHECK(
      cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(end)));
  return ms;
}

}  // namespace ulysses::profiler_events
