#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/linear.h"
#include "ulysses/ops/cuda/matmul.cuh"
#include "ulysses/ops/cuda/reduce.cuh"

namespace ulysses::ops::cuda {

namespace {
template <typename T>
struct RowValue {
  const T* dy;
  std::int64_t M;
  __device__ float operator()(std::int64_t r, std::int64_t c) const {
    return to_float(dy[r * M + c]);
  }
};
}  // namespace

// cuBLAS sees row-major storage transposed: row-major y[N, M] = x[N, K] W[M, K]^T is the
// column-major product y^T[M, N] = W[M, K] x^T[K, N], where W's storage read column-major is
// W^T [K, M] (so trans_a) and x's storage is x^T [K, N].
void linear_forward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& bias,
                    Tensor y) {
  const std::int64_t N = x.dim(0), K = x.dim(1), M = weight.dim(0);
  gemm(ctx, /*trans_a=*/true, /*trans_b=*/false, M, N, K, weight.raw(), K, x.raw(), K, x.dtype(),
       y.raw(), M, y.dtype(), 1.0f, 0.0f, bias.defined() ? bias.raw() : nullptr);
}

void linear_forward_residual(const Context& ctx, const Tensor& x, const Tensor& weight,
                             const Tensor& bias, const Tensor& residual, Tensor y) {
  const std::int64_t N = x.dim(0), K = x.dim(1), M = weight.dim(0);
  gemm(ctx, /*trans_a=*/true, /*trans_b=*/false, M, N, K, weight.raw(), K, x.raw(), K, x.dtype(),
       y.raw(), M, y.dtype(), 1.0f, 1.0f, bias.defined() ? bias.raw() : nullptr, residual.raw());
}

void linear_backward(const Context& ctx, const Tensor& x, const Tensor& weight, const Tensor& dy,
                     Tensor dx, Tensor dweight, Tensor dbias, bool dx_overwrite) {
  const std::int64_t N = x.dim(0), K = x.dim(1), M = weight.dim(0);
  if (dx.defined()) {
    // dx^T [K, N] += W^T [K, M] dy^T [M, N]  (beta 0 when overwriting)
    gemm(ctx, false, false, K, N, M, weight.raw(), K, dy.raw(), M, x.dtype(), dx.raw(), K,
         dx.dtype(), 1.0f, dx_overwrite ? 0.0f : 1.0f);
  }
  // dW^T [K, M] += x^T [K, N] dy [N, M]
  gemm(ctx, false, true, K, M, N, x.raw(), K, dy.raw(), M, x.dtype(), dweight.raw(), K, DType::f32,
       1.0f, 1.0f);
  if (dbias.defined()) {
    dispatch_float_type(dy.dtype(), "linear_backward", [&]<typename T>() {
      column_sum_accumulate(ctx, RowValue<T>{ptr<T>(dy), M}, N, M, ptr<float>(dbias));
    });
  }
}

}  // namespace ulysses::ops::cuda
