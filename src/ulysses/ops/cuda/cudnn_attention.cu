// cuDNN fused attention through the backend graph API (see cudnn_attention.h for the contract).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>

#include "ulysses/core/cuda_resources.h"
#include "ulysses/core/log.h"
#include "ulysses/ops/cuda/cudnn_attention.h"
#include "ulysses/ops/cuda/cudnn_graph.h"
#include "ulysses/ops/elementwise.h"

namespace ulysses::ops::cuda {

using namespace cudnn;  // the library, descriptors and graph builder (cudnn_graph.h)

namespace {

// Fixed unique ids of the tensors bound at execution.
enum Uid : std::int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kStats,
  kScale,
  kSeqQ,
  kSeqKv,
  kQOffset,
  kKvOffset,
  kStatsOffset,
  kNegInf,
  kDO,
  kDQ,
  kDK,
  kDV,
  kDotSum,
  kDQAccum,
  kOne,
};

// The shape a plan is built for: the graph's dimensions (kv_tokens only enters the offsets).
struct PlanKey {
  bool backward, causal, ragged;
  std::int64_t q_tokens, query_heads, kv_heads, head_dim, batch, max_q, max_kv;
  auto tie() const {
    return std::tie(backward, causal, ragged, q_tokens, query_heads, kv_heads, head_dim, batch,
                    max_q, max_kv);
  }
  bool operator<(const PlanKey& o) const { return tie() < o.tie(); }
};

std::int64_t next_power_of_two(std::int64_t x) {
  std::int64_t p = 1;
  while (p < x) p *= 2;
  return p;
}

// Scores and statistics of the graph: dims [b, h, sq, skv] and [b, h, sq, 1].
struct Shapes {
  std::int64_t b, hq, hkv, sq, skv, d, Tq;
  bool causal;
  bool ragged = true;
  Dims scores() const { return {b, hq, sq, skv}; }
  Dims scores_strides() const { return {hq * sq * skv, sq * skv, skv, 1}; }
  // The scores seen transposed: [b, h, skv, sq].
  Dims scores_t() const { return {b, hq, skv, sq}; }
  Dims scores_t_strides() const { return {hq * sq * skv, sq * skv, 1, skv}; }
  Dims row() const { return {b, hq, sq, 1}; }
  Dims row_strides() const { return {hq * sq, sq, 1, 1}; }
  // Token-major [T, h, d] data as [b, h, s, d] (ragged offsets give each entry's start).
  Dims thd(std::int64_t h, std::int64_t s) const { return {b, h, s, d}; }
  Dims thd_strides(std::int64_t h, std::int64_t s) const { return {s * h * d, d, h * d, 1}; }
  // The same data seen transposed: [b, h, d, s].
  Dims thd_t(std::int64_t h, std::int64_t s) const { return {b, h, d, s}; }
  Dims thd_t_strides(std::int64_t h, std::int64_t s) const { return {s * h * d, d, 1, h * d}; }
  // lse: [Hq, Tq] as [b, h, sq, 1] with entry offsets.
  Dims stats_strides() const { return {hq * Tq, Tq, 1, 1}; }
};

// The tensors both graphs share.
struct Common {
  GraphTensor seq_q, seq_kv, q_offset, kv_offset, stats_offset, scale, neg_inf;
  bool is_ragged = true;  // false: one dense entry (no offsets, lengths or padding mask)
  const GraphTensor* ragged(const GraphTensor& t) const { return is_ragged ? &t : nullptr; }
};

Common common_tensors(GraphBuilder& g, const Shapes& sh) {
  Common c;
  c.seq_q = g.tensor(kSeqQ, CUDNN_DATA_INT32, {sh.b, 1, 1, 1}, {1, 1, 1, 1});
  c.seq_kv = g.tensor(kSeqKv, CUDNN_DATA_INT32, {sh.b, 1, 1, 1}, {1, 1, 1, 1});
  c.q_offset = g.tensor(kQOffset, CUDNN_DATA_INT32, {sh.b + 1, 1, 1, 1}, {1, 1, 1, 1});
  c.kv_offset = g.tensor(kKvOffset, CUDNN_DATA_INT32, {sh.b + 1, 1, 1, 1}, {1, 1, 1, 1});
  c.stats_offset = g.tensor(kStatsOffset, CUDNN_DATA_INT32, {sh.b + 1, 1, 1, 1}, {1, 1, 1, 1});
  c.scale = g.scalar(kScale, CUDNN_DATA_FLOAT);
  c.neg_inf = g.scalar(kNegInf, CUDNN_DATA_FLOAT);
  c.is_ragged = sh.ragged;
  return c;
}

// scores -> scores with -inf outside each entry's valid rows/columns, then above the
// diagonal (query i sees keys j <= i of its entry).
GraphTensor masks(GraphBuilder& g, const Common& c, const GraphTensor& scores, bool padding,
                  bool causal) {
  GraphTensor s = scores;
  if (padding) {
    const GraphTensor row = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr,
                                        CUDNN_DATA_INT32, CUDNN_DATA_INT32, 2);
    const GraphTensor col = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr,
                                        CUDNN_DATA_INT32, CUDNN_DATA_INT32, 3);
    const GraphTensor row_ok = g.pointwise(CUDNN_POINTWISE_CMP_LT, row, &c.seq_q, nullptr,
                                           CUDNN_DATA_BOOLEAN, CUDNN_DATA_BOOLEAN);
    const GraphTensor col_ok = g.pointwise(CUDNN_POINTWISE_CMP_LT, col, &c.seq_kv, nullptr,
                                           CUDNN_DATA_BOOLEAN, CUDNN_DATA_BOOLEAN);
    const GraphTensor ok = g.pointwise(CUDNN_POINTWISE_LOGICAL_AND, row_ok, &col_ok, nullptr,
                                       CUDNN_DATA_BOOLEAN, CUDNN_DATA_BOOLEAN);
    s = g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, s, &c.neg_inf, &ok, CUDNN_DATA_FLOAT);
  }
  if (causal) {
    const GraphTensor row = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr,
                                        CUDNN_DATA_INT32, CUDNN_DATA_FLOAT, 2);
    const GraphTensor col = g.pointwise(CUDNN_POINTWISE_GEN_INDEX, s, nullptr, nullptr,
                                        CUDNN_DATA_INT32, CUDNN_DATA_FLOAT, 3);
    const GraphTensor keep = g.pointwise(CUDNN_POINTWISE_CMP_GE, row, &col, nullptr,
                                         CUDNN_DATA_BOOLEAN, CUDNN_DATA_BOOLEAN);
    s = g.pointwise(CUDNN_POINTWISE_BINARY_SELECT, s, &c.neg_inf, &keep, CUDNN_DATA_FLOAT);
  }
  return s;
}

// The forward graph: q, k, v -> out and the statistics.
void forward_graph(GraphBuilder& g, const Shapes& sh) {
  const Common c = common_tensors(g, sh);
  const std::int64_t sq = sh.sq, skv = sh.skv;
  const GraphTensor q = g.tensor(kQ, CUDNN_DATA_BFLOAT16, sh.thd(sh.hq, sq),
                                 sh.thd_strides(sh.hq, sq), false, c.ragged(c.q_offset));
  const GraphTensor k_t = g.tensor(kK, CUDNN_DATA_BFLOAT16, sh.thd_t(sh.hkv, skv),
                                   sh.thd_t_strides(sh.hkv, skv), false, c.ragged(c.kv_offset));
  const GraphTensor v = g.tensor(kV, CUDNN_DATA_BFLOAT16, sh.thd(sh.hkv, skv),
                                 sh.thd_strides(sh.hkv, skv), false, c.ragged(c.kv_offset));
  const GraphTensor o = g.tensor(kO, CUDNN_DATA_BFLOAT16, sh.thd(sh.hq, sq),
                                 sh.thd_strides(sh.hq, sq), false, c.ragged(c.q_offset));
  const GraphTensor stats = g.tensor(kStats, CUDNN_DATA_FLOAT, sh.row(), sh.stats_strides(), false,
                                     c.ragged(c.stats_offset));

  const GraphTensor s = g.virtual_tensor(CUDNN_DATA_FLOAT, sh.scores(), sh.scores_strides());
  g.matmul(q, k_t, s, c.ragged(c.seq_q), c.ragged(c.seq_kv), nullptr, /*zero_padding=*/true);
  GraphTensor x = g.pointwise(CUDNN_POINTWISE_MUL, s, &c.scale, nullptr, CUDNN_DATA_FLOAT);
  x = masks(g, c, x, /*padding=*/c.is_ragged, sh.causal);
  // Softmax with statistics: m = max, e = exp(x - m), z = sum e, lse = m + log z, p = e / z.
  const GraphTensor m = g.virtual_tensor(CUDNN_DATA_FLOAT, sh.row(), sh.row_strides());
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, x, m);
  const GraphTensor centered = g.pointwise(CUDNN_POINTWISE_SUB, x, &m, nullptr, CUDNN_DATA_FLOAT);
  const GraphTensor e =
      g.pointwise(CUDNN_POINTWISE_EXP, centered, nullptr, nullptr, CUDNN_DATA_FLOAT);
  const GraphTensor z = g.virtual_tensor(CUDNN_DATA_FLOAT, sh.row(), sh.row_strides());
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, e, z);
  const GraphTensor log_z = g.pointwise(CUDNN_POINTWISE_LOG, z, nullptr, nullptr, CUDNN_DATA_FLOAT);
  g.pointwise(CUDNN_POINTWISE_ADD, m, &log_z, nullptr, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, -1,
              &stats);
  const GraphTensor p = g.pointwise(CUDNN_POINTWISE_DIV, e, &z, nullptr, CUDNN_DATA_BFLOAT16);
  g.matmul(p, v, o, c.ragged(c.seq_q), nullptr, c.ragged(c.seq_kv));
}

// The backward graph: dq, dk, dv from q, k, v, out, dout and the statistics.
void backward_graph(GraphBuilder& g, const Shapes& sh) {
  const Common c = common_tensors(g, sh);
  const std::int64_t sq = sh.sq, skv = sh.skv;
  auto q_like = [&](std::int64_t uid, cudnnDataType_t type) {
    return g.tensor(uid, type, sh.thd(sh.hq, sq), sh.thd_strides(sh.hq, sq), false,
                    c.ragged(c.q_offset));
  };
  auto kv_like = [&](std::int64_t uid) {
    return g.tensor(uid, CUDNN_DATA_BFLOAT16, sh.thd(sh.hkv, skv), sh.thd_strides(sh.hkv, skv),
                    false, c.ragged(c.kv_offset));
  };
  const GraphTensor q = q_like(kQ, CUDNN_DATA_BFLOAT16);
  const GraphTensor k_t = g.tensor(kK, CUDNN_DATA_BFLOAT16, sh.thd_t(sh.hkv, skv),
                                   sh.thd_t_strides(sh.hkv, skv), false, c.ragged(c.kv_offset));
  const GraphTensor v_t = g.tensor(kV, CUDNN_DATA_BFLOAT16, sh.thd_t(sh.hkv, skv),
                                   sh.thd_t_strides(sh.hkv, skv), false, c.ragged(c.kv_offset));
  const GraphTensor o = q_like(kO, CUDNN_DATA_BFLOAT16);
  const GraphTensor d_o = q_like(kDO, CUDNN_DATA_BFLOAT16);
  const GraphTensor stats = g.tensor(kStats, CUDNN_DATA_FLOAT, sh.row(), sh.stats_strides(), false,
                                     c.ragged(c.stats_offset));
  const GraphTensor d_q = q_like(kDQ, CUDNN_DATA_BFLOAT16);
  const GraphTensor d_k = kv_like(kDK);
  const GraphTensor d_v = kv_like(kDV);
  const GraphTensor one = g.scalar(kOne, CUDNN_DATA_FLOAT);
  // Workspaces we own: rowsum(dO * O) like lse, and dQ accumulated in f32 like dQ.
  const GraphTensor dot_sum = g.tensor(kDotSum, CUDNN_DATA_FLOAT, sh.row(), sh.stats_strides(),
                                       false, c.ragged(c.stats_offset));
  const GraphTensor dq_accum = q_like(kDQAccum, CUDNN_DATA_FLOAT);

  // delta = rowsum(dO * O)
  const GraphTensor prod = g.pointwise(CUDNN_POINTWISE_MUL, d_o, &o, nullptr, CUDNN_DATA_FLOAT);
  const GraphTensor rowsum = g.virtual_tensor(CUDNN_DATA_FLOAT, sh.row(), sh.row_strides());
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, prod, rowsum);
  g.pointwise(CUDNN_POINTWISE_MUL, rowsum, &one, nullptr, CUDNN_DATA_FLOAT, CUDNN_DATA_FLOAT, -1,
              &dot_sum);

  // p = exp(scale * q.k - lse), masked
  const GraphTensor s = g.virtual_tensor(CUDNN_DATA_FLOAT, sh.scores(), sh.scores_strides());
  g.matmul(q, k_t, s, c.ragged(c.seq_q), c.ragged(c.seq_kv), nullptr);
  GraphTensor x = g.pointwise(CUDNN_POINTWISE_MUL, s, &c.scale, nullptr, CUDNN_DATA_FLOAT);
  x = masks(g, c, x, /*padding=*/c.is_ragged, /*causal=*/false);
  x = g.pointwise(CUDNN_POINTWISE_SUB, x, &stats, nullptr, CUDNN_DATA_FLOAT);
  x = masks(g, c, x, /*padding=*/false, sh.causal);
  const GraphTensor p = g.pointwise(CUDNN_POINTWISE_EXP, x, nullptr, nullptr, CUDNN_DATA_FLOAT);

  // Per query head, before the sum over the heads sharing a kv head: [b, hq, skv, d].
  const Dims full_head = {sh.b, sh.hq, skv, sh.d};
  const Dims full_head_strides = {sh.hq * skv * sh.d, skv * sh.d, sh.d, 1};
  // dV = p^T dO (summed over the query heads of each kv head)
  const GraphTensor p_t =
      g.virtual_tensor(CUDNN_DATA_BFLOAT16, sh.scores_t(), sh.scores_t_strides());
  g.reshape(p, p_t);
  if (sh.hq == sh.hkv) {
    g.matmul(p_t, d_o, d_v, c.ragged(c.seq_kv), nullptr, c.ragged(c.seq_q));
  } else {
    const GraphTensor d_v_full =
        g.virtual_tensor(CUDNN_DATA_BFLOAT16, full_head, full_head_strides);
    g.matmul(p_t, d_o, d_v_full, c.ragged(c.seq_kv), nullptr, c.ragged(c.seq_q));
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, d_v_full, d_v);
  }
  // dS = scale * p * (dO.v^T - delta)
  const GraphTensor d_p = g.virtual_tensor(CUDNN_DATA_FLOAT, sh.scores(), sh.scores_strides());
  g.matmul(d_o, v_t, d_p, c.ragged(c.seq_q), c.ragged(c.seq_kv), nullptr);
  GraphTensor d_s = g.pointwise(CUDNN_POINTWISE_SUB, d_p, &dot_sum, nullptr, CUDNN_DATA_FLOAT);
  d_s = g.pointwise(CUDNN_POINTWISE_MUL, d_s, &p, nullptr, CUDNN_DATA_FLOAT);
  d_s = g.pointwise(CUDNN_POINTWISE_MUL, d_s, &c.scale, nullptr, CUDNN_DATA_FLOAT);
  // dK = dS^T q
  const GraphTensor d_s_t =
      g.virtual_tensor(CUDNN_DATA_BFLOAT16, sh.scores_t(), sh.scores_t_strides());
  g.reshape(d_s, d_s_t);
  if (sh.hq == sh.hkv) {
    g.matmul(d_s_t, q, d_k, c.ragged(c.seq_kv), nullptr, c.ragged(c.seq_q));
  } else {
    const GraphTensor d_k_full =
        g.virtual_tensor(CUDNN_DATA_BFLOAT16, full_head, full_head_strides);
    g.matmul(d_s_t, q, d_k_full, c.ragged(c.seq_kv), nullptr, c.ragged(c.seq_q));
    g.reduction(CUDNN_REDUCE_TENSOR_ADD, d_k_full, d_k);
  }
  // dQ = dS k (accumulated in f32, then converted)
  GraphTensor k = g.tensor(kFirstVirtualUid - 1, CUDNN_DATA_BFLOAT16, sh.thd(sh.hkv, skv),
                           sh.thd_strides(sh.hkv, skv), true, c.ragged(c.kv_offset));
  g.reshape(k_t, k);
  g.matmul(d_s, k, dq_accum, c.ragged(c.seq_q), nullptr, c.ragged(c.seq_kv));
  g.pointwise(CUDNN_POINTWISE_IDENTITY, dq_accum, nullptr, nullptr, CUDNN_DATA_BFLOAT16,
              CUDNN_DATA_FLOAT, -1, &d_q);
}

void build_graph(GraphBuilder& g, bool backward, const Shapes& sh) {
  if (backward)
    backward_graph(g, sh);
  else
    forward_graph(g, sh);
}

// seq_len[i] = length of document i (0 past n), offsets = cu_seqlens[i] (T past n) times the
// element count per token of q, kv and lse.
__global__ void document_arrays_kernel(const std::int32_t* cu, int n, int batch,
                                       std::int32_t q_per_token, std::int32_t kv_per_token,
                                       std::int32_t* seq_len, std::int32_t* q_offset,
                                       std::int32_t* kv_offset, std::int32_t* stats_offset) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i > batch) return;
  const std::int32_t start = cu[i < n ? i : n];
  if (i < batch) seq_len[i] = i < n ? cu[i + 1] - cu[i] : 0;
  q_offset[i] = start * q_per_token;
  kv_offset[i] = start * kv_per_token;
  stats_offset[i] = start;
}

}  // namespace

struct SdpaPlan {
  DescriptorPtr plan;  // null when the shape is not supported
  std::int64_t workspace_bytes = 0;
  cudnnHandle_t handle = nullptr;
  bool ragged = true;  // false: a dense plan, bound without the entries' arrays
  bool causal = true;  // false: no mask, so a dense plan binds no -inf either
};

struct CudnnAttentionCache {
  cudnnHandle_t handle = nullptr;
  std::map<PlanKey, SdpaPlan> plans;  // node-based: pointers to the plans stay valid
  ~CudnnAttentionCache() {
    plans.clear();
    if (handle) cudnn_library().destroy(handle);
  }
};

int cudnn_version(std::string* reason) {
  const CudnnLibrary& lib = cudnn_library();
  if (!lib.error.empty()) {
    if (reason) *reason = lib.error;
    return 0;
  }
  return lib.version;
}

namespace {

// The context's plan cache with its cuDNN handle (null handle when cudnnCreate failed), made on
// first use. Called with r.attention_mutex held.
CudnnAttentionCache& attention_cache(CudaResources& r) {
  if (!r.attention_plans) {
    auto cache = std::make_shared<CudnnAttentionCache>();
    const cudnnStatus_t status = cudnn_library().create(&cache->handle);
    if (status != CUDNN_STATUS_SUCCESS) {
      log_warn("attention: cudnnCreate failed (", status_text(status),
               "); using the built-in kernels");
      cache->handle = nullptr;
    }
    r.attention_plans = std::move(cache);
  }
  return *r.attention_plans;
}

// Whether the shape is one cuDNN's ragged SDPA can take (32-bit offsets, head_dim).
bool supported_shape(const SdpaShape& shape) {
  constexpr std::int64_t kMaxOffset = std::numeric_limits<std::int32_t>::max();
  const std::int64_t D = shape.head_dim;
  return shape.q_tokens * shape.query_heads * D < kMaxOffset &&
         shape.kv_tokens * shape.kv_heads * D < kMaxOffset && D % 8 == 0 && D <= 128 &&
         shape.q_tokens > 0 && shape.kv_tokens > 0 && shape.batch >= 1 && shape.max_q >= 1 &&
         shape.max_kv >= 1;
}

Shapes graph_shapes(const SdpaShape& shape, bool ragged) {
  Shapes sh{shape.batch,  shape.query_heads, shape.kv_heads, shape.max_q,
            shape.max_kv, shape.head_dim,    shape.q_tokens, shape.causal};
  sh.ragged = ragged;
  return sh;
}

}  // namespace

SdpaOneEntry cudnn_sdpa_one_entry(const Context& ctx, std::int64_t T, std::int64_t query_heads,
                                  std::int64_t kv_heads, std::int64_t head_dim) {
  SdpaOneEntry e;
  e.shape.q_tokens = e.shape.kv_tokens = T;
  e.shape.query_heads = query_heads;
  e.shape.kv_heads = kv_heads;
  e.shape.head_dim = head_dim;
  e.shape.batch = 1;
  e.shape.max_q = e.shape.max_kv = T;
  const auto t = static_cast<std::int32_t>(T);
  // seq_q = seq_kv = [T]; q, kv and stats offsets [0, end] each.
  e.arrays = Tensor::from_ints({t, 0, t * static_cast<std::int32_t>(query_heads * head_dim), 0,
                                t * static_cast<std::int32_t>(kv_heads * head_dim), 0, t},
                               {7})
                 .to(ctx.device);
  const auto* a = static_cast<const std::int32_t*>(e.arrays.raw());
  e.entries = {a, a, a + 1, a + 3, a + 5};
  return e;
}

std::vector<SdpaChoice> cudnn_sdpa_choices(const Context& ctx, bool backward,
                                           const SdpaShape& shape, bool ragged, int max_values) {
  std::vector<SdpaChoice> out;
  if (!cudnn_version() || !supported_shape(shape)) return out;
  UL_CHECK(ragged || (shape.batch == 1 && shape.max_q == shape.q_tokens &&
                      shape.max_kv == shape.kv_tokens),
           "cudnn_sdpa_choices: a dense plan takes one entry of exactly the tensors' tokens");
  CudaResources& r = cuda_resources(ctx);
  std::lock_guard<std::mutex> lock(r.attention_mutex);
  CudnnAttentionCache& cache = attention_cache(r);
  if (!cache.handle) return out;
  std::vector<PlanChoice> choices;
  try {
    check(cudnn_library().set_stream(cache.handle, r.stream), "cudnnSetStream");
    GraphBuilder g;
    build_graph(g, backward, graph_shapes(shape, ragged));
    choices = g.plan_choices(cache.handle, max_values);
  } catch (const NotSupported& e) {
    log_warn("attention: no cuDNN plan for the survey (", e.what, ")");
  }
  for (PlanChoice& c : choices) {
    auto plan = std::make_shared<SdpaPlan>();
    plan->plan = std::move(c.plan);
    plan->workspace_bytes = c.workspace_bytes;
    plan->handle = cache.handle;
    plan->ragged = ragged;
    plan->causal = shape.causal;
    out.push_back({std::move(c.name), std::move(plan)});
  }
  return out;
}

namespace {

// The cached plan of a ragged graph or (one entry of exactly the tensors' tokens) a dense one.
const SdpaPlan* sdpa_plan(const Context& ctx, bool backward, const SdpaShape& shape, bool ragged) {
  std::string why;
  if (!cudnn_version(&why)) {
    static std::once_flag logged;
    std::call_once(logged, [&] { log_info("attention: cuDNN not used (", why, ")"); });
    return nullptr;
  }
  if (!supported_shape(shape)) return nullptr;
  const std::int64_t Tq = shape.q_tokens, Hq = shape.query_heads;
  const std::int64_t Hkv = shape.kv_heads, D = shape.head_dim;
  const PlanKey key{backward, shape.causal, ragged,      Tq,          Hq, Hkv,
                    D,        shape.batch,  shape.max_q, shape.max_kv};
  const Shapes sh = graph_shapes(shape, ragged);

  CudaResources& r = cuda_resources(ctx);
  const SdpaPlan* found = nullptr;
  {
    std::lock_guard<std::mutex> lock(r.attention_mutex);
    CudnnAttentionCache& cache = attention_cache(r);
    if (!cache.handle) return nullptr;
    auto it = cache.plans.find(key);
    if (it == cache.plans.end()) {
      SdpaPlan plan;
      plan.handle = cache.handle;
      plan.ragged = ragged;
      plan.causal = shape.causal;
      const char* direction = backward ? "backward" : "forward";
      try {
        GraphBuilder g;
        build_graph(g, backward, sh);
        std::string engine;
        plan.plan = g.plan(cache.handle, &plan.workspace_bytes, &engine);
        log_debug("attention: cuDNN ", direction, ragged ? "" : " dense",
                  shape.causal ? " causal" : " full", " plan for Tq=", Tq, " heads ", Hq, "/", Hkv,
                  " head_dim ", D, " entries<=", sh.b, " longest<=", sh.sq, "/", sh.skv, ", ",
                  engine, ", workspace ", plan.workspace_bytes, " bytes");
      } catch (const NotSupported& e) {
        log_warn("attention: cuDNN refused the ", direction, shape.causal ? " causal" : " full",
                 " graph for Tq=", Tq, " heads ", Hq, "/", Hkv, " head_dim ", D, " (", e.what,
                 ragged ? "); using the built-in kernel for this shape"
                        : "); trying the ragged graph");
      }
      it = cache.plans.emplace(key, std::move(plan)).first;
    }
    if (!it->second.plan) return nullptr;
    found = &it->second;
  }
  try {
    check(cudnn_library().set_stream(found->handle, cuda_resources(ctx).stream), "cudnnSetStream");
  } catch (const NotSupported& e) {
    UL_FAIL("attention: ", e.what);
  }
  return found;
}

}  // namespace

const SdpaPlan* cudnn_sdpa_plan(const Context& ctx, bool backward, const SdpaShape& shape) {
  return sdpa_plan(ctx, backward, shape, /*ragged=*/true);
}

namespace {

void execute(const Context& ctx, const SdpaPlan& plan, std::vector<std::int64_t> uids,
             std::vector<void*> pointers) {
  if (!plan.ragged) {  // a dense plan has no entry lengths or offsets (nor, unmasked, -inf)
    std::size_t kept = 0;
    for (std::size_t i = 0; i < uids.size(); ++i) {
      const std::int64_t u = uids[i];
      if (u == kSeqQ || u == kSeqKv || u == kQOffset || u == kKvOffset || u == kStatsOffset ||
          (u == kNegInf && !plan.causal))
        continue;
      uids[kept] = u;
      pointers[kept++] = pointers[i];
    }
    uids.resize(kept);
    pointers.resize(kept);
  }
  Tensor workspace;
  void* workspace_ptr = nullptr;
  if (plan.workspace_bytes > 0) {
    workspace = Tensor::empty({(plan.workspace_bytes + 3) / 4}, DType::i32, ctx.device);
    workspace_ptr = workspace.raw();
  }
  try {
    Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
             static_cast<std::int64_t>(uids.size()), uids.data());
    pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
             static_cast<std::int64_t>(pointers.size()), pointers.data());
    pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, workspace_ptr);
    pack.finalize("variant pack");
    const cudnnStatus_t status = cudnn_library().execute(plan.handle, plan.plan->get(), pack.get());
    if (status != CUDNN_STATUS_SUCCESS)
      UL_FAIL("attention: cudnnBackendExecute failed: ", status_text(status));
  } catch (const NotSupported& e) {
    UL_FAIL("attention: cuDNN execution: ", e.what);
  }
}

// A device pointer for the variant pack (cuDNN takes void* for inputs too).
void* bind(const Tensor& t) { return const_cast<void*>(t.raw()); }
void* bind(const std::int32_t* p) { return const_cast<std::int32_t*>(p); }

}  // namespace

void cudnn_sdpa_forward(const Context& ctx, const SdpaPlan& plan, const SdpaEntries& e,
                        const Tensor& q, const Tensor& k, const Tensor& v, float scale, Tensor out,
                        Tensor lse) {
  float scale_value = scale, neg_inf = -std::numeric_limits<float>::infinity();
  execute(
      ctx, plan,
      {kQ, kK, kV, kO, kStats, kScale, kNegInf, kSeqQ, kSeqKv, kQOffset, kKvOffset, kStatsOffset},
      {bind(q), bind(k), bind(v), bind(out), bind(lse), &scale_value, &neg_inf, bind(e.seq_q),
       bind(e.seq_kv), bind(e.q_offset), bind(e.kv_offset), bind(e.stats_offset)});
}

void cudnn_sdpa_backward(const Context& ctx, const SdpaPlan& plan, const SdpaEntries& e,
                         const Tensor& q, const Tensor& k, const Tensor& v, float scale,
                         const Tensor& out, const Tensor& lse, const Tensor& dout, Tensor dq,
                         Tensor dk, Tensor dv) {
  Tensor dot_sum = Tensor::empty(lse.shape(), DType::f32, ctx.device);
  // cuDNN adds into dQ's f32 accumulator: zero it on the stream the plan runs on.
  Tensor dq_accum = Tensor::empty(q.shape(), DType::f32, ctx.device);
  UL_CUDA_CHECK(cudaMemsetAsync(dq_accum.raw(), 0, dq_accum.nbytes(), cuda_resources(ctx).stream));
  float scale_value = scale, neg_inf = -std::numeric_limits<float>::infinity(), one = 1.0f;
  execute(ctx, plan,
          {kQ, kK, kV, kO, kDO, kStats, kDQ, kDK, kDV, kDotSum, kDQAccum, kScale, kNegInf, kOne,
           kSeqQ, kSeqKv, kQOffset, kKvOffset, kStatsOffset},
          {bind(q), bind(k), bind(v), bind(out), bind(dout), bind(lse), bind(dq), bind(dk),
           bind(dv), bind(dot_sum), bind(dq_accum), &scale_value, &neg_inf, &one, bind(e.seq_q),
           bind(e.seq_kv), bind(e.q_offset), bind(e.kv_offset), bind(e.stats_offset)});
}

namespace {

// The plan and the per-document entries of a causal attention over the whole packed sequence
// (document i is entry i); null plan when cuDNN cannot run it.
struct WholeSequence {
  const SdpaPlan* plan = nullptr;
  Tensor arrays;  // i32: seq_len [b], q/kv/stats offsets [b + 1] each
  SdpaEntries entries;
};

WholeSequence prepare(const Context& ctx, bool backward, const Tensor& q, const Tensor& k,
                      const Tensor& cu_seqlens, const std::vector<std::int32_t>& cu_host) {
  WholeSequence w;
  const std::int64_t T = q.dim(0), Hq = q.dim(1), Hkv = k.dim(1), D = q.dim(2);
  const std::int64_t n = static_cast<std::int64_t>(cu_host.size()) - 1;
  if (T == 0) return w;
  std::int64_t longest = 1;
  for (std::int64_t i = 0; i < n; ++i)
    longest = std::max<std::int64_t>(longest, cu_host[i + 1] - cu_host[i]);
  SdpaShape shape;
  shape.causal = true;
  shape.q_tokens = shape.kv_tokens = T;
  shape.query_heads = Hq;
  shape.kv_heads = Hkv;
  shape.head_dim = D;
  // One document over every token (a long sequence, unpacked): the dense graph, 2-8% faster
  // (cuda_ops_bench --attention-engines). Packed sequences, or a dense graph cuDNN refuses: the
  // ragged graph with bucketed shapes.
  if (n == 1 && cu_host[0] == 0 && cu_host[1] == T) {
    shape.batch = 1;
    shape.max_q = shape.max_kv = T;
    if ((w.plan = sdpa_plan(ctx, backward, shape, /*ragged=*/false))) return w;  // no arrays
  }
  shape.batch = next_power_of_two(std::max<std::int64_t>(n, 1));
  shape.max_q = shape.max_kv = std::min(next_power_of_two(longest), T);
  w.plan = sdpa_plan(ctx, backward, shape, /*ragged=*/true);
  if (!w.plan) return w;

  const std::int64_t b = shape.batch;
  w.arrays = Tensor::empty({b + 3 * (b + 1)}, DType::i32, ctx.device);
  std::int32_t* seq_len = static_cast<std::int32_t*>(w.arrays.raw());
  std::int32_t* offsets = seq_len + b;
  const int threads = 256;
  const int blocks = static_cast<int>((b + 1 + threads - 1) / threads);
  document_arrays_kernel<<<blocks, threads, 0, cuda_resources(ctx).stream>>>(
      static_cast<const std::int32_t*>(cu_seqlens.raw()), static_cast<int>(n), static_cast<int>(b),
      static_cast<std::int32_t>(Hq * D), static_cast<std::int32_t>(Hkv * D), seq_len, offsets,
      offsets + (b + 1), offsets + 2 * (b + 1));
  UL_CUDA_CHECK_LAUNCH();
  w.entries = {seq_len, seq_len, offsets, offsets + (b + 1), offsets + 2 * (b + 1)};
  return w;
}

}  // namespace

bool cudnn_attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                             const Tensor& cu_seqlens, const std::vector<std::int32_t>& cu_host,
                             float scale, Tensor out, Tensor lse) {
  const WholeSequence w = prepare(ctx, false, q, k, cu_seqlens, cu_host);
  if (!w.plan) return false;
  cudnn_sdpa_forward(ctx, *w.plan, w.entries, q, k, v, scale, out, lse);
  return true;
}

bool cudnn_attention_backward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                              const Tensor& cu_seqlens, const std::vector<std::int32_t>& cu_host,
                              float scale, const Tensor& out, const Tensor& lse, const Tensor& dout,
                              Tensor dq, Tensor dk, Tensor dv, bool overwrite) {
  const WholeSequence w = prepare(ctx, true, q, k, cu_seqlens, cu_host);
  if (!w.plan) return false;
  if (overwrite) {
    cudnn_sdpa_backward(ctx, *w.plan, w.entries, q, k, v, scale, out, lse, dout, dq, dk, dv);
    return true;
  }
  // cuDNN writes the gradients; ours accumulate, so it writes into fresh buffers first.
  Tensor dq_new = Tensor::empty(dq.shape(), dq.dtype(), ctx.device);
  Tensor dk_new = Tensor::empty(dk.shape(), dk.dtype(), ctx.device);
  Tensor dv_new = Tensor::empty(dv.shape(), dv.dtype(), ctx.device);
  cudnn_sdpa_backward(ctx, *w.plan, w.entries, q, k, v, scale, out, lse, dout, dq_new, dk_new,
                      dv_new);
  add_inplace(ctx, dq, dq_new);
  add_inplace(ctx, dk, dk_new);
  add_inplace(ctx, dv, dv_new);
  return true;
}

}  // namespace ulysses::ops::cuda
