// Block attention with statistics on the CPU, fp32: one block of queries against one block of
// keys of the same packed sequence, each block placed by its global start, and the exact merge
// of two blocks' results by their log-sum-exp.
//
// Queries and keys are cut into tiles of `block` rows; a tile pair is computed only where the
// key tile can hold a key visible to the query tile (same document, at or before the query),
// and the mask is applied per element inside it, so any placement of the two blocks works
// (diagonal, fully visible, partly visible, fully masked, documents crossing the blocks'
// borders). Only per-thread scratch of O(block^2 + block * D) floats is allocated (plus delta:
// [Hq, Tq] in backward).
//
// Determinism: every work item writes a disjoint set of output elements and performs its sums
// in a fixed order, so results do not depend on thread scheduling.
#include "ulysses/ops/cpu/block_attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

namespace ulysses::ops::cpu {
namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// c: [m, n] (row stride ldc) = alpha * op(a) @ op(b) + beta * c, row-major.
inline void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                 float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                 float beta, float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
              transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// Document index of every token of the global range [begin, begin + n).
std::vector<std::int32_t> documents_of(const std::int32_t* cu_seqlens, std::int64_t num_documents,
                                       std::int64_t begin, std::int64_t n) {
  std::vector<std::int32_t> doc(static_cast<std::size_t>(n));
  std::int64_t j = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    while (j < num_documents && cu_seqlens[j + 1] <= begin + i) ++j;  // cu[j] <= t < cu[j + 1]
    doc[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(j);
  }
  return doc;
}

// The mask of one block pair, in local row indices of q (i) and k (s).
class BlockMask {
 public:
  BlockMask(const BlockAttentionShape& shape, const std::int32_t* cu_seqlens)
      : shape_(shape),
        cu_(cu_seqlens),
        q_doc_(
            documents_of(cu_seqlens, shape.num_documents, shape.query_begin, shape.query_tokens)),
        k_doc_(documents_of(cu_seqlens, shape.num_documents, shape.key_begin, shape.key_tokens)) {}

  // Query row i sees key row s: same document, key at or before the query.
  bool visible(std::int64_t i, std::int64_t s) const {
    return q_doc_[static_cast<std::size_t>(i)] == k_doc_[static_cast<std::size_t>(s)] &&
           shape_.key_begin + s <= shape_.query_begin + i;
  }
  // Key rows [first, second) that some query of rows [i0, i1) may see (empty: first >= second).
  std::pair<std::int64_t, std::int64_t> key_range(std::int64_t i0, std::int64_t i1) const {
    const std::int64_t lo = cu_[q_doc_[static_cast<std::size_t>(i0)]] - shape_.key_begin;
    const std::int64_t hi = shape_.query_begin + i1 - shape_.key_begin;
    return {std::max<std::int64_t>(lo, 0), std::min(hi, shape_.key_tokens)};
  }
  // Query rows [first, second) that may see some key of rows [s0, s1).
  std::pair<std::int64_t, std::int64_t> query_range(std::int64_t s0, std::int64_t s1) const {
    const std::int64_t lo = shape_.key_begin + s0 - shape_.query_begin;
    const std::int64_t hi = cu_[k_doc_[static_cast<std::size_t>(s1 - 1)] + 1] - shape_.query_begin;
    return {std::max<std::int64_t>(lo, 0), std::min(hi, shape_.query_tokens)};
  }

 private:
  const BlockAttentionShape& shape_;
  const std::int32_t* cu_;
  std::vector<std::int32_t> q_doc_, k_doc_;
};

// Fills p: [nq, nk] (row stride block) with the probabilities of query rows [i0, i0 + nq) of
// head h against key rows [s0, s0 + nk), recomputed from the final lse (masked entries and
// rows with lse -inf are 0). qh: query rows of head h; kh: key rows of its kv head.
void recompute_probabilities(const BlockMask& mask, const float* qh, std::int64_t ldq,
                             const float* kh, std::int64_t ldkv, const float* lse_h,
                             std::int64_t i0, std::int64_t nq, std::int64_t s0, std::int64_t nk,
                             std::int64_t head_dim, float scale, std::int64_t block, float* p) {
  // p = scale * q @ k^T: [nq, nk]
  gemm(false, true, nq, nk, head_dim, scale, qh + i0 * ldq, ldq, kh + s0 * ldkv, ldkv, 0.0f, p,
       block);
  for (std::int64_t i = 0; i < nq; ++i) {
    float* p_row = p + i * block;
    const float row_lse = lse_h[i0 + i];
    for (std::int64_t s = 0; s < nk; ++s) {
      const bool keep = row_lse != kMinusInf && mask.visible(i0 + i, s0 + s);
      p_row[s] = keep ? std::exp(p_row[s] - row_lse) : 0.0f;
    }
  }
}

// In place: p: [nq, nk] becomes ds = p * (dp - delta_row), dp: [nq, nk] = dout @ v^T.
void probabilities_to_score_grad(const float* douth, std::int64_t ldq, const float* vh,
                                 std::int64_t ldkv, const float* delta_h, std::int64_t i0,
                                 std::int64_t nq, std::int64_t s0, std::int64_t nk,
                                 std::int64_t head_dim, std::int64_t block, float* dp, float* p) {
  // dp = dout @ v^T: [nq, nk]
  gemm(false, true, nq, nk, head_dim, 1.0f, douth + i0 * ldq, ldq, vh + s0 * ldkv, ldkv, 0.0f, dp,
       block);
  for (std::int64_t i = 0; i < nq; ++i) {
    const float row_delta = delta_h[i0 + i];
    for (std::int64_t s = 0; s < nk; ++s) p[i * block + s] *= dp[i * block + s] - row_delta;
  }
}

std::int64_t tiles(std::int64_t n, std::int64_t block) { return (n + block - 1) / block; }

}  // namespace

void block_attention_forward(const BlockAttentionShape& shape, const float* q, const float* k,
                             const float* v, const std::int32_t* cu_seqlens, float scale,
                             float* out, float* lse) {
  const std::int64_t Tq = shape.query_tokens, Hq = shape.query_heads, Hkv = shape.kv_heads;
  const std::int64_t D = shape.head_dim, block = shape.block, group = Hq / Hkv;
  const std::int64_t ldq = Hq * D;    // row stride of q, out: [Tq, Hq, D]
  const std::int64_t ldkv = Hkv * D;  // row stride of k, v: [Tk, Hkv, D]
  const BlockMask mask(shape, cu_seqlens);
  const std::int64_t query_tiles = tiles(Tq, block);

#pragma omp parallel
  {
    std::vector<float> scores(static_cast<std::size_t>(block * block));  // [block, block]
    std::vector<float> acc(static_cast<std::size_t>(block * D));         // [block, D]
    std::vector<float> row_max(static_cast<std::size_t>(block));         // [block]
    std::vector<float> row_sum(static_cast<std::size_t>(block));         // [block]

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < Hq * query_tiles; ++item) {
      const std::int64_t h = item / query_tiles, i0 = (item % query_tiles) * block;
      const std::int64_t nq = std::min(block, Tq - i0);
      const float* kh = k + (h / group) * D;
      const float* vh = v + (h / group) * D;
      std::fill(acc.begin(), acc.end(), 0.0f);
      std::fill(row_max.begin(), row_max.end(), kMinusInf);
      std::fill(row_sum.begin(), row_sum.end(), 0.0f);
      const auto [first_key, end_key] = mask.key_range(i0, i0 + nq);
      for (std::int64_t s0 = first_key; s0 < end_key; s0 += block) {
        const std::int64_t nk = std::min(block, end_key - s0);
        // scores = scale * q_tile @ k_tile^T: [nq, nk]
        gemm(false, true, nq, nk, D, scale, q + i0 * ldq + h * D, ldq, kh + s0 * ldkv, ldkv, 0.0f,
             scores.data(), block);
        for (std::int64_t i = 0; i < nq; ++i) {
          float* s_row = scores.data() + i * block;
          float new_max = row_max[i];
          for (std::int64_t s = 0; s < nk; ++s) {
            if (mask.visible(i0 + i, s0 + s)) {
              new_max = std::max(new_max, s_row[s]);
            } else {
              s_row[s] = kMinusInf;
            }
          }
          if (new_max == kMinusInf) {  // nothing visible to this row yet
            std::fill(s_row, s_row + nk, 0.0f);
            continue;
          }
          // Online softmax: rescale what was accumulated under the old maximum.
          const float correction = std::exp(row_max[i] - new_max);
          float sum = row_sum[i] * correction;
          float* acc_row = acc.data() + i * D;
          for (std::int64_t d = 0; d < D; ++d) acc_row[d] *= correction;
          for (std::int64_t s = 0; s < nk; ++s) {
            s_row[s] = std::exp(s_row[s] - new_max);  // masked: exp(-inf) = 0
            sum += s_row[s];
          }
          row_max[i] = new_max;
          row_sum[i] = sum;
        }
        // acc += p @ v_tile: [nq, D]
        gemm(false, false, nq, D, nk, 1.0f, scores.data(), block, vh + s0 * ldkv, ldkv, 1.0f,
             acc.data(), D);
      }
      for (std::int64_t i = 0; i < nq; ++i) {
        float* out_row = out + (i0 + i) * ldq + h * D;
        if (row_sum[i] == 0.0f) {  // no visible key in this block
          std::fill(out_row, out_row + D, 0.0f);
          lse[h * Tq + i0 + i] = kMinusInf;
          continue;
        }
        const float inv_sum = 1.0f / row_sum[i];
        for (std::int64_t d = 0; d < D; ++d) out_row[d] = acc[i * D + d] * inv_sum;
        lse[h * Tq + i0 + i] = row_max[i] + std::log(row_sum[i]);
      }
    }
  }
}

void block_attention_backward(const BlockAttentionShape& shape, const float* q, const float* k,
                              const float* v, const std::int32_t* cu_seqlens, float scale,
                              const float* out, const float* lse, const float* dout, float* dq,
                              float* dk, float* dv) {
  const std::int64_t Tq = shape.query_tokens, Tk = shape.key_tokens;
  const std::int64_t Hq = shape.query_heads, Hkv = shape.kv_heads;
  const std::int64_t D = shape.head_dim, block = shape.block, group = Hq / Hkv;
  const std::int64_t ldq = Hq * D;    // row stride of q, out, dout, dq: [Tq, Hq, D]
  const std::int64_t ldkv = Hkv * D;  // row stride of k, v, dk, dv: [Tk, Hkv, D]
  const BlockMask mask(shape, cu_seqlens);

  // delta[h, i] = sum_d dout[i, h, d] * out[i, h, d] (the final output): [Hq, Tq]
  std::vector<float> delta(static_cast<std::size_t>(Hq * Tq));
#pragma omp parallel for
  for (std::int64_t i = 0; i < Tq; ++i) {
    for (std::int64_t h = 0; h < Hq; ++h) {
      const float* o = out + i * ldq + h * D;
      const float* g = dout + i * ldq + h * D;
      float sum = 0.0f;
      for (std::int64_t d = 0; d < D; ++d) sum += o[d] * g[d];
      delta[static_cast<std::size_t>(h * Tq + i)] = sum;
    }
  }

  // Pass 1: dq, one work item per (query head, query tile); it owns those dq rows.
  const std::int64_t query_tiles = tiles(Tq, block);
#pragma omp parallel
  {
    std::vector<float> p(static_cast<std::size_t>(block * block));   // [block, block]
    std::vector<float> dp(static_cast<std::size_t>(block * block));  // [block, block]
    std::vector<float> dq_acc(static_cast<std::size_t>(block * D));  // [block, D]

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < Hq * query_tiles; ++item) {
      const std::int64_t h = item / query_tiles, i0 = (item % query_tiles) * block;
      const std::int64_t nq = std::min(block, Tq - i0);
      const float* kh = k + (h / group) * D;
      const float* vh = v + (h / group) * D;
      std::fill(dq_acc.begin(), dq_acc.end(), 0.0f);
      const auto [first_key, end_key] = mask.key_range(i0, i0 + nq);
      if (first_key >= end_key) continue;
      for (std::int64_t s0 = first_key; s0 < end_key; s0 += block) {
        const std::int64_t nk = std::min(block, end_key - s0);
        recompute_probabilities(mask, q + h * D, ldq, kh, ldkv, lse + h * Tq, i0, nq, s0, nk, D,
                                scale, block, p.data());
        probabilities_to_score_grad(dout + h * D, ldq, vh, ldkv, delta.data() + h * Tq, i0, nq, s0,
                                    nk, D, block, dp.data(), p.data());
        // dq_acc += scale * ds @ k_tile: [nq, D]
        gemm(false, false, nq, D, nk, scale, p.data(), block, kh + s0 * ldkv, ldkv, 1.0f,
             dq_acc.data(), D);
      }
      for (std::int64_t i = 0; i < nq; ++i) {
        float* dq_row = dq + (i0 + i) * ldq + h * D;
        for (std::int64_t d = 0; d < D; ++d) dq_row[d] += dq_acc[i * D + d];
      }
    }
  }

  // Pass 2: dk, dv, one work item per (kv head, key tile); it owns those dk/dv rows and sums
  // over the query heads of its group and the query tiles that can see the key tile.
  const std::int64_t key_tiles = tiles(Tk, block);
#pragma omp parallel
  {
    std::vector<float> p(static_cast<std::size_t>(block * block));   // [block, block]
    std::vector<float> dp(static_cast<std::size_t>(block * block));  // [block, block]
    std::vector<float> dk_acc(static_cast<std::size_t>(block * D));  // [block, D]
    std::vector<float> dv_acc(static_cast<std::size_t>(block * D));  // [block, D]

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < Hkv * key_tiles; ++item) {
      const std::int64_t kv_head = item / key_tiles, s0 = (item % key_tiles) * block;
      const std::int64_t nk = std::min(block, Tk - s0);
      const float* kh = k + kv_head * D;
      const float* vh = v + kv_head * D;
      const auto [first_query, end_query] = mask.query_range(s0, s0 + nk);
      if (first_query >= end_query) continue;
      std::fill(dk_acc.begin(), dk_acc.end(), 0.0f);
      std::fill(dv_acc.begin(), dv_acc.end(), 0.0f);
      for (std::int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
        for (std::int64_t i0 = first_query; i0 < end_query; i0 += block) {
          const std::int64_t nq = std::min(block, end_query - i0);
          recompute_probabilities(mask, q + h * D, ldq, kh, ldkv, lse + h * Tq, i0, nq, s0, nk, D,
                                  scale, block, p.data());
          // dv_acc += p^T @ dout_tile: [nk, D]
          gemm(true, false, nk, D, nq, 1.0f, p.data(), block, dout + i0 * ldq + h * D, ldq, 1.0f,
               dv_acc.data(), D);
          probabilities_to_score_grad(dout + h * D, ldq, vh, ldkv, delta.data() + h * Tq, i0, nq,
                                      s0, nk, D, block, dp.data(), p.data());
          // dk_acc += scale * ds^T @ q_tile: [nk, D]
          gemm(true, false, nk, D, nq, scale, p.data(), block, q + i0 * ldq + h * D, ldq, 1.0f,
               dk_acc.data(), D);
        }
      }
      for (std::int64_t s = 0; s < nk; ++s) {
        float* dk_row = dk + (s0 + s) * ldkv + kv_head * D;
        float* dv_row = dv + (s0 + s) * ldkv + kv_head * D;
        for (std::int64_t d = 0; d < D; ++d) {
          dk_row[d] += dk_acc[s * D + d];
          dv_row[d] += dv_acc[s * D + d];
        }
      }
    }
  }
}

void attention_merge(std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, float* out,
                     float* lse, const float* block_out, const float* block_lse) {
#pragma omp parallel for
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t h = 0; h < heads; ++h) {
      const float b = block_lse[h * tokens + t];
      if (b == kMinusInf) continue;  // the block adds nothing to this row
      float* o = out + (t * heads + h) * head_dim;
      const float* bo = block_out + (t * heads + h) * head_dim;
      float& a = lse[h * tokens + t];
      if (a == kMinusInf) {  // nothing accumulated yet
        std::copy(bo, bo + head_dim, o);
        a = b;
        continue;
      }
      const float m = std::max(a, b);
      const float merged = m + std::log(std::exp(a - m) + std::exp(b - m));
      const float wa = std::exp(a - merged), wb = std::exp(b - merged);
      for (std::int64_t d = 0; d < head_dim; ++d) o[d] = wa * o[d] + wb * bo[d];
      a = merged;
    }
  }
}

}  // namespace ulysses::ops::cpu
