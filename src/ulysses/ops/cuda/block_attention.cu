// Block attention with statistics and its merge on CUDA: a plain, deterministic reference
// kernel (one warp per query row and head in forward and for dq, one warp per key row and kv
// head for dk/dv; fp32 arithmetic; no atomics), for ring attention's any-placement block pairs.
// Each lane holds head dimensions lane, lane + 32, ... (head_dim <= 256); a row's visible keys
// (or a key's visible queries) are found by a binary search of the document boundaries.
// Not tuned: the throughput of a flash-style tiled kernel is future work.
#include <cmath>

#include "ulysses/ops/cuda/block_attention.h"
#include "ulysses/ops/cuda/common.cuh"

namespace ulysses::ops::cuda {
namespace {

constexpr int kWarps = 4;    // warps per thread block
constexpr int kPerLane = 8;  // head dimensions per lane: head_dim <= 32 * kPerLane
constexpr float kMinusInf = -INFINITY;

struct Placement {
  std::int64_t q_tokens, k_tokens, q_begin, k_begin;
  int q_heads, kv_heads, head_dim, num_documents;
  float scale;
};

// The document holding global token t: the largest j < n with cu[j] <= t.
__device__ int document_of(const std::int32_t* cu, int n, std::int64_t t) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Lane's part of row x (head_dim elements): x[lane + 32 j].
template <typename T>
__device__ void load_row(const T* x, int head_dim, float (&out)[kPerLane]) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int d = lane + 32 * j;
    out[j] = d < head_dim ? to_float(x[d]) : 0.0f;
  }
}

__device__ float row_dot(const float (&a)[kPerLane], const float (&b)[kPerLane]) {
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) s += a[j] * b[j];
  return warp_sum(s);
}

__device__ void store_add_row(float* x, int head_dim, const float (&in)[kPerLane], bool add) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int d = lane + 32 * j;
    if (d < head_dim) x[d] = add ? x[d] + in[j] : in[j];
  }
}

// One warp per (query row i, head h): online softmax over the visible keys of the block.
template <typename T>
__global__ void forward_kernel(Placement p, const T* q, const T* k, const T* v,
                               const std::int32_t* cu, float* out, float* lse) {
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (item >= p.q_tokens * p.q_heads) return;
  const std::int64_t i = item / p.q_heads;
  const int h = static_cast<int>(item % p.q_heads), kv = h / (p.q_heads / p.kv_heads);
  const std::int64_t qg = p.q_begin + i;
  const int doc = document_of(cu, p.num_documents, qg);
  const std::int64_t lo = max(static_cast<std::int64_t>(cu[doc]), p.k_begin);
  const std::int64_t hi = min(qg + 1, p.k_begin + p.k_tokens);
  float qv[kPerLane], acc[kPerLane] = {}, kr[kPerLane], vr[kPerLane];
  load_row(q + (i * p.q_heads + h) * p.head_dim, p.head_dim, qv);
  float m = kMinusInf, l = 0.0f;
  for (std::int64_t kg = lo; kg < hi; ++kg) {
    const std::int64_t s = kg - p.k_begin;
    load_row(k + (s * p.kv_heads + kv) * p.head_dim, p.head_dim, kr);
    load_row(v + (s * p.kv_heads + kv) * p.head_dim, p.head_dim, vr);
    const float score = p.scale * row_dot(qv, kr);
    const float m_new = fmaxf(m, score);
    const float correction = expf(m - m_new), weight = expf(score - m_new);
    l = l * correction + weight;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) acc[j] = acc[j] * correction + weight * vr[j];
    m = m_new;
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) acc[j] *= inv;
  store_add_row(out + (i * p.q_heads + h) * p.head_dim, p.head_dim, acc, false);
  if (threadIdx.x % 32 == 0) lse[h * p.q_tokens + i] = l > 0.0f ? m + logf(l) : kMinusInf;
}

// One warp per (query row i, head h): delta = dout . out, and dq += this block's share.
template <typename T>
__global__ void dq_kernel(Placement p, const T* q, const T* k, const T* v, const std::int32_t* cu,
                          const float* out, const float* lse, const T* dout, float* delta,
                          float* dq) {
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (item >= p.q_tokens * p.q_heads) return;
  const std::int64_t i = item / p.q_heads;
  const int h = static_cast<int>(item % p.q_heads), kv = h / (p.q_heads / p.kv_heads);
  const std::int64_t row = (i * p.q_heads + h) * p.head_dim;
  float qv[kPerLane], dov[kPerLane], ov[kPerLane], kr[kPerLane], vr[kPerLane];
  float acc[kPerLane] = {};
  load_row(q + row, p.head_dim, qv);
  load_row(dout + row, p.head_dim, dov);
  load_row(out + row, p.head_dim, ov);
  const float row_delta = row_dot(dov, ov);
  if (threadIdx.x % 32 == 0) delta[h * p.q_tokens + i] = row_delta;
  const float row_lse = lse[h * p.q_tokens + i];
  if (row_lse == kMinusInf) return;
  const std::int64_t qg = p.q_begin + i;
  const int doc = document_of(cu, p.num_documents, qg);
  const std::int64_t lo = max(static_cast<std::int64_t>(cu[doc]), p.k_begin);
  const std::int64_t hi = min(qg + 1, p.k_begin + p.k_tokens);
  for (std::int64_t kg = lo; kg < hi; ++kg) {
    const std::int64_t s = kg - p.k_begin;
    load_row(k + (s * p.kv_heads + kv) * p.head_dim, p.head_dim, kr);
    load_row(v + (s * p.kv_heads + kv) * p.head_dim, p.head_dim, vr);
    const float prob = expf(p.scale * row_dot(qv, kr) - row_lse);
    const float ds = prob * (row_dot(dov, vr) - row_delta);
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) acc[j] += p.scale * ds * kr[j];
  }
  if (hi > lo) store_add_row(dq + row, p.head_dim, acc, true);
}

// One warp per (key row s, kv head): dk, dv += this block's share, over the query heads of the
// group and the queries that see the key.
template <typename T>
__global__ void dkv_kernel(Placement p, const T* q, const T* k, const T* v, const std::int32_t* cu,
                           const float* lse, const T* dout, const float* delta, float* dk,
                           float* dv) {
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (item >= p.k_tokens * p.kv_heads) return;
  const std::int64_t s = item / p.kv_heads;
  const int kv = static_cast<int>(item % p.kv_heads), group = p.q_heads / p.kv_heads;
  const std::int64_t kg = p.k_begin + s;
  const int doc = document_of(cu, p.num_documents, kg);
  const std::int64_t lo = max(kg, p.q_begin);
  const std::int64_t hi = min(static_cast<std::int64_t>(cu[doc + 1]), p.q_begin + p.q_tokens);
  if (lo >= hi) return;
  const std::int64_t key_row = (s * p.kv_heads + kv) * p.head_dim;
  float kr[kPerLane], vr[kPerLane], qv[kPerLane], dov[kPerLane];
  float dk_acc[kPerLane] = {}, dv_acc[kPerLane] = {};
  load_row(k + key_row, p.head_dim, kr);
  load_row(v + key_row, p.head_dim, vr);
  for (int h = kv * group; h < (kv + 1) * group; ++h) {
    for (std::int64_t qg = lo; qg < hi; ++qg) {
      const std::int64_t i = qg - p.q_begin;
      const float row_lse = lse[h * p.q_tokens + i];
      if (row_lse == kMinusInf) continue;
      const std::int64_t row = (i * p.q_heads + h) * p.head_dim;
      load_row(q + row, p.head_dim, qv);
      load_row(dout + row, p.head_dim, dov);
      const float prob = expf(p.scale * row_dot(qv, kr) - row_lse);
      const float ds = prob * (row_dot(dov, vr) - delta[h * p.q_tokens + i]);
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        dv_acc[j] += prob * dov[j];
        dk_acc[j] += p.scale * ds * qv[j];
      }
    }
  }
  store_add_row(dk + key_row, p.head_dim, dk_acc, true);
  store_add_row(dv + key_row, p.head_dim, dv_acc, true);
}

// One thread per (token t, head h).
__global__ void merge_kernel(std::int64_t tokens, int heads, int head_dim, float* out, float* lse,
                             const float* block_out, const float* block_lse) {
  const std::int64_t item = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (item >= tokens * heads) return;
  const std::int64_t t = item / heads;
  const int h = static_cast<int>(item % heads);
  const float b = block_lse[h * tokens + t];
  if (b == kMinusInf) return;
  float* o = out + item * head_dim;
  const float* bo = block_out + item * head_dim;
  const float a = lse[h * tokens + t];
  if (a == kMinusInf) {
    for (int d = 0; d < head_dim; ++d) o[d] = bo[d];
    lse[h * tokens + t] = b;
    return;
  }
  const float m = fmaxf(a, b);
  const float merged = m + logf(expf(a - m) + expf(b - m));
  const float wa = expf(a - merged), wb = expf(b - merged);
  for (int d = 0; d < head_dim; ++d) o[d] = wa * o[d] + wb * bo[d];
  lse[h * tokens + t] = merged;
}

Placement placement(const Tensor& q, const Tensor& k, const Tensor& cu_seqlens,
                    std::int64_t q_begin, std::int64_t k_begin, float scale) {
  UL_CHECK(q.dim(2) <= 32 * kPerLane, "attention_block: head_dim ", q.dim(2),
           " exceeds the CUDA kernel's ", 32 * kPerLane);
  return {q.dim(0),
          k.dim(0),
          q_begin,
          k_begin,
          static_cast<int>(q.dim(1)),
          static_cast<int>(k.dim(1)),
          static_cast<int>(q.dim(2)),
          static_cast<int>(cu_seqlens.dim(0) - 1),
          scale};
}

unsigned warp_blocks(std::int64_t items) {
  return static_cast<unsigned>((items + kWarps - 1) / kWarps);
}

}  // namespace

void block_attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& cu_seqlens, std::int64_t q_begin, std::int64_t k_begin,
                             float scale, Tensor out, Tensor lse) {
  const Placement p = placement(q, k, cu_seqlens, q_begin, k_begin, scale);
  const std::int64_t items = p.q_tokens * p.q_heads;
  if (items == 0) return;
  dispatch_float_type(q.dtype(), "attention_block_forward", [&]<typename T>() {
    forward_kernel<T><<<warp_blocks(items), 32 * kWarps, 0, stream_of(ctx)>>>(
        p, ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<std::int32_t>(cu_seqlens), ptr<float>(out),
        ptr<float>(lse));
    UL_CUDA_CHECK_LAUNCH();
  });
}

void block_attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& cu_seqlens, std::int64_t q_begin, std::int64_t k_begin,
                              float scale, const Tensor& out, const Tensor& lse, const Tensor& dout,
                              Tensor dq, Tensor dk, Tensor dv) {
  const Placement p = placement(q, k, cu_seqlens, q_begin, k_begin, scale);
  const std::int64_t query_items = p.q_tokens * p.q_heads, key_items = p.k_tokens * p.kv_heads;
  if (query_items == 0) return;
  Tensor delta = Tensor::empty({p.q_heads, p.q_tokens}, DType::f32, q.device());  // [Hq, Tq]
  dispatch_float_type(q.dtype(), "attention_block_backward", [&]<typename T>() {
    dq_kernel<T><<<warp_blocks(query_items), 32 * kWarps, 0, stream_of(ctx)>>>(
        p, ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<std::int32_t>(cu_seqlens), ptr<float>(out),
        ptr<float>(lse), ptr<T>(dout), ptr<float>(delta), ptr<float>(dq));
    UL_CUDA_CHECK_LAUNCH();
    if (key_items == 0) return;
    dkv_kernel<T><<<warp_blocks(key_items), 32 * kWarps, 0, stream_of(ctx)>>>(
        p, ptr<T>(q), ptr<T>(k), ptr<T>(v), ptr<std::int32_t>(cu_seqlens), ptr<float>(lse),
        ptr<T>(dout), ptr<float>(delta), ptr<float>(dk), ptr<float>(dv));
    UL_CUDA_CHECK_LAUNCH();
  });
}

void attention_merge(const Context& ctx, Tensor out, Tensor lse, const Tensor& block_out,
                     const Tensor& block_lse) {
  const std::int64_t tokens = out.dim(0), items = tokens * out.dim(1);
  if (items == 0) return;
  constexpr int kThreads = 256;
  merge_kernel<<<static_cast<unsigned>((items + kThreads - 1) / kThreads), kThreads, 0,
                 stream_of(ctx)>>>(tokens, static_cast<int>(out.dim(1)),
                                   static_cast<int>(out.dim(2)), ptr<float>(out), ptr<float>(lse),
                                   ptr<float>(block_out), ptr<float>(block_lse));
  UL_CUDA_CHECK_LAUNCH();
}

}  // namespace ulysses::ops::cuda
