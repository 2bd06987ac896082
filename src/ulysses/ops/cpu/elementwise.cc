#include "ulysses/ops/cpu/elementwise.h"

#include <algorithm>
#include <vector>

namespace ulysses::ops::cpu {

void add_inplace(float* y, const float* x, std::int64_t n) {
#pragma omp parallel for
  for (std::int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void scale_inplace(float* x, float factor, std::int64_t n) {
#pragma omp parallel for
  for (std::int64_t i = 0; i < n; ++i) x[i] *= factor;
}

double sum_of_squares(const float* x, std::int64_t n) {
  constexpr std::int64_t kChunk = 4096;
  const std::int64_t num_chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> chunk_sums(static_cast<std::size_t>(num_chunks));  // [num_chunks]
#pragma omp parallel for
  for (std::int64_t chunk = 0; chunk < num_chunks; ++chunk) {
    const std::int64_t end = std::min(n, (chunk + 1) * kChunk);
    double sum = 0;
    for (std::int64_t i = chunk * kChunk; i < end; ++i) sum += static_cast<double>(x[i]) * x[i];
    chunk_sums[static_cast<std::size_t>(chunk)] = sum;
  }
  double total = 0;
  for (const double sum : chunk_sums) total += sum;
  return total;
}

}  // namespace ulysses::ops::cpu
