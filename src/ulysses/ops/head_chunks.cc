#include "ulysses/ops/head_chunks.h"

#include <cstring>

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/head_chunks.h"
#endif

namespace ulysses::ops {

namespace {
void check_layout(const Context& ctx, const Tensor& x, const Tensor& chunks,
                  const std::vector<std::int64_t>& first_head, std::int64_t heads_per_chunk,
                  const char* op) {
  UL_CHECK(x.ndim() == 3, op, ": x must be [T, H, D], got ", shape_str(x.shape()));
  const std::int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  const auto P = static_cast<std::int64_t>(first_head.size());
  UL_CHECK(P >= 1 && heads_per_chunk >= 1, op, ": need at least one chunk of at least one head");
  for (const auto first : first_head)
    UL_CHECK(first >= 0 && first + heads_per_chunk <= H, op, ": chunk of heads [", first, ", ",
             first + heads_per_chunk, ") outside ", H, " heads");
  check_shape(chunks, {P, T, heads_per_chunk, D}, op);
  UL_CHECK(chunks.dtype() == x.dtype(), op, ": chunks and x differ in dtype");
  check_on_context_device(ctx, x, op);
  check_on_context_device(ctx, chunks, op);
  UL_CHECK(ctx.device.is_cpu() || ctx.device.is_cuda(), op, ": no kernel for device ",
           ctx.device.str());
}
}  // namespace

void gather_head_chunks(const Context& ctx, const Tensor& x,
                        const std::vector<std::int64_t>& first_head,
                        std::int64_t heads_per_chunk, Tensor out) {
  ProfileScope scope(ctx, "head_chunks");
  check_layout(ctx, x, out, first_head, heads_per_chunk, "gather_head_chunks");
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) return cuda::gather_head_chunks(ctx, x, first_head, heads_per_chunk, out);
#endif
  const std::int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  const std::size_t row = static_cast<std::size_t>(heads_per_chunk * D) * dtype_size(x.dtype());
  const std::size_t head_bytes = static_cast<std::size_t>(D) * dtype_size(x.dtype());
  const char* in = static_cast<const char*>(x.raw());
  char* o = static_cast<char*>(out.raw());
  for (std::size_t j = 0; j < first_head.size(); ++j) {
    // out[j]: [T, heads_per_chunk, D] <- x[:, first_head[j] : first_head[j] + heads_per_chunk, :]
    for (std::int64_t t = 0; t < T; ++t) {
      std::memcpy(o + (j * static_cast<std::size_t>(T) + static_cast<std::size_t>(t)) * row,
                  in + (static_cast<std::size_t>(t * H + first_head[j])) * head_bytes, row);
    }
  }
}

void scatter_head_chunks(const Context& ctx, const Tensor& chunks,
                         const std::vector<std::int64_t>& first_head,
                         std::int64_t heads_per_chunk, Tensor x, bool accumulate) {
  ProfileScope scope(ctx, "head_chunks");
  check_layout(ctx, x, chunks, first_head, heads_per_chunk, "scatter_head_chunks");
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) {
    if (accumulate)
      UL_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::bf16,
               "scatter_head_chunks (accumulate): x has dtype ", dtype_name(x.dtype()),
               ", expected f32 or bf16");
    return cuda::scatter_head_chunks(ctx, chunks, first_head, heads_per_chunk, x, accumulate);
  }
#endif
  const std::int64_t T = x.dim(0), H = x.dim(1), D = x.dim(2);
  const std::int64_t width = heads_per_chunk * D;
  if (!accumulate) {
    const std::size_t row = static_cast<std::size_t>(width) * dtype_size(x.dtype());
    const std::size_t head_bytes = static_cast<std::size_t>(D) * dtype_size(x.dtype());
    const char* in = static_cast<const char*>(chunks.raw());
    char* o = static_cast<char*>(x.raw());
    for (std::size_t j = 0; j < first_head.size(); ++j)
      for (std::int64_t t = 0; t < T; ++t)
        std::memcpy(o + static_cast<std::size_t>(t * H + first_head[j]) * head_bytes,
                    in + (j * static_cast<std::size_t>(T) + static_cast<std::size_t>(t)) * row,
                    row);
    return;
  }
  check_dtype(x, DType::f32, "scatter_head_chunks (accumulate): x");
  const float* in = chunks.data<float>();
  float* o = x.data<float>();
  for (std::size_t j = 0; j < first_head.size(); ++j) {
    for (std::int64_t t = 0; t < T; ++t) {
      const float* src = in + (static_cast<std::int64_t>(j) * T + t) * width;
      float* dst = o + (t * H + first_head[j]) * D;
      for (std::int64_t i = 0; i < width; ++i) dst[i] += src[i];
    }
  }
}

}  // namespace ulysses::ops
