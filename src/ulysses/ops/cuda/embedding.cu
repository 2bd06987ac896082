#include <algorithm>
#include <numeric>
#include <vector>

#include "ulysses/core/host_upload.h"
#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/embedding.h"

namespace ulysses::ops::cuda {

namespace {

// out[t] = table[ids[t]]; one block per token.
template <typename T>
__global__ void embedding_forward_kernel(const std::int32_t* ids, const T* table, T* out,
                                         std::int64_t C, bool vector) {
  const std::int64_t t = blockIdx.x;
  const T* src = table + static_cast<std::int64_t>(ids[t]) * C;
  T* dst = out + t * C;
  if (vector) {
    for (std::int64_t c = threadIdx.x * 8; c < C; c += blockDim.x * 8)
      *reinterpret_cast<Pack8<T>*>(dst + c) = *reinterpret_cast<const Pack8<T>*>(src + c);
  } else {
    for (std::int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
  }
}

// dtable[unique_ids[u]] += sum of dout rows at positions[offsets[u] .. offsets[u+1]).
template <typename T>
__global__ void embedding_backward_kernel(const std::int32_t* unique_ids,
                                          const std::int32_t* offsets,
                                          const std::int32_t* positions, const T* dout,
                                          float* dtable, std::int64_t C) {
  const std::int64_t u = blockIdx.x;
  const std::int32_t begin = offsets[u], end = offsets[u + 1];
  float* row = dtable + static_cast<std::int64_t>(unique_ids[u]) * C;
  for (std::int64_t c = static_cast<std::int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; c < C;
       c += static_cast<std::int64_t>(gridDim.y) * blockDim.x) {
    float sum = 0.0f;
    for (std::int32_t i = begin; i < end; ++i)
      sum += to_float(dout[static_cast<std::int64_t>(positions[i]) * C + c]);
    row[c] += sum;
  }
}

}  // namespace

void embedding_forward(const Context& ctx, const Tensor& ids, const Tensor& table, Tensor out) {
  const std::int64_t T = ids.numel(), C = table.dim(1);
  if (T == 0) return;
  dispatch_float_type(table.dtype(), "embedding_forward", [&]<typename E>() {
    const bool vector = C % 8 == 0 && aligned16(table.raw()) && aligned16(out.raw());
    embedding_forward_kernel<<<static_cast<unsigned>(T), 128, 0, stream_of(ctx)>>>(
        ptr<std::int32_t>(ids), ptr<E>(table), ptr<E>(out), C, vector);
    UL_CUDA_CHECK_LAUNCH();
  });
}

void embedding_backward(const Context& ctx, std::span<const std::int32_t> ids_host,
                        const Tensor& dout, Tensor dtable) {
  const auto T = static_cast<std::int64_t>(ids_host.size());
  const std::int64_t C = dtable.dim(1);
  if (T == 0) return;
  // Group positions by id (stable: positions stay in increasing order within an id).
  const std::int32_t* id = ids_host.data();
  std::vector<std::int32_t> positions(static_cast<std::size_t>(T));
  std::iota(positions.begin(), positions.end(), 0);
  std::stable_sort(positions.begin(), positions.end(),
                   [&](std::int32_t a, std::int32_t b) { return id[a] < id[b]; });
  std::vector<std::int32_t> unique_ids, offsets;
  for (std::int64_t i = 0; i < T; ++i) {
    if (i == 0 || id[positions[i]] != id[positions[i - 1]]) {
      unique_ids.push_back(id[positions[i]]);
      offsets.push_back(static_cast<std::int32_t>(i));
    }
  }
  offsets.push_back(static_cast<std::int32_t>(T));
  const auto U = static_cast<std::int64_t>(unique_ids.size());
  // One upload through the staging ring (no host wait): unique ids, offsets, positions.
  std::vector<std::int32_t> grouping = std::move(unique_ids);
  grouping.insert(grouping.end(), offsets.begin(), offsets.end());
  grouping.insert(grouping.end(), positions.begin(), positions.end());
  const Tensor grouping_dev = upload_ints(ctx, grouping);
  const Tensor unique_dev = grouping_dev.rows(0, U);
  const Tensor offsets_dev = grouping_dev.rows(U, 2 * U + 1);
  const Tensor positions_dev = grouping_dev.rows(2 * U + 1, 2 * U + 1 + T);
  dispatch_float_type(dout.dtype(), "embedding_backward", [&]<typename E>() {
    const dim3 grid(static_cast<unsigned>(U),
                    static_cast<unsigned>(std::min<std::int64_t>(8, (C + 255) / 256)));
    embedding_backward_kernel<<<grid, 256, 0, stream_of(ctx)>>>(
        ptr<std::int32_t>(unique_dev), ptr<std::int32_t>(offsets_dev),
        ptr<std::int32_t>(positions_dev), ptr<E>(dout), ptr<float>(dtable), C);
    UL_CUDA_CHECK_LAUNCH();
  });
}

}  // namespace ulysses::ops::cuda
