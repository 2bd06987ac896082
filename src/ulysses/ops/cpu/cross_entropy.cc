#include "ulysses/ops/cpu/cross_entropy.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ulysses/core/error.h"

namespace ulysses::ops::cpu {

// Tokens with ignored labels have zero loss and zero gradient, so they are dropped up front:
// the valid rows are gathered into contiguous tiles of up to tile_tokens rows. For each tile:
//   logits = x_tile W^T                                    // [n, V]
//   loss_i = logsumexp(logits_i) - logits_i[label_i]
//   dlogits = grad_scale * (softmax(logits) - onehot)       // [n, V], in place of logits
//   dx[rows] += dlogits W;  dW += dlogits^T x_tile
// The loss is summed in double in token order, so the result does not depend on the tiling
// beyond the rounding of the matrix products.
LossSum lm_head_cross_entropy(std::int64_t tile_tokens, const Tensor& x, const Tensor& weight,
                              const Tensor& labels, const std::vector<std::int32_t>& valid_rows,
                              float grad_scale, Tensor dx, Tensor dweight) {
  const std::int64_t channels = x.dim(1);
  const std::int64_t vocab_size = weight.dim(0);
  const bool backward = grad_scale != 0.0f;
  const std::int32_t* label_data = labels.data<std::int32_t>();  // [T]
  const auto num_valid = static_cast<std::int64_t>(valid_rows.size());
  double loss_sum = 0.0;
  if (valid_rows.empty()) return LossSum(0.0, 0);

  const float* x_data = x.data<float>();                        // [T, C]
  const float* w_data = weight.data<float>();                   // [V, C]
  float* dx_data = backward ? dx.data<float>() : nullptr;       // [T, C]
  float* dw_data = backward ? dweight.data<float>() : nullptr;  // [V, C]

  const std::int64_t tile = std::min(tile_tokens, num_valid);
  std::vector<float> x_tile(static_cast<std::size_t>(tile * channels));    // [tile, C]
  std::vector<float> logits(static_cast<std::size_t>(tile * vocab_size));  // [tile, V]
  std::vector<float> dx_tile(backward ? x_tile.size() : 0);                // [tile, C]
  std::vector<double> row_loss(static_cast<std::size_t>(tile));            // [tile]

  for (std::int64_t begin = 0; begin < num_valid; begin += tile) {
    const std::int64_t n = std::min(tile, num_valid - begin);
    const std::int32_t* rows = valid_rows.data() + begin;

    // x_tile[i] = x[rows[i]]
#pragma omp parallel for
    for (std::int64_t i = 0; i < n; ++i)
      std::copy_n(x_data + rows[i] * channels, channels, x_tile.data() + i * channels);

    // logits: [n, V] = x_tile [n, C] @ W^T [C, V]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
                static_cast<int>(vocab_size), static_cast<int>(channels), 1.0f, x_tile.data(),
                static_cast<int>(channels), w_data, static_cast<int>(channels), 0.0f, logits.data(),
                static_cast<int>(vocab_size));

#pragma omp parallel for
    for (std::int64_t i = 0; i < n; ++i) {
      float* row = logits.data() + i * vocab_size;  // [V]
      const std::int32_t label = label_data[rows[i]];
      float max_logit = row[0];
      for (std::int64_t v = 1; v < vocab_size; ++v) max_logit = std::max(max_logit, row[v]);
      double sum_exp = 0.0;
      for (std::int64_t v = 0; v < vocab_size; ++v) sum_exp += std::exp(row[v] - max_logit);
      const double log_sum_exp = static_cast<double>(max_logit) + std::log(sum_exp);
      row_loss[static_cast<std::size_t>(i)] = log_sum_exp - static_cast<double>(row[label]);
      if (backward) {
        // dlogits = grad_scale * (softmax - onehot(label)), written over the logits.
        const float scale = static_cast<float>(grad_scale / sum_exp);
        for (std::int64_t v = 0; v < vocab_size; ++v) row[v] = scale * std::exp(row[v] - max_logit);
        row[label] -= grad_scale;
      }
    }
    for (std::int64_t i = 0; i < n; ++i) loss_sum += row_loss[static_cast<std::size_t>(i)];
    if (!backward) continue;

    // dx_tile: [n, C] = dlogits [n, V] @ W [V, C]; then dx[rows[i]] += dx_tile[i]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                static_cast<int>(channels), static_cast<int>(vocab_size), 1.0f, logits.data(),
                static_cast<int>(vocab_size), w_data, static_cast<int>(channels), 0.0f,
                dx_tile.data(), static_cast<int>(channels));
#pragma omp parallel for
    for (std::int64_t i = 0; i < n; ++i) {
      float* dx_row = dx_data + rows[i] * channels;
      const float* src = dx_tile.data() + i * channels;
      for (std::int64_t c = 0; c < channels; ++c) dx_row[c] += src[c];
    }
    // dW: [V, C] += dlogits^T [V, n] @ x_tile [n, C]
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(vocab_size),
                static_cast<int>(channels), static_cast<int>(n), 1.0f, logits.data(),
                static_cast<int>(vocab_size), x_tile.data(), static_cast<int>(channels), 1.0f,
                dw_data, static_cast<int>(channels));
  }
  return LossSum(loss_sum, num_valid);
}

}  // namespace ulysses::ops::cpu
