// CUDA events for core/op_profiler.cc (defined in op_profiler.cu; CUDA builds only).
#pragma once

#include "ulysses/core/context.h"

namespace ulysses::profiler_events {

void* create();                                // cudaEventCreate (timing enabled)
void destroy(void* event);                     // cudaEventDestroy
void record(const Context& ctx, void* event);  // on the context's compute stream
void synchronize(void* event);                 // cudaEventSynchronize
float elapsed_ms(void* start, void* end);      // cudaEventElapsedTime

}  // namespace ulysses::profiler_events
