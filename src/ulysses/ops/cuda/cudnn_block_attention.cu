// Ring attention's block pairs on cuDNN (see cudnn_block_attention.h).
#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "ulysses/ops/cuda/common.cuh"
#include "ulysses/ops/cuda/cudnn_attention.h"
#include "ulysses/ops/cuda/cudnn_block_attention.h"
#include "ulysses/ops/elementwise.h"

namespace ulysses::ops::cuda {
namespace {

constexpr int kThreads = 256;

std::int64_t next_power_of_two(std::int64_t x) {
  std::int64_t p = 1;
  while (p < x) p *= 2;
  return p;
}

// What the entries kernel needs of the pair (host values, passed by value).
struct EntryArgs {
  bool diagonal;
  int batch, documents, first_document;
  std::int64_t q_begin, q_tokens, kv_tokens;
  std::int64_t query_rows, key_begin, key_rows;  // before
  std::int32_t q_per_token, kv_per_token;
};

// Entry i <= batch: diagonal: document first_document + i's segment inside the range (both
// sides alike); before: entry 0 the pair's one document. Past the used entries: length 0 at the
// end of the tensors.
__global__ void entries_kernel(const std::int32_t* cu, EntryArgs a, std::int32_t* seq_q,
                               std::int32_t* seq_kv, std::int32_t* q_offset,
                               std::int32_t* kv_offset, std::int32_t* stats_offset) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i > a.batch) return;
  std::int64_t q_start = a.q_tokens, q_len = 0, kv_start = a.kv_tokens, kv_len = 0;
  if (a.diagonal && i < a.documents) {
    const int doc = a.first_document + i;
    const std::int64_t lo = max(static_cast<std::int64_t>(cu[doc]), a.q_begin) - a.q_begin;
    const std::int64_t hi =
        min(static_cast<std::int64_t>(cu[doc + 1]), a.q_begin + a.q_tokens) - a.q_begin;
    q_start = kv_start = lo;
    q_len = kv_len = hi - lo;
  } else if (!a.diagonal && i == 0) {
    q_start = 0;
    q_len = a.query_rows;
    kv_start = a.key_begin;
    kv_len = a.key_rows;
  }
  if (i < a.batch) {
    seq_q[i] = static_cast<std::int32_t>(q_len);
    seq_kv[i] = static_cast<std::int32_t>(kv_len);
  }
  q_offset[i] = static_cast<std::int32_t>(q_start) * a.q_per_token;
  kv_offset[i] = static_cast<std::int32_t>(kv_start) * a.kv_per_token;
  stats_offset[i] = static_cast<std::int32_t>(q_start);
}

// out [T, H, D] f32 = o (bf16) for tokens < covered; out 0 and lse [H, T] -inf for the others.
// One thread per 8 elements (D % 8 == 0, so a pack lies in one head).
__global__ void block_out_kernel(const bf16_t* o, std::int64_t tokens, int heads, int head_dim,
                                 std::int64_t covered, float* out, float* lse) {
  const std::int64_t row = static_cast<std::int64_t>(heads) * head_dim;
  const std::int64_t packs = tokens * row / 8;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t e = 8 * i, t = e / row;
    float x[8] = {};
    if (t < covered) {
      load8(o + e, x);
    } else if (e % head_dim == 0) {
      lse[((e % row) / head_dim) * tokens + t] = -INFINITY;
    }
    store8(out + e, x);
  }
}

// dst[e] += src[e] for elements [begin, end) (multiples of 8).
__global__ void add_rows_kernel(float* dst, const bf16_t* src, std::int64_t begin,
                                std::int64_t end) {
  for (std::int64_t e =
           begin + 8 * (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
       e < end; e += 8 * static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    float a[8], b[8];
    load8(dst + e, a);
    load8(src + e, b);
#pragma unroll
    for (int j = 0; j < 8; ++j) a[j] += b[j];
    store8(dst + e, a);
  }
}

void add_rows(const Context& ctx, Tensor dst, const Tensor& src, std::int64_t first_row,
              std::int64_t rows) {
  const std::int64_t row = dst.numel() / std::max<std::int64_t>(dst.dim(0), 1);
  const std::int64_t begin = first_row * row, end = (first_row + rows) * row;
  if (end <= begin) return;
  add_rows_kernel<<<blocks_for((end - begin) / 8, kThreads), kThreads, 0, stream_of(ctx)>>>(
      ptr<float>(dst), ptr<bf16_t>(src), begin, end);
  UL_CUDA_CHECK_LAUNCH();
}

SdpaShape block_shape(const Tensor& q, const Tensor& k, const BlockPair& pair) {
  SdpaShape shape;
  shape.q_tokens = q.dim(0);
  shape.kv_tokens = k.dim(0);
  shape.query_heads = q.dim(1);
  shape.kv_heads = k.dim(1);
  shape.head_dim = q.dim(2);
  shape.causal = pair.kind == BlockPairKind::diagonal;
  shape.batch = next_power_of_two(std::max<std::int64_t>(pair.documents, 1));
  const std::int64_t q_len = shape.causal ? pair.longest : pair.query_rows;
  const std::int64_t kv_len = shape.causal ? pair.longest : pair.key_rows;
  shape.max_q = std::min(next_power_of_two(std::max<std::int64_t>(q_len, 1)), shape.q_tokens);
  shape.max_kv = std::min(next_power_of_two(std::max<std::int64_t>(kv_len, 1)), shape.kv_tokens);
  return shape;
}

// The entries on the device (the tensor keeps them alive until the call's work is queued).
struct Entries {
  Tensor arrays;
  SdpaEntries view;
};

Entries make_entries(const Context& ctx, const Tensor& cu_seqlens, std::int64_t q_begin,
                     const BlockPair& pair, const SdpaShape& shape) {
  const std::int64_t b = shape.batch;
  Entries e;
  e.arrays = Tensor::empty({2 * b + 3 * (b + 1)}, DType::i32, ctx.device);
  std::int32_t* base = ptr<std::int32_t>(e.arrays);
  std::int32_t *seq_q = base, *seq_kv = base + b, *q_off = base + 2 * b;
  std::int32_t *kv_off = q_off + (b + 1), *stats_off = kv_off + (b + 1);
  EntryArgs a;
  a.diagonal = pair.kind == BlockPairKind::diagonal;
  a.batch = static_cast<int>(b);
  a.documents = static_cast<int>(pair.documents);
  a.first_document = static_cast<int>(pair.first_document);
  a.q_begin = q_begin;
  a.q_tokens = shape.q_tokens;
  a.kv_tokens = shape.kv_tokens;
  a.query_rows = pair.query_rows;
  a.key_begin = pair.key_begin;
  a.key_rows = pair.key_rows;
  a.q_per_token = static_cast<std::int32_t>(shape.query_heads * shape.head_dim);
  a.kv_per_token = static_cast<std::int32_t>(shape.kv_heads * shape.head_dim);
  entries_kernel<<<static_cast<unsigned>((b + 1 + kThreads - 1) / kThreads), kThreads, 0,
                   stream_of(ctx)>>>(ptr<std::int32_t>(cu_seqlens), a, seq_q, seq_kv, q_off, kv_off,
                                     stats_off);
  UL_CUDA_CHECK_LAUNCH();
  e.view = {seq_q, seq_kv, q_off, kv_off, stats_off};
  return e;
}

bool usable(const BlockPair& pair, std::initializer_list<const Tensor*> tensors) {
  if (pair.kind != BlockPairKind::diagonal && pair.kind != BlockPairKind::before) return false;
  for (const Tensor* t : tensors)
    if (!aligned16(t->raw())) return false;
  return true;
}

void write_block_out(const Context& ctx, const bf16_t* o, std::int64_t covered, Tensor out,
                     Tensor lse) {
  const std::int64_t packs = out.numel() / 8;
  if (packs == 0) return;
  block_out_kernel<<<blocks_for(packs, kThreads), kThreads, 0, stream_of(ctx)>>>(
      o, out.dim(0), static_cast<int>(out.dim(1)), static_cast<int>(out.dim(2)), covered,
      ptr<float>(out), ptr<float>(lse));
  UL_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool cudnn_block_attention_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                   const Tensor& v, const Tensor& cu_seqlens, std::int64_t q_begin,
                                   const BlockPair& pair, float scale, Tensor out, Tensor lse) {
  if (q.dtype() != DType::bf16 || !usable(pair, {&q, &k, &v, &out, &lse})) return false;
  const SdpaShape shape = block_shape(q, k, pair);
  const SdpaPlan* plan = cudnn_sdpa_plan(ctx, false, shape);
  if (!plan) return false;
  const Entries entries = make_entries(ctx, cu_seqlens, q_begin, pair, shape);
  Tensor o = Tensor::empty(q.shape(), DType::bf16, ctx.device);
  cudnn_sdpa_forward(ctx, *plan, entries.view, q, k, v, scale, o, lse);
  write_block_out(ctx, ptr<bf16_t>(o), pair.query_rows, out, lse);
  return true;
}

bool cudnn_block_attention_backward(const Context& ctx, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& cu_seqlens, std::int64_t q_begin,
                                    const BlockPair& pair, float scale, const Tensor& out,
                                    const Tensor& lse, const Tensor& dout, Tensor dq, Tensor dk,
                                    Tensor dv) {
  if (q.dtype() != DType::bf16 || !usable(pair, {&q, &k, &v, &out, &lse, &dout, &dq, &dk, &dv}))
    return false;
  const SdpaShape shape = block_shape(q, k, pair);
  const SdpaPlan* plan = cudnn_sdpa_plan(ctx, true, shape);
  if (!plan) return false;
  const Entries entries = make_entries(ctx, cu_seqlens, q_begin, pair, shape);
  Tensor o = Tensor::empty(q.shape(), DType::bf16, ctx.device);
  ops::convert(ctx, out, o);
  Tensor dq_block = Tensor::empty(q.shape(), DType::bf16, ctx.device);
  Tensor dk_block = Tensor::empty(k.shape(), DType::bf16, ctx.device);
  Tensor dv_block = Tensor::empty(k.shape(), DType::bf16, ctx.device);
  cudnn_sdpa_backward(ctx, *plan, entries.view, q, k, v, scale, o, lse, dout, dq_block, dk_block,
                      dv_block);
  add_rows(ctx, dq, dq_block, 0, pair.query_rows);
  add_rows(ctx, dk, dk_block, pair.key_begin, pair.key_rows);
  add_rows(ctx, dv, dv_block, pair.key_begin, pair.key_rows);
  return true;
}

bool block_attention_masked_forward(const Context& ctx, Tensor out, Tensor lse) {
  if (out.dim(2) % 8 != 0 || !aligned16(out.raw())) return false;
  write_block_out(ctx, nullptr, 0, out, lse);
  return true;
}

}  // namespace ulysses::ops::cuda
