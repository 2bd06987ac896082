// LM head fused with cross-entropy, tiled over tokens so the [T, V] logits never exist at once:
// only [tile, V] for one tile of ctx.loss_tile_tokens rows.
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"
#include "ulysses/ops/indices.h"

namespace ulysses::ops {

inline constexpr std::int32_t kIgnoreIndex = -100;

// The result of one call: the sum over valid labels of -log softmax(logits)[label] and the
// number of labels != kIgnoreIndex. On CUDA the sum stays on the device until loss_sum() first
// reads it (one host synchronization; later calls and copies made after it return the value
// read), so a training step queues its whole forward and backward without waiting for the loss.
class LossSum {
 public:
  LossSum() = default;
  LossSum(double sum, std::int64_t valid_count) : valid_count_(valid_count), sum_(sum) {}
  // sum: [1] i64 on ctx's device holding a double's bits, written in the stream's order.
  LossSum(const Context& ctx, Tensor sum, std::int64_t valid_count);

  double loss_sum() const;
  std::int64_t valid_count() const { return valid_count_; }
  // Whether the sum still waits on the device (not read yet).
  bool pending() const { return device_sum_.defined(); }

 private:
  std::int64_t valid_count_ = 0;
  mutable double sum_ = 0.0;
  Context ctx_;
  mutable Tensor device_sum_;  // undefined once read (or for a value)
};

// x: [T, C] final hidden states; weight: [V, C] (lm_head, or the tied embedding table);
// labels: [T] i32 in [0, V) or kIgnoreIndex (other values throw Error naming the position).
// When grad_scale != 0 the backward runs in the same pass:
//   dx: [T, C] += grad_scale * d loss_sum / dx;  dweight: [V, C] += grad_scale * d loss_sum / dW.
// With grad_scale == 0 (evaluation) dx and dweight may be undefined and are not touched.
// Tokens with ignored labels contribute nothing (and no NaN even when every label is ignored).
// Dtypes: x, weight, dx one dtype (f32 on CPU; f32 or bf16 on CUDA); dweight f32 everywhere.
// The labels are checked on the host: the copy passed with them (ops/indices.h), else one read
// back (on CUDA a host synchronization). CUDA: logits of a tile are f32 ([tile, V] f32 plus
// [tile, V] dlogits in x's dtype); the positions of the valid labels are uploaded without a host
// wait and the loss sum is left on the device (LossSum): with the labels' host copy a call never
// waits for the device.
LossSum lm_head_cross_entropy(const Context& ctx, const Tensor& x, const Tensor& weight,
                              const Indices& labels, float grad_scale, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops
