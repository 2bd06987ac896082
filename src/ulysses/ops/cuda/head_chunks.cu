#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/head_chunks.h"

namespace ulysses::ops::cuda {

namespace {

// First head of every chunk, passed by value (no host-to-device copy).
struct FirstHeads {
  int value[kMaxHeadChunks];
};

FirstHeads first_heads(const std::vector<std::int64_t>& first_head) {
  UL_CHECK(static_cast<std::int64_t>(first_head.size()) <= kMaxHeadChunks, "head chunks: ",
           first_head.size(), " chunks, the CUDA kernels take at most ", kMaxHeadChunks);
  FirstHeads f{};
  for (std::size_t j = 0; j < first_head.size(); ++j) f.value[j] = static_cast<int>(first_head[j]);
  return f;
}

// Moves rows of `row_units` units between the chunk-major layout [P, T, chunk, D] and the
// head-major layout [T, H, D]; a unit is U (2..16 bytes) and a head is `head_units` units.
// to_chunks: chunks[j, t, :] = x[t, first_head[j] * D : ...]; else the reverse.
template <typename U>
__global__ void move_head_chunks_kernel(const U* src, U* dst, FirstHeads first, std::int64_t P,
                                        std::int64_t T, std::int64_t H, std::int64_t head_units,
                                        std::int64_t row_units, bool to_chunks) {
  const std::int64_t total = P * T * row_units;
  for (std::int64_t n = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       n < total; n += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = n % row_units;
    const std::int64_t jt = n / row_units;  // j * T + t
    const std::int64_t t = jt % T, j = jt / T;
    const std::int64_t head_major = (t * H + first.value[j]) * head_units + i;
    if (to_chunks) {
      dst[n] = src[head_major];
    } else {
      dst[head_major] = src[n];
    }
  }
}

// x[t, h, d] += sum over chunks j containing h, in order j = 0..P-1, of chunks[j, t, h - f_j, d],
// in f32, rounded once. One thread per element of x: [T, H, D].
template <typename T_>
__global__ void accumulate_head_chunks_kernel(const T_* chunks, T_* x, FirstHeads first,
                                              std::int64_t P, std::int64_t T, std::int64_t H,
                                              std::int64_t D, std::int64_t heads_per_chunk) {
  const std::int64_t total = T * H * D;
  for (std::int64_t n = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       n < total; n += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t d = n % D;
    const std::int64_t h = (n / D) % H;
    const std::int64_t t = n / (D * H);
    float acc = to_float(x[n]);
    bool touched = false;
    for (std::int64_t j = 0; j < P; ++j) {
      const std::int64_t local = h - first.value[j];
      if (local < 0 || local >= heads_per_chunk) continue;
      acc += to_float(chunks[((j * T + t) * heads_per_chunk + local) * D + d]);
      touched = true;
    }
    if (touched) x[n] = from_float<T_>(acc);
  }
}

// The widest unit (16, 8, 4 or 2 bytes) that divides the head and row sizes and both bases.
int unit_bytes(std::size_t head_bytes, const void* a, const void* b) {
  for (int unit : {16, 8, 4, 2}) {
    if (head_bytes % unit == 0 && reinterpret_cast<std::uintptr_t>(a) % unit == 0 &&
        reinterpret_cast<std::uintptr_t>(b) % unit == 0)
      return unit;
  }
  return 1;
}

void move(const Context& ctx, const void* src, void* dst, DType dtype, std::int64_t P,
          std::int64_t T, std::int64_t H, std::int64_t D, std::int64_t heads_per_chunk,
          const FirstHeads& first, bool to_chunks) {
  const std::size_t head_bytes = static_cast<std::size_t>(D) * dtype_size(dtype);
  const int unit = unit_bytes(head_bytes, src, dst);
  const std::int64_t head_units = static_cast<std::int64_t>(head_bytes) / unit;
  const std::int64_t row_units = head_units * heads_per_chunk;
  const std::int64_t total = P * T * row_units;
  if (total == 0) return;
  constexpr int kThreads = 256;
  const unsigned blocks = blocks_for(total, kThreads);
  cudaStream_t stream = stream_of(ctx);
  auto launch = [&]<typename U>() {
    move_head_chunks_kernel<U><<<blocks, kThreads, 0, stream>>>(
        static_cast<const U*>(src), static_cast<U*>(dst), first, P, T, H, head_units, row_units,
        to_chunks);
  };
  switch (unit) {
    case 16: launch.template operator()<uint4>(); break;
    case 8: launch.template operator()<uint2>(); break;
    case 4: launch.template operator()<unsigned>(); break;
    case 2: launch.template operator()<unsigned short>(); break;
    default: launch.template operator()<unsigned char>(); break;
  }
  UL_CUDA_CHECK_LAUNCH();
}

}  // namespace

void gather_head_chunks(const Context& ctx, const Tensor& x,
                        const std::vector<std::int64_t>& first_head, std::int64_t heads_per_chunk,
                        Tensor out) {
  const std::int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  move(ctx, x.raw(), out.raw(), x.dtype(), static_cast<std::int64_t>(first_head.size()), T, H, D,
       heads_per_chunk, first_heads(first_head), /*to_chunks=*/true);
}

void scatter_head_chunks(const Context& ctx, const Tensor& chunks,
                         const std::vector<std::int64_t>& first_head, std::int64_t heads_per_chunk,
                         Tensor x, bool accumulate) {
  const std::int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  const auto P = static_cast<std::int64_t>(first_head.size());
  const FirstHeads first = first_heads(first_head);
  if (!accumulate) {
    move(ctx, chunks.raw(), x.raw(), x.dtype(), P, T, H, D, heads_per_chunk, first,
         /*to_chunks=*/false);
    return;
  }
  const std::int64_t total = T * H * D;
  if (total == 0) return;
  constexpr int kThreads = 256;
  dispatch_float_type(x.dtype(), "scatter_head_chunks (accumulate)", [&]<typename F>() {
    accumulate_head_chunks_kernel<F><<<blocks_for(total, kThreads), kThreads, 0, stream_of(ctx)>>>(
        ptr<F>(chunks), ptr<F>(x), first, P, T, H, D, heads_per_chunk);
  });
  UL_CUDA_CHECK_LAUNCH();
}

}  // namespace ulysses::ops::cuda
