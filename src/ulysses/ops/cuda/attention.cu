// Flash-attention-style kernels with WMMA fragments. Each block has 4 warps and a tile of 64
// rows; warp w owns rows [16 w, 16 w + 16) of the tile, so the softmax and the elementwise
// gradient math need only warp-level synchronization; block barriers guard the shared K/V (or
// Q/dO) tiles. Scores go through shared memory (f32) because WMMA fragments have no documented
// element layout. Masking: query i may see key j iff doc_start[i] <= j <= i, which is causal
// and keeps documents apart; tiles need not align with documents.
#include <mma.h>

#include <algorithm>

#include "ulysses/ops/cuda/attention.h"
#include "ulysses/ops/cuda/common.cuh"

namespace ulysses::ops::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int kTile = 64;     // rows of a query or key tile
constexpr int kThreads = 128;  // 4 warps x 16 rows
constexpr int kScorePitch = kTile + 4;  // f32 score rows
constexpr int kProbPitch = kTile + 8;   // bf16 probability rows

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16_t, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::col_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16_t, wmma::row_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

constexpr int align128(int bytes) { return (bytes + 127) / 128 * 128; }

// Shared memory layouts (byte offsets; every region 128-byte aligned, as WMMA needs 32).
template <int D>
struct Smem {
  static constexpr int kTileBytes = align128(kTile * (D + 8) * 2);     // bf16 [64, D + 8]
  static constexpr int kScoreBytes = align128(kTile * kScorePitch * 4);  // f32 [64, 68]
  static constexpr int kProbBytes = align128(kTile * kProbPitch * 2);    // bf16 [64, 72]
  static constexpr int kAccBytes = align128(kTile * (D + 4) * 4);        // f32 [64, D + 4]
  __host__ __device__ static constexpr int tile(int i) { return i * kTileBytes; }
  // Forward: Q, K, V tiles, scores, output accumulator, probabilities.
  static constexpr int kFwdScores = 3 * kTileBytes;
  static constexpr int kFwdAcc = kFwdScores + kScoreBytes;
  static constexpr int kFwdProbs = kFwdAcc + kAccBytes;
  static constexpr int kFwdBytes = kFwdProbs + kProbBytes;
  // Backward: four tiles, scores and dP (reused as the [64, D + 4] f32 result at the end),
  // probabilities and dS, per-query statistics (dk/dv kernel only).
  static constexpr int kBwdScores = 4 * kTileBytes;
  static constexpr int kBwdDp = kBwdScores + kScoreBytes;
  static constexpr int kBwdProbs = kBwdDp + kScoreBytes;
  static constexpr int kBwdDs = kBwdProbs + kProbBytes;
  static constexpr int kBwdStats = kBwdDs + kProbBytes;
  static constexpr int kDkdvBytes = kBwdStats + 3 * kTile * 4;
  static constexpr int kDqBytes = kBwdDs + kProbBytes;
  static_assert(kAccBytes <= 2 * kScoreBytes, "result tile must fit the two score tiles");
};

// s[r, :] = g[(row0 + r) * H + h, :] for r < 64 (zeros for rows >= valid_end).
template <int D>
__device__ void load_tile(bf16_t* s, const bf16_t* g, int row0, int valid_end, int H, int h) {
  constexpr int kChunks = D / 8;
  for (int idx = threadIdx.x; idx < kTile * kChunks; idx += blockDim.x) {
    const int r = idx / kChunks, c = idx % kChunks;
    const int row = row0 + r;
    uint4 value = make_uint4(0, 0, 0, 0);
    if (row < valid_end)
      value = *reinterpret_cast<const uint4*>(g + (static_cast<std::int64_t>(row) * H + h) * D +
                                              c * 8);
    *reinterpret_cast<uint4*>(s + r * (D + 8) + c * 8) = value;
  }
}

// out[16 x 64 f32, pitch kScorePitch] = a[16 x D] b[64 x D]^T (a, b bf16 with pitch D + 8).
template <int D>
__device__ void scores_16x64(const bf16_t* a, const bf16_t* b, float* out) {
  constexpr int kPitch = D + 8;
#pragma unroll
  for (int n = 0; n < kTile / 16; ++n) {
    FragAcc acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      FragA fa;
      FragBCol fb;
      wmma::load_matrix_sync(fa, a + kk * 16, kPitch);
      wmma::load_matrix_sync(fb, b + n * 16 * kPitch + kk * 16, kPitch);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(out + n * 16, acc, kScorePitch, wmma::mem_row_major);
  }
}

// acc[n] += p[16 x 64 bf16, pitch kProbPitch] b[64 x D bf16, pitch D + 8] for the D/16 column
// blocks n of the 16 x D result.
template <int D>
__device__ void accumulate_16xD(FragAcc (&acc)[D / 16], const bf16_t* p, const bf16_t* b) {
  constexpr int kPitch = D + 8;
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    FragA fa;
    wmma::load_matrix_sync(fa, p + kk * 16, kProbPitch);
#pragma unroll
    for (int n = 0; n < D / 16; ++n) {
      FragBRow fb;
      wmma::load_matrix_sync(fb, b + kk * 16 * kPitch + n * 16, kPitch);
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

// g[(row0 + r) * H + h, :] += s[r, :] (f32, pitch D + 4) for this warp's 16 rows, rows < T.
// Lane pairs share a row: lane & 1 picks the half.
template <int D>
__device__ void add_rows_to_global(const float* s, bf16_t* g, int row0, int T, int H, int h,
                                   int warp, int lane) {
  const int r = warp * 16 + lane / 2;
  const int row = row0 + r;
  if (row >= T) return;
  bf16_t* dst = g + (static_cast<std::int64_t>(row) * H + h) * D + (lane & 1) * (D / 2);
  const float* src = s + r * (D + 4) + (lane & 1) * (D / 2);
#pragma unroll
  for (int c = 0; c < D / 2; c += 8) {
    float a[8], b[8];
    load8(dst + c, a);
#pragma unroll
    for (int i = 0; i < 8; ++i) b[i] = a[i] + src[c + i];
    store8(dst + c, b);
  }
}

// ---------------------------------------------------------------- forward
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(const bf16_t* q, const bf16_t* k, const bf16_t* v,
                             const std::int32_t* doc_start, int T, int Hq, int Hkv, float scale,
                             bf16_t* out, float* lse) {
  using S = Smem<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem + S::tile(0));
  bf16_t* sK = reinterpret_cast<bf16_t*>(smem + S::tile(1));
  bf16_t* sV = reinterpret_cast<bf16_t*>(smem + S::tile(2));
  float* sS = reinterpret_cast<float*>(smem + S::kFwdScores);
  float* sO = reinterpret_cast<float*>(smem + S::kFwdAcc);  // [64, D + 4]
  bf16_t* sP = reinterpret_cast<bf16_t*>(smem + S::kFwdProbs);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int num_blocks = (T + kTile - 1) / kTile;
  const int q0 = (num_blocks - 1 - static_cast<int>(blockIdx.x)) * kTile;  // heavy blocks first
  const int h = blockIdx.y, g = h / (Hq / Hkv);

  load_tile<D>(sQ, q, q0, T, Hq, h);
  for (int idx = threadIdx.x; idx < kTile * (D + 4); idx += blockDim.x) sO[idx] = 0.0f;

  // Lane pair (row r, half): the row's running max and sum (both lanes hold the same values).
  const int r = warp * 16 + lane / 2, half = lane & 1;
  const int i = q0 + r;
  const int start_i = i < T ? doc_start[i] : T;
  float m = -INFINITY, l = 0.0f;

  const int key_begin = doc_start[q0], key_end = min(q0 + kTile, T);
  for (int k0 = key_begin; k0 < key_end; k0 += kTile) {
    __syncthreads();
    load_tile<D>(sK, k, k0, key_end, Hkv, g);
    load_tile<D>(sV, v, k0, key_end, Hkv, g);
    __syncthreads();
    float* s_rows = sS + warp * 16 * kScorePitch;
    scores_16x64<D>(sQ + warp * 16 * (D + 8), sK, s_rows);
    __syncwarp();

    float* s_row = sS + r * kScorePitch + half * 32;
    float row_max = -INFINITY;
#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const int j = k0 + half * 32 + c;
      const bool valid = j <= i && j >= start_i;
      const float s = valid ? s_row[c] * scale : -INFINITY;
      s_row[c] = s;
      row_max = fmaxf(row_max, s);
    }
    row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
    const float m_new = fmaxf(m, row_max);
    const float alpha = m_new == -INFINITY ? 1.0f : __expf(m - m_new);
    bf16_t* p_row = sP + r * kProbPitch + half * 32;
    float sum = 0.0f;
#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const float p = m_new == -INFINITY ? 0.0f : __expf(s_row[c] - m_new);
      sum += p;
      p_row[c] = __float2bfloat16(p);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = m_new;
    float* o_row = sO + r * (D + 4) + half * (D / 2);
#pragma unroll 8
    for (int c = 0; c < D / 2; ++c) o_row[c] *= alpha;
    __syncwarp();

    // O_w += P_w V
    FragAcc acc[D / 16];
    float* o_rows = sO + warp * 16 * (D + 4);
#pragma unroll
    for (int n = 0; n < D / 16; ++n)
      wmma::load_matrix_sync(acc[n], o_rows + n * 16, D + 4, wmma::mem_row_major);
    accumulate_16xD<D>(acc, sP + warp * 16 * kProbPitch, sV);
#pragma unroll
    for (int n = 0; n < D / 16; ++n)
      wmma::store_matrix_sync(o_rows + n * 16, acc[n], D + 4, wmma::mem_row_major);
    __syncwarp();
  }

  if (i >= T) return;
  const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
  const float* o_row = sO + r * (D + 4) + half * (D / 2);
  bf16_t* dst = out + (static_cast<std::int64_t>(i) * Hq + h) * D + half * (D / 2);
#pragma unroll
  for (int c = 0; c < D / 2; c += 8) {
    float values[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) values[e] = o_row[c + e] * inv_l;
    store8(dst + c, values);
  }
  if (half == 0) lse[static_cast<std::int64_t>(h) * T + i] = m + logf(l);
}

// ---------------------------------------------------------------- backward
// delta[h, i] = sum_d dout[i, h, d] * out[i, h, d]; one warp per (i, h).
__global__ void attention_delta_kernel(const bf16_t* out, const bf16_t* dout, int T, int Hq,
                                       int D, float* delta) {
  const std::int64_t pair = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (pair >= static_cast<std::int64_t>(T) * Hq) return;
  const bf16_t* o = out + pair * D;
  const bf16_t* d = dout + pair * D;
  float sum = 0.0f;
  for (int c = lane; c < D; c += 32) sum += __bfloat162float(o[c]) * __bfloat162float(d[c]);
  sum = warp_sum(sum);
  const int i = static_cast<int>(pair / Hq), h = static_cast<int>(pair % Hq);
  if (lane == 0) delta[static_cast<std::int64_t>(h) * T + i] = sum;
}

// dk, dv for one (key block, kv head): loop over the group's query heads and the query blocks
// of the keys' documents.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(const bf16_t* q, const bf16_t* k, const bf16_t* v, const bf16_t* dout,
                          const float* lse, const float* delta, const std::int32_t* doc_start,
                          const std::int32_t* doc_end, int T, int Hq, int Hkv, float scale,
                          bf16_t* dk, bf16_t* dv) {
  using S = Smem<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* sK = reinterpret_cast<bf16_t*>(smem + S::tile(0));
  bf16_t* sV = reinterpret_cast<bf16_t*>(smem + S::tile(1));
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem + S::tile(2));
  bf16_t* sdO = reinterpret_cast<bf16_t*>(smem + S::tile(3));
  float* sS = reinterpret_cast<float*>(smem + S::kBwdScores);
  float* sdP = reinterpret_cast<float*>(smem + S::kBwdDp);
  bf16_t* sP = reinterpret_cast<bf16_t*>(smem + S::kBwdProbs);
  bf16_t* sdS = reinterpret_cast<bf16_t*>(smem + S::kBwdDs);
  float* sLse = reinterpret_cast<float*>(smem + S::kBwdStats);
  float* sDelta = sLse + kTile;
  int* sStart = reinterpret_cast<int*>(sDelta + kTile);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int k0 = blockIdx.x * kTile;
  const int g = blockIdx.y, group = Hq / Hkv;
  load_tile<D>(sK, k, k0, T, Hkv, g);
  load_tile<D>(sV, v, k0, T, Hkv, g);

  const int r = warp * 16 + lane / 2, half = lane & 1;
  const int j = k0 + r;  // this lane pair's key
  FragAcc dk_acc[D / 16], dv_acc[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) {
    wmma::fill_fragment(dk_acc[n], 0.0f);
    wmma::fill_fragment(dv_acc[n], 0.0f);
  }
  const int query_end = doc_end[min(k0 + kTile, T) - 1];
  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (int q0 = k0; q0 < query_end; q0 += kTile) {
      __syncthreads();
      load_tile<D>(sQ, q, q0, query_end, Hq, h);
      load_tile<D>(sdO, dout, q0, query_end, Hq, h);
      for (int c = threadIdx.x; c < kTile; c += blockDim.x) {
        const int i = q0 + c;
        const bool in = i < query_end;
        sLse[c] = in ? lse[static_cast<std::int64_t>(h) * T + i] : 0.0f;
        sDelta[c] = in ? delta[static_cast<std::int64_t>(h) * T + i] : 0.0f;
        sStart[c] = in ? doc_start[i] : T;  // T: masks every key
      }
      __syncthreads();
      // S^T_w = K_w Q^T and dP^T_w = V_w dO^T: [16 keys, 64 queries]
      scores_16x64<D>(sK + warp * 16 * (D + 8), sQ, sS + warp * 16 * kScorePitch);
      scores_16x64<D>(sV + warp * 16 * (D + 8), sdO, sdP + warp * 16 * kScorePitch);
      __syncwarp();
      const float* s_row = sS + r * kScorePitch + half * 32;
      const float* dp_row = sdP + r * kScorePitch + half * 32;
      bf16_t* p_row = sP + r * kProbPitch + half * 32;
      bf16_t* ds_row = sdS + r * kProbPitch + half * 32;
#pragma unroll 8
      for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c;
        const int i = q0 + col;
        const bool valid = j < T && j <= i && j >= sStart[col];
        const float p = valid ? __expf(s_row[c] * scale - sLse[col]) : 0.0f;
        const float ds = p * (dp_row[c] - sDelta[col]) * scale;
        p_row[c] = __float2bfloat16(p);
        ds_row[c] = __float2bfloat16(ds);
      }
      __syncwarp();
      // dV_w += P^T_w dO; dK_w += dS^T_w Q
      accumulate_16xD<D>(dv_acc, sP + warp * 16 * kProbPitch, sdO);
      accumulate_16xD<D>(dk_acc, sdS + warp * 16 * kProbPitch, sQ);
    }
  }
  // Results through shared memory (the f32 score tiles, free now) into the bf16 gradients.
  __syncthreads();
  float* sAcc = reinterpret_cast<float*>(smem + S::kBwdScores);  // [64, D + 4]
  float* acc_rows = sAcc + warp * 16 * (D + 4);
#pragma unroll
  for (int n = 0; n < D / 16; ++n)
    wmma::store_matrix_sync(acc_rows + n * 16, dv_acc[n], D + 4, wmma::mem_row_major);
  __syncwarp();
  add_rows_to_global<D>(sAcc, dv, k0, T, Hkv, g, warp, lane);
  __syncwarp();
#pragma unroll
  for (int n = 0; n < D / 16; ++n)
    wmma::store_matrix_sync(acc_rows + n * 16, dk_acc[n], D + 4, wmma::mem_row_major);
  __syncwarp();
  add_rows_to_global<D>(sAcc, dk, k0, T, Hkv, g, warp, lane);
}

// dq for one (query block, query head).
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(const bf16_t* q, const bf16_t* k, const bf16_t* v, const bf16_t* dout,
                        const float* lse, const float* delta, const std::int32_t* doc_start,
                        int T, int Hq, int Hkv, float scale, bf16_t* dq) {
  using S = Smem<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16_t* sQ = reinterpret_cast<bf16_t*>(smem + S::tile(0));
  bf16_t* sdO = reinterpret_cast<bf16_t*>(smem + S::tile(1));
  bf16_t* sK = reinterpret_cast<bf16_t*>(smem + S::tile(2));
  bf16_t* sV = reinterpret_cast<bf16_t*>(smem + S::tile(3));
  float* sS = reinterpret_cast<float*>(smem + S::kBwdScores);
  float* sdP = reinterpret_cast<float*>(smem + S::kBwdDp);
  bf16_t* sdS = reinterpret_cast<bf16_t*>(smem + S::kBwdDs);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int num_blocks = (T + kTile - 1) / kTile;
  const int q0 = (num_blocks - 1 - static_cast<int>(blockIdx.x)) * kTile;
  const int h = blockIdx.y, g = h / (Hq / Hkv);
  load_tile<D>(sQ, q, q0, T, Hq, h);
  load_tile<D>(sdO, dout, q0, T, Hq, h);

  const int r = warp * 16 + lane / 2, half = lane & 1;
  const int i = q0 + r;
  const bool row_valid = i < T;
  const int start_i = row_valid ? doc_start[i] : T;
  const float lse_i = row_valid ? lse[static_cast<std::int64_t>(h) * T + i] : 0.0f;
  const float delta_i = row_valid ? delta[static_cast<std::int64_t>(h) * T + i] : 0.0f;
  FragAcc dq_acc[D / 16];
#pragma unroll
  for (int n = 0; n < D / 16; ++n) wmma::fill_fragment(dq_acc[n], 0.0f);

  const int key_begin = doc_start[q0], key_end = min(q0 + kTile, T);
  for (int k0 = key_begin; k0 < key_end; k0 += kTile) {
    __syncthreads();
    load_tile<D>(sK, k, k0, key_end, Hkv, g);
    load_tile<D>(sV, v, k0, key_end, Hkv, g);
    __syncthreads();
    scores_16x64<D>(sQ + warp * 16 * (D + 8), sK, sS + warp * 16 * kScorePitch);
    scores_16x64<D>(sdO + warp * 16 * (D + 8), sV, sdP + warp * 16 * kScorePitch);
    __syncwarp();
    const float* s_row = sS + r * kScorePitch + half * 32;
    const float* dp_row = sdP + r * kScorePitch + half * 32;
    bf16_t* ds_row = sdS + r * kProbPitch + half * 32;
#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const int j = k0 + half * 32 + c;
      const bool valid = row_valid && j <= i && j >= start_i;
      const float p = valid ? __expf(s_row[c] * scale - lse_i) : 0.0f;
      ds_row[c] = __float2bfloat16(p * (dp_row[c] - delta_i) * scale);
    }
    __syncwarp();
    accumulate_16xD<D>(dq_acc, sdS + warp * 16 * kProbPitch, sK);  // dQ_w += dS_w K
  }
  __syncthreads();
  float* sAcc = reinterpret_cast<float*>(smem + S::kBwdScores);
  float* acc_rows = sAcc + warp * 16 * (D + 4);
#pragma unroll
  for (int n = 0; n < D / 16; ++n)
    wmma::store_matrix_sync(acc_rows + n * 16, dq_acc[n], D + 4, wmma::mem_row_major);
  __syncwarp();
  add_rows_to_global<D>(sAcc, dq, q0, T, Hq, h, warp, lane);
}

// start[i], end[i]: bounds of the document holding token i.
__global__ void document_bounds_kernel(const std::int32_t* cu_seqlens, int num_documents, int T,
                                       std::int32_t* start, std::int32_t* end) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= T) return;
  // Largest d with cu_seqlens[d] <= i (then cu_seqlens[d + 1] > i).
  int lo = 0, hi = num_documents;  // answer in [lo, hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (cu_seqlens[mid] <= i) lo = mid; else hi = mid;
  }
  start[i] = cu_seqlens[lo];
  end[i] = cu_seqlens[lo + 1];
}

struct DocumentBounds {
  Tensor start, end;  // [T] i32
};

DocumentBounds document_bounds(const Context& ctx, const Tensor& cu_seqlens, int T) {
  DocumentBounds b{Tensor::empty({T}, DType::i32, ctx.device),
                   Tensor::empty({T}, DType::i32, ctx.device)};
  const int n = static_cast<int>(cu_seqlens.numel()) - 1;
  document_bounds_kernel<<<(T + 255) / 256, 256, 0, stream_of(ctx)>>>(
      ptr<std::int32_t>(cu_seqlens), n, T, ptr<std::int32_t>(b.start), ptr<std::int32_t>(b.end));
  UL_CUDA_CHECK_LAUNCH();
  return b;
}

template <typename Kernel>
void allow_shared_memory(Kernel kernel, int bytes) {
  UL_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

template <int D>
void forward_impl(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                  const Tensor& cu_seqlens, float scale, Tensor out, Tensor lse) {
  const int T = static_cast<int>(q.dim(0)), Hq = static_cast<int>(q.dim(1));
  const int Hkv = static_cast<int>(k.dim(1));
  if (T == 0) return;
  const DocumentBounds bounds = document_bounds(ctx, cu_seqlens, T);
  constexpr int kBytes = Smem<D>::kFwdBytes;
  allow_shared_memory(attention_forward_kernel<D>, kBytes);
  const dim3 grid((T + kTile - 1) / kTile, Hq);
  attention_forward_kernel<D><<<grid, kThreads, kBytes, stream_of(ctx)>>>(
      ptr<bf16_t>(q), ptr<bf16_t>(k), ptr<bf16_t>(v), ptr<std::int32_t>(bounds.start), T, Hq,
      Hkv, scale, ptr<bf16_t>(out), ptr<float>(lse));
  UL_CUDA_CHECK_LAUNCH();
}

template <int D>
void backward_impl(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                   const Tensor& cu_seqlens, float scale, const Tensor& out, const Tensor& lse,
                   const Tensor& dout, Tensor dq, Tensor dk, Tensor dv) {
  const int T = static_cast<int>(q.dim(0)), Hq = static_cast<int>(q.dim(1));
  const int Hkv = static_cast<int>(k.dim(1));
  if (T == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  const DocumentBounds bounds = document_bounds(ctx, cu_seqlens, T);
  Tensor delta = Tensor::empty({Hq, T}, DType::f32, ctx.device);
  const std::int64_t warps = static_cast<std::int64_t>(T) * Hq;
  attention_delta_kernel<<<static_cast<unsigned>((warps * 32 + 255) / 256), 256, 0, stream>>>(
      ptr<bf16_t>(out), ptr<bf16_t>(dout), T, Hq, D, ptr<float>(delta));
  UL_CUDA_CHECK_LAUNCH();

  const int blocks = (T + kTile - 1) / kTile;
  constexpr int kDkdvBytes = Smem<D>::kDkdvBytes, kDqBytes = Smem<D>::kDqBytes;
  allow_shared_memory(attention_dkdv_kernel<D>, kDkdvBytes);
  attention_dkdv_kernel<D><<<dim3(blocks, Hkv), kThreads, kDkdvBytes, stream>>>(
      ptr<bf16_t>(q), ptr<bf16_t>(k), ptr<bf16_t>(v), ptr<bf16_t>(dout), ptr<float>(lse),
      ptr<float>(delta), ptr<std::int32_t>(bounds.start), ptr<std::int32_t>(bounds.end), T, Hq,
      Hkv, scale, ptr<bf16_t>(dk), ptr<bf16_t>(dv));
  UL_CUDA_CHECK_LAUNCH();
  allow_shared_memory(attention_dq_kernel<D>, kDqBytes);
  attention_dq_kernel<D><<<dim3(blocks, Hq), kThreads, kDqBytes, stream>>>(
      ptr<bf16_t>(q), ptr<bf16_t>(k), ptr<bf16_t>(v), ptr<bf16_t>(dout), ptr<float>(lse),
      ptr<float>(delta), ptr<std::int32_t>(bounds.start), T, Hq, Hkv, scale, ptr<bf16_t>(dq));
  UL_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_supports_head_dim(std::int64_t head_dim) {
  return head_dim == 64 || head_dim == 128;
}

void attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       const Tensor& cu_seqlens, float scale, Tensor out, Tensor lse) {
  if (q.dim(2) == 64) return forward_impl<64>(ctx, q, k, v, cu_seqlens, scale, out, lse);
  if (q.dim(2) == 128) return forward_impl<128>(ctx, q, k, v, cu_seqlens, scale, out, lse);
  UL_FAIL("attention: no CUDA kernel for head_dim ", q.dim(2), " (supported: 64, 128)");
}

void attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& cu_seqlens, float scale, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, Tensor dq, Tensor dk, Tensor dv) {
  if (q.dim(2) == 64)
    return backward_impl<64>(ctx, q, k, v, cu_seqlens, scale, out, lse, dout, dq, dk, dv);
  if (q.dim(2) == 128)
    return backward_impl<128>(ctx, q, k, v, cu_seqlens, scale, out, lse, dout, dq, dk, dv);
  UL_FAIL("attention: no CUDA kernel for head_dim ", q.dim(2), " (supported: 64, 128)");
}

}  // namespace ulysses::ops::cuda
