// LM head fused with cross-entropy, tiled over tokens so the [T, V] logits never exist at once:
// only [tile, V] for one tile of ctx.loss_tile_tokens rows.
#pragma once

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

inline constexpr std::int32_t kIgnoreIndex = -100;

struct LossSum {
  double loss_sum = 0.0;          // sum over valid labels of -log softmax(logits)[label]
  std::int64_t valid_count = 0;   // number of labels != kIgnoreIndex
};

// x: [T, C] final hidden states; weight: [V, C] (lm_head, or the tied embedding table);
// labels: [T] i32 in [0, V) or kIgnoreIndex (other values throw Error naming the position).
// When grad_scale != 0 the backward runs in the same pass:
//   dx: [T, C] += grad_scale * d loss_sum / dx;  dweight: [V, C] += grad_scale * d loss_sum / dW.
// With grad_scale == 0 (evaluation) dx and dweight may be undefined and are not touched.
// Tokens with ignored labels contribute nothing (and no NaN even when every label is ignored).
// Dtypes: x, weight, dx one dtype (f32 on CPU; f32 or bf16 on CUDA); dweight f32 everywhere.
// CUDA: logits of a tile are f32 ([tile, V] f32 plus [tile, V] dlogits in x's dtype); the labels
// are checked on a host copy and the loss sum is read back: two host synchronizations per call.
LossSum lm_head_cross_entropy(const Context& ctx, const Tensor& x, const Tensor& weight,
                              const Tensor& labels, float grad_scale, Tensor dx, Tensor dweight);

}  // namespace ulysses::ops
