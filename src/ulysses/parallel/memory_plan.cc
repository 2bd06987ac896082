#include "ulysses/parallel/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <vector>

#include "ulysses/core/device_memory.h"
#include "ulysses/core/dtype.h"
#include "ulysses/core/format.h"
#include "ulysses/model/decoder.h"
#include "ulysses/parallel/ulysses_exchange.h"
#include "ulysses/parallel/zero_config.h"

namespace ulysses::parallel {

using model::layer_activation_bytes;
using model::ModelConfig;

namespace {

struct Sizes {
  std::int64_t act;    // activation element (compute dtype)
  std::int64_t stats;  // normalization statistics, lse (f32)
};

Sizes sizes(Precision p) {
  const DType act = p == Precision::fp32 ? DType::f32 : DType::bf16;
  return {static_cast<std::int64_t>(dtype_size(act)),
          static_cast<std::int64_t>(dtype_size(DType::f32))};
}

// What a device allocation of `bytes` takes: the caching allocator's size class on CUDA (up to
// 1/8 more), the bytes themselves on the CPU.
std::int64_t allocated(std::int64_t bytes, Precision p) {
  if (p == Precision::fp32 || bytes <= 0) return std::max<std::int64_t>(bytes, 0);
  return static_cast<std::int64_t>(device_size_class(static_cast<std::size_t>(bytes)));
}

// The allocator's rounding of the device-resident model-state buffers (one per group and kind),
// beyond the bytes zero_memory_formula counts.
std::int64_t states_rounding(const ModelConfig& c, const MemoryPlanInput& in) {
  if (in.precision == Precision::fp32) return 0;
  const std::int64_t Z = in.zero_stage == 0 ? 1 : std::max(1, in.zero_group);
  std::int64_t extra = 0;
  auto add = [&](std::int64_t bytes) { extra += allocated(bytes, in.precision) - bytes; };
  const auto f32 = static_cast<std::int64_t>(dtype_size(DType::f32));
  const auto bf16 = static_cast<std::int64_t>(dtype_size(DType::bf16));
  const model::ParamLayout layout(c);
  for (const auto& group : layout.groups()) {
    const std::int64_t s = (group.numel + Z - 1) / Z;
    if (!in.offload_params) add(bf16 * (in.zero_stage >= 3 ? s : Z * s));
    if (!in.offload_gradients) add(f32 * (in.zero_stage >= 2 ? s : Z * s));
    if (!in.offload_optimizer) {
      add(f32 * s);  // master
      add(f32 * s);  // exp_avg
      add(f32 * s);  // exp_avg_sq
    }
  }
  return extra;
}

// Host bytes of the model states the offload flags keep in host memory, plus the pinned
// staging slots the offloaded step streams gradient and parameter pieces through.
std::int64_t host_states(const ZeroMemory& z) { return z.offloaded + z.host_staging; }

MemoryPlan plan_for(const ModelConfig& c, const MemoryPlanInput& in, std::int64_t T) {
  const Sizes sz = sizes(in.precision);
  const std::int64_t a = sz.act, f = sz.stats;
  const std::int64_t L = c.num_hidden_layers, C = c.hidden_size, I = c.intermediate_size;
  const std::int64_t q = c.q_dim(), kv = c.kv_dim();
  const std::int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads;
  MemoryPlan p;
  p.layers = L;

  // Model states (ZeRO over the group, offloaded parts in host memory).
  ZeroConfig zc{in.zero_stage, in.offload_optimizer, in.offload_params};
  zc.offload_gradients = in.offload_gradients;
  const ZeroMemory z = zero_memory_formula(c, zc, std::max(1, in.zero_group), in.precision);
  p.params = in.offload_params ? 0 : z.params;
  p.master = in.offload_optimizer ? 0 : z.master;
  p.optimizer = in.offload_optimizer ? 0 : z.optimizer;
  p.grads = in.offload_gradients ? 0 : z.grads;
  p.host_states = host_states(z);
  p.grads += states_rounding(c, in);  // booked with the gradients, the buffers always resident

  // Ulysses (sp > 1): head-sharded q and output ([S, Hq/P, D]: as large as the local ones)
  // and k, v ([S, kv chunk, D]; the chunk is one head when kv heads are replicated).
  std::int64_t heads_copies = 0;
  // Ring / hybrid (ring_size > 1): the Ulysses exchange spans sp / ring_size ranks.
  const std::int64_t R = std::max<std::int64_t>(1, in.ring_size);
  const std::int64_t U = std::max<std::int64_t>(1, in.sp_size / R);
  if (U > 1) {
    const std::int64_t kv_chunk = kv_head_chunks(Hkv, U).chunk;
    heads_copies = (2 * T * q + 2 * T * U * kv_chunk * c.head_dim) * a;
  }
  // The ring's own buffers in a layer's attention backward (parallel/ring_attention.cc): the
  // K/V block in flight next to the held one (k and v stacked, compute dtype), the travelling
  // f32 dK/dV accumulator and its incoming twin, the f32 dq accumulator and a block's f32
  // partial output.
  std::int64_t ring_buffers = 0;
  if (R > 1) {
    const std::int64_t kv_held =
        T * U * (U > 1 ? kv_head_chunks(Hkv, U).chunk : Hkv) * c.head_dim * 2;  // elements
    ring_buffers = kv_held * a + 2 * kv_held * f + T * q * f + T * q * f / 2;
  }
  const bool tiled = in.mlp_tile_tokens > 0 && in.mlp_tile_tokens < T;
  const std::int64_t tile = tiled ? in.mlp_tile_tokens : T;
  const bool ckpt = in.gradient_checkpointing;
  const bool recompute_att = ckpt && in.recompute_attention;
  // Layers 0 .. n-1 recompute attention (the rest keep its output and lse).
  const std::int64_t n = !recompute_att ? 0
                         : in.recompute_attention_layers < 0
                             ? L
                             : std::min(in.recompute_attention_layers, L);

  // Layers 0 .. N-1 are checkpointed (the rest keep everything).
  const std::int64_t N = !ckpt                      ? 0
                         : in.checkpoint_layers < 0 ? L
                                                    : std::min(in.checkpoint_layers, L);
  // Every activation of one layer that is not checkpointed (the MLP's [T, I] tensors unless
  // tiled) and its copies. layer_activation_bytes counts f32 elements: scale them to the
  // compute dtype.
  const std::int64_t full_layer = layer_activation_bytes(c, T, tiled) / f * a + heads_copies;

  // Kept between forward and backward.
  auto r = [&](std::int64_t bytes) { return allocated(bytes, in.precision); };
  const std::int64_t residual = r(T * C * a);
  const std::int64_t att_out = r(T * q * a), lse = r(T * Hq * f);
  // What offload moves of layer l (lse stays on the device).
  auto moved = [&](std::int64_t l) { return residual + (l < n ? 0 : att_out); };
  if (ckpt) {
    std::int64_t K = in.offload_activation_layers;
    if (K < 0) {
      K = L;
      if (in.host_budget_bytes > 0) {
        // As many layers, from layer 0, as the host budget holds after the offloaded states.
        std::int64_t room = in.host_budget_bytes - p.host_states;
        for (K = 0; K < L && moved(K) <= room; ++K) room -= moved(K);
      }
    }
    K = std::min(K, N);
    p.activation_layers_offloaded = K;
    std::int64_t largest_moved = 0;
    for (std::int64_t l = 0; l < N; ++l) {
      if (l < K) {
        p.host_activations += moved(l);
        largest_moved = std::max(largest_moved, moved(l));
      } else {
        p.activations += moved(l);
      }
      if (l >= n) p.activations += lse;
    }
    // In backward: the layer being computed and the prefetched one come back.
    p.activations += std::min<std::int64_t>(K, 2) * largest_moved;
    p.activations += (L - N) * full_layer;
  } else {
    p.activations = L * full_layer;
  }

  // One layer's recompute + backward, tensor by tensor as the decoder allocates them.
  const std::int64_t xc = r(T * C * a), xq = r(T * q * a), xkv = r(T * kv * a);
  const std::int64_t qk_raw = c.qk_norm ? xq + xkv : 0;
  // Always live in backward: the q/k projections (qwen3), q, k, v and the incoming dout; att
  // when the recompute made it (the input norm's output is rebuilt after attention's backward).
  const std::int64_t base = xc + qk_raw + xq + 2 * xkv + (n > 0 ? xq : 0);
  const std::int64_t stats =
      2 * r(T * f) + (c.qk_norm ? r(T * Hq * f) + r(T * Hkv * f) : 0) + (n > 0 ? lse : 0);
  // Attention backward: dq, dk, dv, datt, and inside the op the new dq/dk/dv it adds in, the f32
  // dQ accumulator and row sums (CUDA); with Ulysses the head-sharded copies and their gradients.
  const std::int64_t kernel =
      in.precision == Precision::bf16_mixed ? xq + 2 * xkv + r(T * q * f) + r(T * Hq * f) : 0;
  // The ring calls the kernel per block pair instead (ops/cuda/cudnn_block_attention.cu): a
  // query chunk of the head-sharded sequence (T U / 2 rows) against a key chunk; each backward
  // call holds the bf16 output copy, bf16 dq/dk/dv of the block, cuDNN's f32 dQ accumulator
  // and row sums (its workspace, a few MiB, is not counted).
  std::int64_t block_kernel = 0;
  if (R > 1 && in.precision == Precision::bf16_mixed) {
    const std::int64_t rows = T * U / 2, D = c.head_dim;
    const std::int64_t qh = U > 1 ? query_head_chunks(Hq, U).chunk : Hq;
    const std::int64_t kvh = U > 1 ? kv_head_chunks(Hkv, U).chunk : Hkv;
    block_kernel = 2 * r(rows * qh * D * a) + 2 * r(rows * kvh * D * a) + r(rows * qh * D * f) +
                   r(rows * qh * f);
  }
  const std::int64_t attention_phase =
      base + 2 * xq + 2 * xkv + (R > 1 ? block_kernel : kernel) + 2 * heads_copies + ring_buffers;
  // MLP backward: x_mid, xn2, dxn2, and per tile gate, up, dh, dgate, dup (h freed before
  // dgate/dup exist); untiled, the recompute also held h next to gate and up.
  // With Ulysses the head-sharded copies rebuilt by the recompute stay until attention's
  // backward, so they are live here too.
  const std::int64_t mlp_phase = base + 3 * xc + 5 * r(tile * I * a) + (ckpt ? heads_copies : 0);
  // The LM head + loss: the last layer's output, the final norm's output and its gradient, the
  // gradient flowing back, and one tile of f32 logits with their gradient.
  const std::int64_t loss_tile = std::min(in.loss_tile_tokens, T);
  const std::int64_t loss_phase = 4 * residual + 2 * r(loss_tile * c.vocab_size * f);
  // Without checkpointing nothing is recomputed: the layer's kept values are counted above; the
  // backward adds only gradients.
  const std::int64_t no_ckpt_phase =
      2 * xc + 2 * xq + 2 * xkv + qk_raw + kernel + heads_copies +
      (tiled ? 5 : 3) * r(tile * I * a);  // a tiled MLP recomputes gate/up per tile
  // A checkpointed layer's backward and one that kept everything (past checkpoint_layers).
  const std::int64_t ckpt_phase = std::max(attention_phase, mlp_phase) + stats;
  p.buffers = std::max({N > 0 ? ckpt_phase : 0, N < L ? no_ckpt_phase : 0, loss_phase});
  p.buffers += z.transient;  // ZeRO: gathered parameters and gradient buffers in flight
  return p;
}

bool fits(const MemoryPlan& p, const MemoryPlanInput& in) {
  if (in.budget_bytes > 0 && p.total() > in.budget_bytes) return false;
  if (in.host_budget_bytes > 0 && p.host_total() > in.host_budget_bytes) return false;
  return in.budget_bytes > 0 || in.host_budget_bytes > 0;
}

std::int64_t largest_fit(const ModelConfig& c, const MemoryPlanInput& in) {
  if (in.budget_bytes <= 0) return 0;
  // Device and host totals grow with T: binary search the largest T that fits.
  std::int64_t lo = 0, hi = std::int64_t{1} << 34;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi + 1) / 2;
    if (fits(plan_for(c, in, mid), in))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

}  // namespace

MemoryPlan plan_memory(const ModelConfig& c, const MemoryPlanInput& in) {
  MemoryPlan plan = plan_for(c, in, in.tokens_per_device);
  plan.max_tokens_that_fit = largest_fit(c, in);
  return plan;
}

std::string format_memory_plan(const MemoryPlan& p, const MemoryPlanInput& in) {
  std::ostringstream out;
  out << "memory per device (" << (in.precision == Precision::fp32 ? "fp32" : "bf16 + fp32 master")
      << ", " << in.tokens_per_device << " tokens per micro-step"
      << (in.gradient_checkpointing ? ", gradient checkpointing" : "")
      << (!in.gradient_checkpointing || !in.recompute_attention ? ""
          : in.recompute_attention_layers >= 0 && in.recompute_attention_layers < p.layers
              ? ", attention recomputed in " + std::to_string(in.recompute_attention_layers) +
                    " of " + std::to_string(p.layers) + " layers"
              : std::string(", attention recomputed"))
      << (in.gradient_checkpointing && in.checkpoint_layers >= 0 && in.checkpoint_layers < p.layers
              ? ", " + std::to_string(in.checkpoint_layers) + " of " + std::to_string(p.layers) +
                    " layers checkpointed"
              : std::string())
      << (in.mlp_tile_tokens > 0 && in.mlp_tile_tokens < in.tokens_per_device
              ? ", MLP tiles of " + std::to_string(in.mlp_tile_tokens)
              : "")
      << "):\n";
  auto row = [&](const char* name, std::int64_t bytes) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "  %-12s %12s\n", name, format_bytes(bytes).c_str());
    out << buf;
  };
  row("params", p.params);
  if (p.master) row("master", p.master);
  row("grads", p.grads);
  row("optimizer", p.optimizer);
  row("activations", p.activations);
  row("buffers", p.buffers);
  row("total", p.total());
  if (p.host_total() > 0) {
    out << "host memory per rank:\n";
    if (p.host_states) row("states", p.host_states);
    if (p.host_activations) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "  %-12s %12s (%lld layers, pinned)\n", "activations",
                    format_bytes(p.host_activations).c_str(),
                    static_cast<long long>(p.activation_layers_offloaded));
      out << buf;
    }
    row("total", p.host_total());
  }
  if (in.budget_bytes > 0) {
    out << "  largest sequence per device that fits in " << format_bytes(in.budget_bytes);
    if (in.host_budget_bytes > 0) out << " (host " << format_bytes(in.host_budget_bytes) << ")";
    out << ": " << p.max_tokens_that_fit << " tokens\n";
  }
  return out.str();
}

std::string format_reach_table(const ModelConfig& c, const MemoryPlanInput& base) {
  struct Choice {
    const char* flags;
    int stage;
    bool opt, params, recompute;
    std::int64_t act_layers;
    bool grads = false;
  };
  const int stage = std::max(base.zero_stage, 0);
  const std::vector<Choice> choices = {
      {"(as given)", stage, base.offload_optimizer, base.offload_params, base.recompute_attention,
       base.offload_activation_layers, base.offload_gradients},
      {"--zero-stage 3 --offload-optimizer --offload-params", 3, true, true, false, 0},
      {"  + --recompute-attention", 3, true, true, true, 0},
      {"  + --offload-activations", 3, true, true, false, -1},
      {"  + --recompute-attention --offload-activations", 3, true, true, true, -1},
      {"  + --offload-gradients", 3, true, true, false, 0, true},
      {"  + --recompute-attention --offload-activations --offload-gradients", 3, true, true, true,
       -1, true},
  };
  std::ostringstream out;
  out << "largest sequence per device with gradient checkpointing (device "
      << format_bytes(base.budget_bytes) << ", host "
      << (base.host_budget_bytes > 0 ? format_bytes(base.host_budget_bytes) : "unlimited")
      << "):\n";
  char buf[200];
  std::snprintf(buf, sizeof buf, "  %-68s %12s %12s %12s\n", "options", "tokens", "device", "host");
  out << buf;
  for (const Choice& ch : choices) {
    MemoryPlanInput in = base;
    in.gradient_checkpointing = true;
    in.zero_stage = ch.stage;
    in.offload_optimizer = ch.opt;
    in.offload_params = ch.params;
    in.recompute_attention = ch.recompute;
    in.offload_activation_layers = ch.act_layers;
    in.offload_gradients = ch.grads;
    // --checkpoint-layers goes with none of the other rows' options (recompute, offload):
    // they checkpoint every layer.
    if (ch.flags[0] != '(') in.checkpoint_layers = -1;
    const std::int64_t tokens = largest_fit(c, in);
    in.tokens_per_device = std::max<std::int64_t>(tokens, 1);
    const MemoryPlan p = plan_for(c, in, in.tokens_per_device);
    std::snprintf(buf, sizeof buf, "  %-68s %12lld %12s %12s\n", ch.flags,
                  static_cast<long long>(tokens), format_bytes(p.total()).c_str(),
                  format_bytes(p.host_total()).c_str());
    out << buf;
  }
  return out.str();
}

}  // namespace ulysses::parallel
