// Deterministic column sums over rows (no float atomics): per-block partial sums over fixed
// chunks of rows, then a fixed-order sum of the partials. Used for weight and bias gradients.
#pragma once

#include <algorithm>

#include "ulysses/core/tensor.h"
#include "ulysses/ops/cuda/common.cuh"

namespace ulysses::ops::cuda {

// partial[p, c] = sum over rows r in chunk p of value(r, c).
template <typename Value>
__global__ void column_partials_kernel(Value value, std::int64_t rows, std::int64_t cols,
                                       std::int64_t chunk, float* partial) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t p = blockIdx.y;
  if (c >= cols) return;
  const std::int64_t begin = p * chunk, end = begin + chunk < rows ? begin + chunk : rows;
  float sum = 0.0f;
  for (std::int64_t r = begin; r < end; ++r) sum += value(r, c);
  partial[p * cols + c] = sum;
}

// out[c] += sum over p of partial[p, c], in order of p.
__global__ inline void column_finish_kernel(const float* partial, std::int64_t parts,
                                            std::int64_t cols, float* out) {
  const std::int64_t c = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  float sum = 0.0f;
  for (std::int64_t p = 0; p < parts; ++p) sum += partial[p * cols + c];
  out[c] += sum;
}

// out: [cols] f32 += sum over rows of value(r, c). The split into chunks depends only on the
// shape, so the result is the same on every run.
template <typename Value>
void column_sum_accumulate(const Context& ctx, Value value, std::int64_t rows, std::int64_t cols,
                           float* out) {
  if (rows == 0 || cols == 0) return;
  // Enough row chunks that narrow outputs (q/k norm weights: 128 columns over millions of rows)
  // still fill the GPU: about 256K threads in all, at least 512 chunks.
  // (At most 65535: the chunks are the grid's y dimension.)
  const std::int64_t target_parts =
      std::min<std::int64_t>(65535, std::max<std::int64_t>(512, (std::int64_t{1} << 18) / cols));
  const std::int64_t chunk = std::max<std::int64_t>(32, (rows + target_parts - 1) / target_parts);
  const std::int64_t parts = (rows + chunk - 1) / chunk;
  Tensor partial = Tensor::empty({parts, cols}, DType::f32, ctx.device);
  const int threads = static_cast<int>(std::min<std::int64_t>(256, (cols + 31) / 32 * 32));
  const dim3 grid(static_cast<unsigned>((cols + threads - 1) / threads),
                  static_cast<unsigned>(parts));
  const cudaStream_t stream = stream_of(ctx);
  column_partials_kernel<<<grid, threads, 0, stream>>>(value, rows, cols, chunk,
                                                        ptr<float>(partial));
  UL_CUDA_CHECK_LAUNCH();
  column_finish_kernel<<<static_cast<unsigned>((cols + 255) / 256), 256, 0, stream>>>(
      ptr<float>(partial), parts, cols, out);
  UL_CUDA_CHECK_LAUNCH();
}

}  // namespace ulysses::ops::cuda
