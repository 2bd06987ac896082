#include "ulysses/ops/cpu/embedding.h"

#include <algorithm>

namespace ulysses::ops::cpu {

void embedding_forward(const std::int32_t* ids, const float* table, float* out, std::int64_t T,
                       std::int64_t C) {
#pragma omp parallel for
  for (std::int64_t t = 0; t < T; ++t) {
    const float* row = table + static_cast<std::int64_t>(ids[t]) * C;  // [C]
    float* out_t = out + t * C;                                        // [C]
    for (std::int64_t c = 0; c < C; ++c) out_t[c] = row[c];
  }
}

void embedding_backward(const std::int32_t* ids, const float* dout, float* dtable, std::int64_t T,
                        std::int64_t C) {
  // Columns are independent: each thread owns a block of columns and walks the tokens in order.
  constexpr std::int64_t kColumnBlock = 64;
  const std::int64_t num_blocks = (C + kColumnBlock - 1) / kColumnBlock;
#pragma omp parallel for
  for (std::int64_t block = 0; block < num_blocks; ++block) {
    const std::int64_t c_begin = block * kColumnBlock;
    const std::int64_t c_end = std::min(C, c_begin + kColumnBlock);
    for (std::int64_t t = 0; t < T; ++t) {
      const float* dout_t = dout + t * C;                            // [C]
      float* drow = dtable + static_cast<std::int64_t>(ids[t]) * C;  // [C]
      for (std::int64_t c = c_begin; c < c_end; ++c) drow[c] += dout_t[c];
    }
  }
}

}  // namespace ulysses::ops::cpu
