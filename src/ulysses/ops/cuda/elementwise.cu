#include "ulysses/core/cuda_context.h"
#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/elementwise.h"

namespace ulysses::ops::cuda {

namespace {

constexpr int kThreads = 256;

// y[i] = f(y[i], x[i]) over n elements, in packs of 8 when `vector` (n % 8 == 0, aligned).
template <typename TY, typename TX, typename F>
__global__ void binary_kernel(TY* y, const TX* x, std::int64_t n, bool vector, F f) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vector) {
    for (std::int64_t p = first; p < n / 8; p += stride) {
      float a[8], b[8];
      load8(y + p * 8, a);
      load8(x + p * 8, b);
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] = f(a[i], b[i]);
      store8(y + p * 8, a);
    }
  } else {
    for (std::int64_t i = first; i < n; i += stride)
      y[i] = from_float<TY>(f(to_float(y[i]), to_float(x[i])));
  }
}

template <typename TY, typename TX, typename F>
void launch_binary(const Context& ctx, TY* y, const TX* x, std::int64_t n, F f) {
  if (n == 0) return;
  const bool vector = n % 8 == 0 && aligned16(y) && aligned16(x);
  const std::int64_t work = vector ? n / 8 : n;
  binary_kernel<<<blocks_for(work, kThreads), kThreads, 0, stream_of(ctx)>>>(y, x, n, vector, f);
  UL_CUDA_CHECK_LAUNCH();
}

struct Add {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct Scale {
  float factor;
  __device__ float operator()(float a, float) const { return a * factor; }
};
struct Second {
  __device__ float operator()(float, float b) const { return b; }
};

// partial[block] = sum of x^2 over the block's grid-stride elements (double).
template <typename T>
__global__ void squares_partial_kernel(const T* x, std::int64_t n, double* partial) {
  __shared__ double scratch[32];
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  double sum = 0.0;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const double v = to_float(x[i]);
    sum += v * v;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void sum_partials_kernel(const double* partial, int parts, double* out) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int i = threadIdx.x; i < parts; i += blockDim.x) sum += partial[i];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) *out = sum;
}

}  // namespace

void add_inplace(const Context& ctx, Tensor y, const Tensor& x) {
  dispatch_float_type(y.dtype(), "add_inplace", [&]<typename T>() {
    launch_binary(ctx, ptr<T>(y), ptr<T>(x), y.numel(), Add{});
  });
}

void scale_inplace(const Context& ctx, Tensor x, float factor) {
  dispatch_float_type(x.dtype(), "scale_inplace", [&]<typename T>() {
    launch_binary(ctx, ptr<T>(x), ptr<T>(x), x.numel(), Scale{factor});
  });
}

void convert(const Context& ctx, const Tensor& src, Tensor dst) {
  dispatch_float_type(dst.dtype(), "convert", [&]<typename TD>() {
    dispatch_float_type(src.dtype(), "convert", [&]<typename TS>() {
      launch_binary(ctx, ptr<TD>(dst), ptr<TS>(src), dst.numel(), Second{});
    });
  });
}

void sum_of_squares_into(const Context& ctx, const Tensor& x, double* out) {
  const std::int64_t n = x.numel();
  constexpr int kParts = 1024;
  const int parts = static_cast<int>(std::min<std::int64_t>(kParts, blocks_for(n, kThreads)));
  Tensor partial = Tensor::empty({parts}, DType::i64, ctx.device);  // doubles
  double* partial_data = reinterpret_cast<double*>(partial.raw());
  const cudaStream_t stream = stream_of(ctx);
  dispatch_float_type(x.dtype(), "sum_of_squares", [&]<typename T>() {
    squares_partial_kernel<<<parts, kThreads, 0, stream>>>(ptr<T>(x), n, partial_data);
    UL_CUDA_CHECK_LAUNCH();
  });
  sum_partials_kernel<<<1, kThreads, 0, stream>>>(partial_data, parts, out);
  UL_CUDA_CHECK_LAUNCH();
}

void read_doubles(const Context& ctx, const double* device, double* host, std::int64_t n) {
  const cudaStream_t stream = stream_of(ctx);
  UL_CUDA_CHECK(cudaMemcpyAsync(host, device, static_cast<std::size_t>(n) * sizeof(double),
                                cudaMemcpyDeviceToHost, stream));
  synchronize(ctx);
}

double sum_of_squares(const Context& ctx, const Tensor& x) {
  Tensor result = Tensor::empty({1}, DType::i64, ctx.device);  // a double
  double* out = reinterpret_cast<double*>(result.raw());
  sum_of_squares_into(ctx, x, out);
  double value = 0.0;
  read_doubles(ctx, out, &value, 1);
  return value;
}

}  // namespace ulysses::ops::cuda
