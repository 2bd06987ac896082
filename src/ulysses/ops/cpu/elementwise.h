// CPU fp32 kernels of the elementwise helpers (no argument validation: see ops/elementwise.h).
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// y: [n] += x: [n].
void add_inplace(float* y, const float* x, std::int64_t n);
// x: [n] *= factor.
void scale_inplace(float* x, float factor, std::int64_t n);
// Sum of x^2 over x: [n] in double: fixed-size chunks, each summed in order, then the chunk
// sums added in order (independent of the number of threads).
double sum_of_squares(const float* x, std::int64_t n);

}  // namespace ulysses::ops::cpu
