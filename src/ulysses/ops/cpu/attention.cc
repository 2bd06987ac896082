// Blockwise (FlashAttention-style) causal varlen GQA attention on the CPU, fp32.
//
// Queries and keys of a document are cut into blocks of `block` tokens aligned to the document
// start, so the key block that shares its start with a query block is its diagonal block and
// every earlier key block is fully visible. Only per-thread scratch of O(block^2 + block * D)
// floats is allocated (plus delta: [Hq, T] in backward); no [T, T] matrix ever exists.
//
// Determinism: every work item writes a disjoint set of output elements and performs its sums
// in a fixed order, so results do not depend on thread scheduling.
#include "ulysses/ops/cpu/attention.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ulysses::ops::cpu {
namespace {

// A run of tokens [begin, end) of one head inside one document that starts at doc_begin and
// ends at doc_end.
struct BlockItem {
  std::int64_t head;
  std::int64_t begin;
  std::int64_t end;
  std::int64_t doc_begin;
  std::int64_t doc_end;
};

// All blocks of `block` tokens (aligned to document starts) of all documents, for heads
// 0..heads-1.
std::vector<BlockItem> make_blocks(std::int64_t heads, std::int64_t num_documents,
                                   const std::int32_t* cu_seqlens, std::int64_t block) {
  std::vector<BlockItem> items;
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t j = 0; j < num_documents; ++j) {
      const std::int64_t doc_begin = cu_seqlens[j];
      const std::int64_t doc_end = cu_seqlens[j + 1];
      for (std::int64_t b = doc_begin; b < doc_end; b += block) {
        items.push_back({h, b, std::min(b + block, doc_end), doc_begin, doc_end});
      }
    }
  }
  return items;
}

// Number of keys of the key block starting at k0 (nk keys) visible to the query at q.
inline std::int64_t visible_keys(std::int64_t q, std::int64_t k0, std::int64_t nk) {
  return std::clamp<std::int64_t>(q - k0 + 1, 0, nk);
}

// c: [m, n] (row stride ldc) = alpha * op(a) @ op(b) + beta * c, row-major.
inline void gemm(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                 float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                 float beta, float* c, std::int64_t ldc) {
  cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
              transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

// Fills p: [nq, nk] (row stride block) with the attention probabilities of queries
// [q0, q0 + nq) of head h against keys [k0, k0 + nk), recomputed from the saved lse
// (masked entries are 0). qh: query rows of head h; kh: key rows of its kv head.
void recompute_probabilities(const float* qh, std::int64_t ldq, const float* kh, std::int64_t ldkv,
                             const float* lse_h, std::int64_t q0, std::int64_t nq, std::int64_t k0,
                             std::int64_t nk, std::int64_t head_dim, float scale,
                             std::int64_t block, float* p) {
  // p = scale * q @ k^T: [nq, nk]
  gemm(false, true, nq, nk, head_dim, scale, qh + q0 * ldq, ldq, kh + k0 * ldkv, ldkv, 0.0f, p,
       block);
  for (std::int64_t i = 0; i < nq; ++i) {
    float* p_row = p + i * block;
    const float row_lse = lse_h[q0 + i];
    const std::int64_t visible = visible_keys(q0 + i, k0, nk);
    for (std::int64_t s = 0; s < visible; ++s) p_row[s] = std::exp(p_row[s] - row_lse);
    for (std::int64_t s = visible; s < nk; ++s) p_row[s] = 0.0f;
  }
}

// In place: p: [nq, nk] becomes ds = p * (dp - delta_row), dp: [nq, nk] = dout @ v^T.
void probabilities_to_score_grad(const float* douth, std::int64_t ldq, const float* vh,
                                 std::int64_t ldkv, const float* delta_h, std::int64_t q0,
                                 std::int64_t nq, std::int64_t k0, std::int64_t nk,
                                 std::int64_t head_dim, std::int64_t block, float* dp, float* p) {
  // dp = dout @ v^T: [nq, nk]
  gemm(false, true, nq, nk, head_dim, 1.0f, douth + q0 * ldq, ldq, vh + k0 * ldkv, ldkv, 0.0f, dp,
       block);
  for (std::int64_t i = 0; i < nq; ++i) {
    const float row_delta = delta_h[q0 + i];
    for (std::int64_t s = 0; s < nk; ++s) {
      p[i * block + s] *= dp[i * block + s] - row_delta;
    }
  }
}

}  // namespace

void attention_forward(const AttentionShape& shape, const float* q, const float* k, const float* v,
                       const std::int32_t* cu_seqlens, float scale, float* out, float* lse) {
  const std::int64_t T = shape.tokens, Hq = shape.query_heads, Hkv = shape.kv_heads;
  const std::int64_t D = shape.head_dim, block = shape.block;
  const std::int64_t group = Hq / Hkv;
  const std::int64_t ldq = Hq * D;    // row stride of q, out: [T, Hq, D]
  const std::int64_t ldkv = Hkv * D;  // row stride of k, v: [T, Hkv, D]
  const std::vector<BlockItem> items = make_blocks(Hq, shape.num_documents, cu_seqlens, block);
  const std::int64_t num_items = static_cast<std::int64_t>(items.size());

#pragma omp parallel
  {
    std::vector<float> scores(static_cast<std::size_t>(block * block));  // [block, block]
    std::vector<float> acc(static_cast<std::size_t>(block * D));         // [block, D]
    std::vector<float> row_max(static_cast<std::size_t>(block));         // [block]
    std::vector<float> row_sum(static_cast<std::size_t>(block));         // [block]

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < num_items; ++item) {
      const BlockItem& qb = items[static_cast<std::size_t>(item)];
      const std::int64_t h = qb.head, q0 = qb.begin, nq = qb.end - qb.begin;
      const float* qh = q + h * D;            // rows of head h, stride ldq
      const float* kh = k + (h / group) * D;  // rows of its kv head, stride ldkv
      const float* vh = v + (h / group) * D;
      std::fill(row_max.begin(), row_max.end(), -std::numeric_limits<float>::infinity());
      std::fill(row_sum.begin(), row_sum.end(), 0.0f);
      std::fill(acc.begin(), acc.end(), 0.0f);

      // Key blocks from the document start up to and including the diagonal block.
      for (std::int64_t k0 = qb.doc_begin; k0 < qb.end; k0 += block) {
        const std::int64_t nk = std::min(k0 + block, qb.end) - k0;
        // scores = scale * q_block @ k_block^T: [nq, nk]
        gemm(false, true, nq, nk, D, scale, qh + q0 * ldq, ldq, kh + k0 * ldkv, ldkv, 0.0f,
             scores.data(), block);
        for (std::int64_t i = 0; i < nq; ++i) {
          float* s_row = scores.data() + i * block;
          const std::int64_t visible = visible_keys(q0 + i, k0, nk);  // >= 1: k0 <= q0
          float new_max = row_max[i];
          for (std::int64_t s = 0; s < visible; ++s) new_max = std::max(new_max, s_row[s]);
          // Online softmax: rescale what was accumulated under the old maximum.
          const float correction = std::exp(row_max[i] - new_max);
          float sum = row_sum[i] * correction;
          float* acc_row = acc.data() + i * D;
          for (std::int64_t d = 0; d < D; ++d) acc_row[d] *= correction;
          for (std::int64_t s = 0; s < visible; ++s) {
            s_row[s] = std::exp(s_row[s] - new_max);
            sum += s_row[s];
          }
          for (std::int64_t s = visible; s < nk; ++s) s_row[s] = 0.0f;
          row_max[i] = new_max;
          row_sum[i] = sum;
        }
        // acc += p @ v_block: [nq, D]
        gemm(false, false, nq, D, nk, 1.0f, scores.data(), block, vh + k0 * ldkv, ldkv, 1.0f,
             acc.data(), D);
      }

      for (std::int64_t i = 0; i < nq; ++i) {
        const float inv_sum = 1.0f / row_sum[i];
        float* out_row = out + (q0 + i) * ldq + h * D;
        for (std::int64_t d = 0; d < D; ++d) out_row[d] = acc[i * D + d] * inv_sum;
        lse[h * T + q0 + i] = row_max[i] + std::log(row_sum[i]);
      }
    }
  }
}

void attention_backward(const AttentionShape& shape, const float* q, const float* k, const float* v,
                        const std::int32_t* cu_seqlens, float scale, const float* out,
                        const float* lse, const float* dout, float* dq, float* dk, float* dv) {
  const std::int64_t T = shape.tokens, Hq = shape.query_heads, Hkv = shape.kv_heads;
  const std::int64_t D = shape.head_dim, block = shape.block;
  const std::int64_t group = Hq / Hkv;
  const std::int64_t ldq = Hq * D;    // row stride of q, out, dout, dq: [T, Hq, D]
  const std::int64_t ldkv = Hkv * D;  // row stride of k, v, dk, dv: [T, Hkv, D]

  // delta[h, t] = sum_d dout[t, h, d] * out[t, h, d]: [Hq, T]
  std::vector<float> delta(static_cast<std::size_t>(Hq * T));
#pragma omp parallel for
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < Hq; ++h) {
      const float* o = out + t * ldq + h * D;
      const float* g = dout + t * ldq + h * D;
      float sum = 0.0f;
      for (std::int64_t d = 0; d < D; ++d) sum += o[d] * g[d];
      delta[static_cast<std::size_t>(h * T + t)] = sum;
    }
  }

  // Pass 1: dq, one work item per (query head, query block); it owns those dq rows.
  const std::vector<BlockItem> query_blocks =
      make_blocks(Hq, shape.num_documents, cu_seqlens, block);
  const std::int64_t num_query_blocks = static_cast<std::int64_t>(query_blocks.size());
#pragma omp parallel
  {
    std::vector<float> p(static_cast<std::size_t>(block * block));   // [block, block]
    std::vector<float> dp(static_cast<std::size_t>(block * block));  // [block, block]
    std::vector<float> dq_acc(static_cast<std::size_t>(block * D));  // [block, D]

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < num_query_blocks; ++item) {
      const BlockItem& qb = query_blocks[static_cast<std::size_t>(item)];
      const std::int64_t h = qb.head, q0 = qb.begin, nq = qb.end - qb.begin;
      const float* kh = k + (h / group) * D;
      const float* vh = v + (h / group) * D;
      std::fill(dq_acc.begin(), dq_acc.end(), 0.0f);
      for (std::int64_t k0 = qb.doc_begin; k0 < qb.end; k0 += block) {
        const std::int64_t nk = std::min(k0 + block, qb.end) - k0;
        recompute_probabilities(q + h * D, ldq, kh, ldkv, lse + h * T, q0, nq, k0, nk, D, scale,
                                block, p.data());
        probabilities_to_score_grad(dout + h * D, ldq, vh, ldkv, delta.data() + h * T, q0, nq, k0,
                                    nk, D, block, dp.data(), p.data());
        // dq_acc += scale * ds @ k_block: [nq, D]
        gemm(false, false, nq, D, nk, scale, p.data(), block, kh + k0 * ldkv, ldkv, 1.0f,
             dq_acc.data(), D);
      }
      for (std::int64_t i = 0; i < nq; ++i) {
        float* dq_row = dq + (q0 + i) * ldq + h * D;
        for (std::int64_t d = 0; d < D; ++d) dq_row[d] += dq_acc[i * D + d];
      }
    }
  }

  // Pass 2: dk, dv, one work item per (kv head, key block); it owns those dk/dv rows and sums
  // over the query heads of its group and the query blocks at or after the key block.
  const std::vector<BlockItem> key_blocks =
      make_blocks(Hkv, shape.num_documents, cu_seqlens, block);
  const std::int64_t num_key_blocks = static_cast<std::int64_t>(key_blocks.size());
#pragma omp parallel
  {
    std::vector<float> p(static_cast<std::size_t>(block * block));   // [block, block]
    std::vector<float> dp(static_cast<std::size_t>(block * block));  // [block, block]
    std::vector<float> dk_acc(static_cast<std::size_t>(block * D));  // [block, D]
    std::vector<float> dv_acc(static_cast<std::size_t>(block * D));  // [block, D]

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t item = 0; item < num_key_blocks; ++item) {
      const BlockItem& kb = key_blocks[static_cast<std::size_t>(item)];
      const std::int64_t kv_head = kb.head, k0 = kb.begin, nk = kb.end - kb.begin;
      const float* kh = k + kv_head * D;
      const float* vh = v + kv_head * D;
      std::fill(dk_acc.begin(), dk_acc.end(), 0.0f);
      std::fill(dv_acc.begin(), dv_acc.end(), 0.0f);
      for (std::int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
        for (std::int64_t q0 = k0; q0 < kb.doc_end; q0 += block) {
          const std::int64_t nq = std::min(q0 + block, kb.doc_end) - q0;
          recompute_probabilities(q + h * D, ldq, kh, ldkv, lse + h * T, q0, nq, k0, nk, D, scale,
                                  block, p.data());
          // dv_acc += p^T @ dout_block: [nk, D]
          gemm(true, false, nk, D, nq, 1.0f, p.data(), block, dout + q0 * ldq + h * D, ldq, 1.0f,
               dv_acc.data(), D);
          probabilities_to_score_grad(dout + h * D, ldq, vh, ldkv, delta.data() + h * T, q0, nq, k0,
                                      nk, D, block, dp.data(), p.data());
          // dk_acc += scale * ds^T @ q_block: [nk, D]
          gemm(true, false, nk, D, nq, scale, p.data(), block, q + q0 * ldq + h * D, ldq, 1.0f,
               dk_acc.data(), D);
        }
      }
      for (std::int64_t s = 0; s < nk; ++s) {
        float* dk_row = dk + (k0 + s) * ldkv + kv_head * D;
        float* dv_row = dv + (k0 + s) * ldkv + kv_head * D;
        for (std::int64_t d = 0; d < D; ++d) {
          dk_row[d] += dk_acc[s * D + d];
          dv_row[d] += dv_acc[s * D + d];
        }
      }
    }
  }
}

}  // namespace ulysses::ops::cpu
