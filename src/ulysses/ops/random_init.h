// Filling tensors for parameter initialization: counter-based normal draws
// (core/counter_rng.h: the same f32 values on CPU and GPU) and constants, on the context's
// device, into f32 or bf16 tensors (bf16: the f32 value rounded to nearest even).
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// out[i] = std * counter_rng::normal(key, first + i) for i < out.numel() (any shape, row-major).
void fill_normal(const Context& ctx, Tensor out, std::uint64_t key, std::int64_t first, float std);
// out[i] = value.
void fill_constant(const Context& ctx, Tensor out, float value);

}  // namespace ulysses::ops
