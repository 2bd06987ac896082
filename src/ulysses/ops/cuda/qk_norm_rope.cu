#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/qk_norm_rope.h"
#include "ulysses/ops/cuda/reduce.cuh"

namespace ulysses::ops::cuda {

namespace {

constexpr int kThreads = 256;

// Sum over the G lanes (a power of two <= 32, aligned in the warp) of one row's group.
__device__ __forceinline__ float group_sum(float v, int G) {
  for (int offset = G / 2; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Eight (or one, scalar) rotation pairs (i, i + half) of one row.
template <typename T, int kWidth>
struct Pairs {
  float a[kWidth], b[kWidth];
};

template <typename T, int kWidth>
__device__ __forceinline__ void load_pairs(const T* row, std::int64_t i, std::int64_t half,
                                           Pairs<T, kWidth>& p) {
  if constexpr (kWidth == 8) {
    load8(row + i, p.a);
    load8(row + i + half, p.b);
  } else {
    p.a[0] = to_float(row[i]);
    p.b[0] = to_float(row[i + half]);
  }
}
template <typename T, int kWidth>
__device__ __forceinline__ void store_pairs(T* row, std::int64_t i, std::int64_t half,
                                            const Pairs<T, kWidth>& p) {
  if constexpr (kWidth == 8) {
    store8(row + i, p.a);
    store8(row + i + half, p.b);
  } else {
    row[i] = from_float<T>(p.a[0]);
    row[i + half] = from_float<T>(p.b[0]);
  }
}
template <int kWidth>
__device__ __forceinline__ void load_table(const float* t, std::int64_t i, float (&out)[kWidth]) {
  if constexpr (kWidth == 8) {
    load8(t + i, out);
  } else {
    out[0] = t[i];
  }
}

// G threads per row (T * H rows of D = 2 * half); each handles kWidth pairs at a time, i from
// sub * kWidth in steps of G * kWidth. Every lane of a warp takes part in the group sums (rows
// past the end compute on row 0 and store nothing). out may be x: every thread reads its pairs
// before writing them.
template <typename T, int kWidth, bool kNorm>
__global__ void forward_kernel(const float* cos, const float* sin, const T* x, const T* weight,
                               float eps, T* out, float* rstd, std::int64_t rows, std::int64_t H,
                               std::int64_t half, int G) {
  const int sub = threadIdx.x % G;
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / G) + threadIdx.x / G;
  const bool valid = row < rows;
  const std::int64_t r = valid ? row : 0;
  const T* x_row = x + r * 2 * half;
  const std::int64_t table_row = (r / H) * half;
  float rs = 1.0f;
  if constexpr (kNorm) {
    float sum = 0.0f;
    for (std::int64_t i = sub * kWidth; i < half; i += G * kWidth) {
      Pairs<T, kWidth> p;
      load_pairs(x_row, i, half, p);
#pragma unroll
      for (int j = 0; j < kWidth; ++j) sum += p.a[j] * p.a[j] + p.b[j] * p.b[j];
    }
    sum = group_sum(sum, G);
    rs = rsqrtf(sum / static_cast<float>(2 * half) + eps);
  }
  if (!valid) return;
  T* out_row = out + r * 2 * half;
  for (std::int64_t i = sub * kWidth; i < half; i += G * kWidth) {
    Pairs<T, kWidth> p, w;
    load_pairs(x_row, i, half, p);
    float c[kWidth], s[kWidth];
    load_table<kWidth>(cos + table_row, i, c);
    load_table<kWidth>(sin + table_row, i, s);
    if constexpr (kNorm) {
      load_pairs(weight, i, half, w);
#pragma unroll
      for (int j = 0; j < kWidth; ++j) {  // the normalized value as the separate op stores it
        p.a[j] = to_float(from_float<T>(p.a[j] * rs * w.a[j]));
        p.b[j] = to_float(from_float<T>(p.b[j] * rs * w.b[j]));
      }
    }
#pragma unroll
    for (int j = 0; j < kWidth; ++j) {
      const float first = p.a[j], second = p.b[j];
      p.a[j] = first * c[j] - second * s[j];
      p.b[j] = second * c[j] + first * s[j];
    }
    store_pairs(out_row, i, half, p);
  }
  if (kNorm && sub == 0) rstd[r] = rs;
}

// dn = R^T dout; with the norm dx = rs * w * dn - x * rs^3 * mean(x * w * dn), else dx = dn.
// With the norm and `partial`, the block also writes its rows' share of the weight gradient,
// partial[block, c] = sum over its rows of dn * x * rs (summed in row order through shared
// memory: [rows per block, 2 * half] floats), so no second pass over x and dout is needed.
template <typename T, int kWidth, bool kNorm>
__global__ void backward_kernel(const float* cos, const float* sin, const T* x, const T* weight,
                                const float* rstd, const T* dout, T* dx, std::int64_t rows,
                                std::int64_t H, std::int64_t half, int G, float* partial) {
  extern __shared__ float weight_terms[];
  const int sub = threadIdx.x % G, local = threadIdx.x / G;
  const std::int64_t D = 2 * half;
  const std::int64_t row =
      static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / G) + threadIdx.x / G;
  const bool valid = row < rows;
  const std::int64_t r = valid ? row : 0;
  const std::int64_t base = r * 2 * half, table_row = (r / H) * half;
  const auto rotated = [&](std::int64_t i, Pairs<T, kWidth>& d) {
    load_pairs(dout + base, i, half, d);
    float c[kWidth], s[kWidth];
    load_table<kWidth>(cos + table_row, i, c);
    load_table<kWidth>(sin + table_row, i, s);
#pragma unroll
    for (int j = 0; j < kWidth; ++j) {
      const float first = d.a[j], second = d.b[j];
      d.a[j] = first * c[j] + second * s[j];
      d.b[j] = second * c[j] - first * s[j];
    }
  };
  float coefficient = 0.0f, rs = 1.0f;
  if constexpr (kNorm) {
    float dot = 0.0f;
    for (std::int64_t i = sub * kWidth; i < half; i += G * kWidth) {
      Pairs<T, kWidth> d, p, w;
      rotated(i, d);
      load_pairs(x + base, i, half, p);
      load_pairs(weight, i, half, w);
#pragma unroll
      for (int j = 0; j < kWidth; ++j) dot += p.a[j] * w.a[j] * d.a[j] + p.b[j] * w.b[j] * d.b[j];
    }
    dot = group_sum(dot, G);
    rs = rstd[r];
    coefficient = rs * rs * rs * dot / static_cast<float>(2 * half);
  }
  if (!valid && !(kNorm && partial)) return;
  for (std::int64_t i = sub * kWidth; i < half; i += G * kWidth) {
    Pairs<T, kWidth> d;
    rotated(i, d);
    if constexpr (kNorm) {
      Pairs<T, kWidth> p, w;
      load_pairs(x + base, i, half, p);
      load_pairs(weight, i, half, w);
      if (partial) {
        float* terms = weight_terms + local * D;
#pragma unroll
        for (int j = 0; j < kWidth; ++j) {
          terms[i + j] = valid ? d.a[j] * p.a[j] * rs : 0.0f;
          terms[half + i + j] = valid ? d.b[j] * p.b[j] * rs : 0.0f;
        }
      }
#pragma unroll
      for (int j = 0; j < kWidth; ++j) {
        d.a[j] = rs * w.a[j] * d.a[j] - p.a[j] * coefficient;
        d.b[j] = rs * w.b[j] * d.b[j] - p.b[j] * coefficient;
      }
    }
    if (valid) store_pairs(dx + base, i, half, d);
  }
  if constexpr (kNorm) {
    if (!partial) return;
    __syncthreads();
    const int rows_in_block = blockDim.x / G;
    for (std::int64_t c = threadIdx.x; c < D; c += blockDim.x) {
      float sum = 0.0f;
      for (int q = 0; q < rows_in_block; ++q) sum += weight_terms[q * D + c];
      partial[blockIdx.x * D + c] = sum;
    }
  }
}

// value(r, c) = partial[r, c]: the blocks' weight-gradient shares, summed by column.
struct PartialValue {
  const float* partial;
  std::int64_t cols;
  __device__ float operator()(std::int64_t r, std::int64_t c) const {
    return partial[r * cols + c];
  }
};

// value(r, c) = (R^T dout)[r, c] * x[r, c] * rstd[r] for the weight gradient.
template <typename T>
struct WeightGradValue {
  const float* cos;
  const float* sin;
  const T* x;
  const T* dout;
  const float* rstd;
  std::int64_t H, half;
  __device__ float operator()(std::int64_t r, std::int64_t c) const {
    const std::int64_t D = 2 * half, t = r / H;
    const std::int64_t i = c < half ? c : c - half;
    const float cs = cos[t * half + i], sn = sin[t * half + i];
    const float first = to_float(dout[r * D + i]), second = to_float(dout[r * D + i + half]);
    const float dn = c < half ? first * cs + second * sn : second * cs - first * sn;
    return dn * to_float(x[r * D + c]) * rstd[r];
  }
};

// Threads per row: enough for the row's packs (or pairs), a power of two up to 32.
int group_size(std::int64_t units) {
  int g = 1;
  while (g < 32 && g < units) g *= 2;
  return g;
}

template <typename Launch>
void dispatch_shape(DType dtype, std::int64_t half, bool aligned, const char* what, Launch&& f) {
  dispatch_float_type(dtype, what, [&]<typename T>() {
    if (half % 8 == 0 && aligned)
      f.template operator()<T, 8>(group_size(half / 8));
    else
      f.template operator()<T, 1>(group_size(half));
  });
}

}  // namespace

void qk_norm_rope_forward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& x,
                          const Tensor& weight, float eps, Tensor out, Tensor rstd) {
  const std::int64_t H = x.dim(1), half = x.dim(2) / 2, rows = x.dim(0) * H;
  if (rows == 0) return;
  const bool norm = weight.defined();
  const bool aligned = aligned16(x.raw()) && aligned16(out.raw()) && aligned16(cos.raw()) &&
                       aligned16(sin.raw()) && (!norm || aligned16(weight.raw()));
  dispatch_shape(x.dtype(), half, aligned, "qk_norm_rope_forward", [&]<typename T, int W>(int G) {
    const std::int64_t rows_per_block = kThreads / G;
    const auto blocks = static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
    const auto kernel = norm ? forward_kernel<T, W, true> : forward_kernel<T, W, false>;
    kernel<<<blocks, kThreads, 0, stream_of(ctx)>>>(
        ptr<float>(cos), ptr<float>(sin), ptr<T>(x), norm ? ptr<T>(weight) : nullptr, eps,
        ptr<T>(out), norm ? ptr<float>(rstd) : nullptr, rows, H, half, G);
    UL_CUDA_CHECK_LAUNCH();
  });
}

void qk_norm_rope_backward(const Context& ctx, const Tensor& cos, const Tensor& sin,
                           const Tensor& x, const Tensor& weight, const Tensor& rstd,
                           const Tensor& dout, Tensor dx, Tensor dweight) {
  const std::int64_t H = dout.dim(1), half = dout.dim(2) / 2, rows = dout.dim(0) * H;
  if (rows == 0) return;
  const bool norm = weight.defined();
  const bool aligned = aligned16(dout.raw()) && aligned16(dx.raw()) && aligned16(cos.raw()) &&
                       aligned16(sin.raw()) &&
                       (!norm || (aligned16(weight.raw()) && aligned16(x.raw())));
  dispatch_shape(
      dout.dtype(), half, aligned, "qk_norm_rope_backward", [&]<typename T, int W>(int G) {
        const std::int64_t rows_per_block = kThreads / G;
        const auto blocks = static_cast<unsigned>((rows + rows_per_block - 1) / rows_per_block);
        const auto kernel = norm ? backward_kernel<T, W, true> : backward_kernel<T, W, false>;
        // The weight gradient's per-block shares in the same pass, while they fit in the
        // default 48 KB of shared memory per block.
        const std::size_t terms_bytes =
            static_cast<std::size_t>(rows_per_block * 2 * half) * sizeof(float);
        const bool fused = norm && terms_bytes <= 48 * 1024;
        Tensor partial = fused ? Tensor::empty({static_cast<std::int64_t>(blocks), 2 * half},
                                               DType::f32, ctx.device)
                               : Tensor();
        kernel<<<blocks, kThreads, fused ? terms_bytes : 0, stream_of(ctx)>>>(
            ptr<float>(cos), ptr<float>(sin), norm ? ptr<T>(x) : nullptr,
            norm ? ptr<T>(weight) : nullptr, norm ? ptr<float>(rstd) : nullptr, ptr<T>(dout),
            ptr<T>(dx), rows, H, half, G, fused ? ptr<float>(partial) : nullptr);
        UL_CUDA_CHECK_LAUNCH();
        if (fused) {
          column_sum_accumulate(ctx, PartialValue{ptr<float>(partial), 2 * half},
                                static_cast<std::int64_t>(blocks), 2 * half, ptr<float>(dweight));
        } else if (norm) {
          column_sum_accumulate(ctx,
                                WeightGradValue<T>{ptr<float>(cos), ptr<float>(sin), ptr<T>(x),
                                                   ptr<T>(dout), ptr<float>(rstd), H, half},
                                rows, 2 * half, ptr<float>(dweight));
        }
      });
}

}  // namespace ulysses::ops::cuda
