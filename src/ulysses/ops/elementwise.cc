#include "ulysses/ops/elementwise.h"

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/elementwise.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/elementwise.h"
#endif

namespace ulysses::ops {
void add_inplace(const Context& ctx, Tensor y, const Tensor& x) {
  ProfileScope scope(ctx, "add");
  check_compute_dtype(ctx, y, "add_inplace: y");
  check_same_dtype(x, y, "add_inplace: x", "y");
  check_shape(x, y.shape(), "add_inplace: x");
  check_on_context_device(ctx, y, "add_inplace: y");
  check_on_context_device(ctx, x, "add_inplace: x");

  if (ctx.device.is_cpu()) {
    cpu::add_inplace(y.data<float>(), x.data<float>(), y.numel());
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::add_inplace(ctx, y, x);
#endif
  } else {
    UL_FAIL("add_inplace: no kernel for device ", ctx.device.str());
  }
}

void scale_inplace(const Context& ctx, Tensor x, float factor) {
  ProfileScope scope(ctx, "scale");
  check_compute_dtype(ctx, x, "scale_inplace: x");
  check_on_context_device(ctx, x, "scale_inplace: x");

  if (ctx.device.is_cpu()) {
    cpu::scale_inplace(x.data<float>(), factor, x.numel());
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::scale_inplace(ctx, x, factor);
#endif
  } else {
    UL_FAIL("scale_inplace: no kernel for device ", ctx.device.str());
  }
}

double sum_of_squares(const Context& ctx, const Tensor& x) {
  ProfileScope scope(ctx, "sum_of_squares");
  check_compute_dtype(ctx, x, "sum_of_squares: x");
  check_on_context_device(ctx, x, "sum_of_squares: x");

  if (ctx.device.is_cpu()) return cpu::sum_of_squares(x.data<float>(), x.numel());
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) return cuda::sum_of_squares(ctx, x);
#endif
  UL_FAIL("sum_of_squares: no kernel for device ", ctx.device.str());
}

void sum_of_squares_into(const Context& ctx, const Tensor& x, Tensor sums, std::int64_t slot) {
  ProfileScope scope(ctx, "sum_of_squares");
  check_compute_dtype(ctx, x, "sum_of_squares_into: x");
  check_on_context_device(ctx, x, "sum_of_squares_into: x");
  check_dtype(sums, DType::i64, "sum_of_squares_into: sums");
  check_on_context_device(ctx, sums, "sum_of_squares_into: sums");
  UL_CHECK(sums.ndim() == 1 && slot >= 0 && slot < sums.numel(), "sum_of_squares_into: slot ",
           slot, " outside sums of shape ", shape_str(sums.shape()));
  double* out = reinterpret_cast<double*>(sums.data<std::int64_t>()) + slot;
  if (ctx.device.is_cpu()) {
    *out = cpu::sum_of_squares(x.data<float>(), x.numel());
    return;
  }
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) return cuda::sum_of_squares_into(ctx, x, out);
#endif
  UL_FAIL("sum_of_squares_into: no kernel for device ", ctx.device.str());
}

std::vector<double> read_sums(const Context& ctx, const Tensor& sums) {
  check_dtype(sums, DType::i64, "read_sums: sums");
  check_on_context_device(ctx, sums, "read_sums: sums");
  std::vector<double> out(static_cast<std::size_t>(sums.numel()));
  const auto* in = reinterpret_cast<const double*>(sums.data<std::int64_t>());
  if (ctx.device.is_cpu()) {
    std::copy(in, in + out.size(), out.begin());
    return out;
  }
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) {
    cuda::read_doubles(ctx, in, out.data(), sums.numel());
    return out;
  }
#endif
  UL_FAIL("read_sums: no kernel for device ", ctx.device.str());
}

void convert(const Context& ctx, const Tensor& src, Tensor dst) {
  ProfileScope scope(ctx, "convert");
  UL_CHECK(src.defined() && dst.defined(), "convert: src and dst must be defined");
  UL_CHECK(src.dtype() == DType::f32 || src.dtype() == DType::bf16, "convert: src has dtype ",
           dtype_name(src.dtype()), ", expected f32 or bf16");
  UL_CHECK(dst.dtype() == DType::f32 || dst.dtype() == DType::bf16, "convert: dst has dtype ",
           dtype_name(dst.dtype()), ", expected f32 or bf16");
  check_shape(dst, src.shape(), "convert: dst");
  check_on_context_device(ctx, src, "convert: src");
  check_on_context_device(ctx, dst, "convert: dst");

  if (ctx.device.is_cpu()) {
    dst.copy_from(src.to(dst.dtype()));
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::convert(ctx, src, dst);
#endif
  } else {
    UL_FAIL("convert: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
