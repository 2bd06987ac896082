#include "ulysses/ops/cross_entropy.h"

#include <vector>

#include "ulysses/core/error.h"
#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/cross_entropy.h"
#include "ulysses/ops/elementwise.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/cross_entropy.h"
#endif

namespace ulysses::ops {

LossSum::LossSum(const Context& ctx, Tensor sum, std::int64_t valid_count)
    : valid_count_(valid_count), ctx_(ctx), device_sum_(std::move(sum)) {
  check_dtype(device_sum_, DType::i64, "LossSum: sum");
  check_shape(device_sum_, {1}, "LossSum: sum");
}

double LossSum::loss_sum() const {
  if (device_sum_.defined()) {
    sum_ = read_sums(ctx_, device_sum_)[0];
    device_sum_ = Tensor();  // read: the value is the sum from now on
  }
  return sum_;
}

LossSum lm_head_cross_entropy(const Context& ctx, const Tensor& x, const Tensor& weight,
                              const Indices& labels_arg, float grad_scale, Tensor dx,
                              Tensor dweight) {
  ProfileScope scope(ctx, "loss");
  const Tensor& labels = labels_arg.tensor;
  UL_CHECK(ctx.loss_tile_tokens >= 1,
           "lm_head_cross_entropy: ctx.loss_tile_tokens must be >= 1, got ", ctx.loss_tile_tokens);
  UL_CHECK(x.defined() && x.ndim() == 2, "lm_head_cross_entropy: x must be [T, C], got ",
           x.defined() ? shape_str(x.shape()) : "undefined");
  UL_CHECK(weight.defined() && weight.ndim() == 2,
           "lm_head_cross_entropy: weight must be [V, C], got ",
           weight.defined() ? shape_str(weight.shape()) : "undefined");
  const std::int64_t num_tokens = x.dim(0);
  const std::int64_t channels = x.dim(1);
  const std::int64_t vocab_size = weight.dim(0);
  UL_CHECK(weight.dim(1) == channels, "lm_head_cross_entropy: weight ", shape_str(weight.shape()),
           " has ", weight.dim(1), " channels but x ", shape_str(x.shape()), " has ", channels);
  UL_CHECK(vocab_size >= 1, "lm_head_cross_entropy: weight has an empty vocabulary");
  UL_CHECK(labels.defined(), "lm_head_cross_entropy: labels is undefined");
  check_compute_dtype(ctx, x, "lm_head_cross_entropy: x");
  check_same_dtype(weight, x, "lm_head_cross_entropy: weight", "x");
  check_dtype(labels, DType::i32, "lm_head_cross_entropy: labels");
  check_shape(labels, {num_tokens}, "lm_head_cross_entropy: labels");
  UL_CHECK(x.device() == ctx.device, "lm_head_cross_entropy: x is on ", x.device().str(),
           " but ctx.device is ", ctx.device.str());
  check_on_context_device(ctx, weight, "lm_head_cross_entropy: weight");
  check_on_context_device(ctx, labels, "lm_head_cross_entropy: labels");
  if (grad_scale != 0.0f) {
    UL_CHECK(dx.defined(), "lm_head_cross_entropy: dx is undefined but grad_scale = ", grad_scale);
    UL_CHECK(dweight.defined(),
             "lm_head_cross_entropy: dweight is undefined but grad_scale = ", grad_scale);
    check_same_dtype(dx, x, "lm_head_cross_entropy: dx", "x");
    check_dtype(dweight, DType::f32, "lm_head_cross_entropy: dweight");
    check_shape(dx, x.shape(), "lm_head_cross_entropy: dx");
    check_shape(dweight, weight.shape(), "lm_head_cross_entropy: dweight");
    UL_CHECK(dx.device() == ctx.device, "lm_head_cross_entropy: dx is on ", dx.device().str(),
             " but ctx.device is ", ctx.device.str());
    check_on_context_device(ctx, dweight, "lm_head_cross_entropy: dweight");
  }
  // Every label checked on the host before anything is written; the valid positions go to the
  // kernels of both devices.
  std::vector<std::int32_t> storage;
  const std::int32_t* label =
      host_values(labels_arg, storage, "lm_head_cross_entropy: labels").data();
  std::vector<std::int32_t> valid_rows;
  valid_rows.reserve(static_cast<std::size_t>(num_tokens));
  for (std::int64_t t = 0; t < num_tokens; ++t) {
    if (label[t] == kIgnoreIndex) continue;
    if (label[t] < 0 || label[t] >= vocab_size)
      UL_FAIL("lm_head_cross_entropy: labels[", t, "] = ", label[t],
              " is outside [0, vocab_size = ", vocab_size, ") and is not the ignore index ",
              kIgnoreIndex);
    valid_rows.push_back(static_cast<std::int32_t>(t));
  }
  if (ctx.device.is_cpu())
    return cpu::lm_head_cross_entropy(ctx.loss_tile_tokens, x, weight, labels, valid_rows,
                                      grad_scale, dx, dweight);
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda())
    return cuda::lm_head_cross_entropy(ctx, x, weight, labels, valid_rows, grad_scale, dx, dweight);
#endif
  UL_FAIL("lm_head_cross_entropy: no kernel for device ", ctx.device.str());
}

}  // namespace ulysses::ops
