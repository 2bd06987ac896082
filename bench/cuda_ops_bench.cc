// GPU op benchmark: causal attention (qwen3-4b heads: 32 query heads, 8 kv heads, head_dim 128)
// forward and backward at 8K and 32K tokens, ring attention's block pairs (cuDNN's fused path
// and the reference kernel) and merge at the chunk shapes of 128K tokens over rings of 4 and 8, and
// the bf16 GEMMs of the qwen3-4b projections through ops::linear. Plain timing: the context's
// stream is synchronized before each clock read; warm-up first, the median of several timed runs.
// Prints a table; exits 0 without a GPU. Then the memory-bound non-GEMM kernels at qwen3-4b 32K
// (T=32768, C=2560, I=9728, Hq=32, Hkv=8, D=128), fused and unfused: time, the bytes each must move
// (bench/KERNELS.md) and the rate as GB/s and as a share of the H200's ~4.3 TB/s copy rate.
//   cuda_ops_bench [--quick] [--kernels-only] [--block-attention-only] [--attention-engines]
//                  [--attention-heads]
// --attention-heads: cuDNN's causal attention at 8K and 32K with 8 kv heads (GQA) and with 32
// (one per query head): what grouped K/V cost or save in cuDNN's kernels.
// --attention-engines times every plan cuDNN finalizes for the causal attention at 8K and 32K
// (each engine, each knob value), ragged and dense, with each plan's difference from the default,
// then the LM head + cross-entropy at 32K tokens for loss tiles of 1K, 4K and 8K tokens.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ulysses/core/cuda_context.h"
#include "ulysses/core/device_memory.h"
#include "ulysses/core/rng.h"
#include "ulysses/ops/attention.h"
#include "ulysses/ops/block_attention.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/cudnn_attention.h"
#endif
#include "ulysses/ops/adamw.h"
#include "ulysses/ops/add_rmsnorm.h"
#include "ulysses/ops/cross_entropy.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/linear.h"
#include "ulysses/ops/qk_norm_rope.h"
#include "ulysses/ops/rmsnorm.h"
#include "ulysses/ops/rope.h"
#include "ulysses/ops/swiglu.h"

namespace {

using namespace ulysses;

// Random bf16 device tensor, uniform in [-scale, scale).
Tensor random_bf16(const Shape& shape, Rng& rng, float scale, Device device) {
  Tensor host = Tensor::empty(shape, DType::bf16);
  bf16* p = host.data<bf16>();
  for (std::int64_t i = 0; i < host.numel(); ++i)
    p[i] = float_to_bf16(scale * (2.0f * rng.uniform() - 1.0f));
  return host.to(device);
}

// Median seconds of one call of f over `repeats` timed runs after `warmup` runs.
double time_median(const Context& ctx, int warmup, int repeats, const std::function<void()>& f) {
  for (int i = 0; i < warmup; ++i) f();
  synchronize(ctx);
  std::vector<double> seconds;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    synchronize(ctx);
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(seconds.begin(), seconds.end());
  return seconds[seconds.size() / 2];
}

// One document of T tokens (or `documents` equal ones) through the chosen kernel.
// Hkv: kv heads (8: qwen3-4b's GQA; 32: every query head its own, as if K/V were repeated).
void bench_attention(const Context& base, AttentionKernel kernel, std::int64_t T,
                     std::int64_t documents, int repeats, std::int64_t Hkv = 8) {
  Context ctx = base;
  ctx.attention_kernel = kernel;
  const std::int64_t Hq = 32, D = 128;
  Rng rng(static_cast<std::uint64_t>(T));
  const Device dev = ctx.device;
  const Tensor q = random_bf16({T, Hq, D}, rng, 2.0f, dev);
  const Tensor k = random_bf16({T, Hkv, D}, rng, 2.0f, dev);
  const Tensor v = random_bf16({T, Hkv, D}, rng, 1.0f, dev);
  const Tensor dout = random_bf16({T, Hq, D}, rng, 1.0f, dev);
  std::vector<std::int32_t> bounds;
  for (std::int64_t i = 0; i <= documents; ++i)
    bounds.push_back(static_cast<std::int32_t>(T * i / documents));
  const Tensor cu = Tensor::from_ints(bounds, {static_cast<std::int64_t>(bounds.size())}).to(dev);
  Tensor out = Tensor::empty({T, Hq, D}, DType::bf16, dev);
  Tensor lse = Tensor::empty({Hq, T}, DType::f32, dev);
  Tensor dq = Tensor::zeros({T, Hq, D}, DType::bf16, dev);
  Tensor dk = Tensor::zeros({T, Hkv, D}, DType::bf16, dev);
  Tensor dv = Tensor::zeros({T, Hkv, D}, DType::bf16, dev);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const double fwd = time_median(
      ctx, 1, repeats, [&] { ops::attention_forward(ctx, q, k, v, cu, scale, out, lse); });
  const double bwd = time_median(ctx, 1, repeats, [&] {
    ops::attention_backward(ctx, q, k, v, cu, scale, out, lse, dout, dq, dk, dv);
  });
  // Causal: half of the dense 4 L^2 D H forward FLOPs per document of L tokens; backward
  // counted as 2.5x forward.
  const double L = static_cast<double>(T) / static_cast<double>(documents);
  const double fwd_flops = 4.0 * L * L / 2 * D * Hq * static_cast<double>(documents);
  const double bwd_flops = 2.5 * fwd_flops;
  std::printf(
      "attention %-7s causal T=%-6lld docs=%-3lld Hq=32 Hkv=%-2lld D=128 | fwd %8.3f ms %6.1f "
      "TFLOP/s | bwd %8.3f ms %6.1f TFLOP/s | fwd+bwd %6.1f TFLOP/s\n",
      kernel == AttentionKernel::cudnn ? "cudnn" : "builtin", static_cast<long long>(T),
      static_cast<long long>(documents), static_cast<long long>(Hkv), fwd * 1e3,
      fwd_flops / fwd / 1e12, bwd * 1e3, bwd_flops / bwd / 1e12,
      (fwd_flops + bwd_flops) / (fwd + bwd) / 1e12);
}

#ifdef ULYSSES_HAS_CUDA
// Max |a - b| over two bf16 device tensors of one shape.
double max_abs_diff(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to(Device::cpu()), hb = b.to(Device::cpu());
  double m = 0;
  for (std::int64_t i = 0; i < ha.numel(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(bf16_to_float(ha.data<bf16>()[i])) -
                              bf16_to_float(hb.data<bf16>()[i])));
  return m;
}

// Every cuDNN plan of the causal attention of one T-token document (qwen3-4b heads), ragged
// (the layout the ops use) and dense: time and the largest difference from the heuristic's
// plan (the first row of each group), forward then backward.
void survey_attention_engines(const Context& ctx, std::int64_t T, int repeats) {
  namespace cu = ops::cuda;
  const std::int64_t Hq = 32, Hkv = 8, D = 128;
  Rng rng(static_cast<std::uint64_t>(T) + 7);
  const Device dev = ctx.device;
  const Tensor q = random_bf16({T, Hq, D}, rng, 2.0f, dev);
  const Tensor k = random_bf16({T, Hkv, D}, rng, 2.0f, dev);
  const Tensor v = random_bf16({T, Hkv, D}, rng, 1.0f, dev);
  const Tensor dout = random_bf16({T, Hq, D}, rng, 1.0f, dev);
  const cu::SdpaOneEntry one = cu::cudnn_sdpa_one_entry(ctx, T, Hq, Hkv, D);
  const cu::SdpaShape& shape = one.shape;
  const cu::SdpaEntries& entries = one.entries;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const double fwd_flops = 4.0 * static_cast<double>(T) * T / 2 * D * Hq;
  Tensor out = Tensor::empty({T, Hq, D}, DType::bf16, dev);
  Tensor lse = Tensor::empty({Hq, T}, DType::f32, dev);
  Tensor reference;
  Tensor dk = Tensor::empty({T, Hkv, D}, DType::bf16, dev);
  Tensor dv = Tensor::empty({T, Hkv, D}, DType::bf16, dev);
  for (const bool backward : {false, true}) {
    for (const bool ragged : {true, false}) {
      const auto choices = cu::cudnn_sdpa_choices(ctx, backward, shape, ragged, 8);
      std::printf("attention engines T=%lld %s %s: %zu plans\n", static_cast<long long>(T),
                  backward ? "backward" : "forward", ragged ? "ragged" : "dense", choices.size());
      for (const auto& c : choices) {
        Tensor result = Tensor::empty({T, Hq, D}, DType::bf16, dev);
        double seconds = 0;
        try {
          seconds = time_median(ctx, 1, repeats, [&] {
            if (backward)
              cu::cudnn_sdpa_backward(ctx, *c.plan, entries, q, k, v, scale, out, lse, dout, result,
                                      dk, dv);
            else
              cu::cudnn_sdpa_forward(ctx, *c.plan, entries, q, k, v, scale, result, lse);
          });
        } catch (const std::exception& e) {
          std::printf("  %-60s failed: %s\n", c.name.c_str(), e.what());
          continue;
        }
        if (!reference.defined()) reference = result;
        const double flops = (backward ? 2.5 : 1.0) * fwd_flops;
        std::printf("  %-60s %9.3f ms %6.1f TFLOP/s  max |diff| %.3g\n", c.name.c_str(),
                    seconds * 1e3, flops / seconds / 1e12, max_abs_diff(result, reference));
      }
      // The backward reads a forward's output and statistics: the default plan's.
      if (!backward && ragged && !choices.empty())
        cu::cudnn_sdpa_forward(ctx, *choices.front().plan, entries, q, k, v, scale, out, lse);
    }
    reference = Tensor();
  }
}
#endif

// The LM head and cross-entropy of qwen3-4b (C 2560, vocab 151936, tied) over T tokens, every
// one a label, forward + backward, at several loss tiles: time and the rate counting the three
// GEMMs (logits, dx, dW: 6 T C V FLOPs); the softmax pass adds no FLOPs counted here.
void bench_loss(const Context& base, std::int64_t T, int repeats) {
  const std::int64_t C = 2560, V = 151936;
  Rng rng(11);
  const Tensor x = random_bf16({T, C}, rng, 1.0f, base.device);
  const Tensor w = random_bf16({V, C}, rng, 0.02f, base.device);
  std::vector<std::int32_t> label_values(static_cast<std::size_t>(T));
  for (auto& l : label_values) l = static_cast<std::int32_t>(rng.below(V));
  const Tensor labels = Tensor::from_ints(label_values, {T}).to(base.device);
  Tensor dx = Tensor::zeros({T, C}, DType::bf16, base.device);
  Tensor dw = Tensor::zeros({V, C}, DType::f32, base.device);
  for (const std::int64_t tile : {1024, 4096, 8192}) {
    Context ctx = base;
    ctx.loss_tile_tokens = tile;
    const double t = time_median(ctx, 1, repeats, [&] {
      ops::lm_head_cross_entropy(ctx, x, w, labels, 1.0f / static_cast<float>(T), dx, dw);
    });
    std::printf("lm_head + cross-entropy T=%-6lld tile %-5lld | fwd+bwd %8.3f ms | %6.1f TFLOP/s\n",
                static_cast<long long>(T), static_cast<long long>(tile), t * 1e3,
                6.0 * T * C * V / t / 1e12);
  }
}

// Ring attention's pieces at the shapes of a 128K-token sequence over a ring of R ranks
// (zigzag chunks of C = 128K / (2R) tokens, qwen3-4b heads, one document): one block pair on the
// diagonal (causal) and one fully visible (keys before the queries), forward and backward (f32
// accumulators), on cuDNN's fused path and on the reference kernel, and the merge.
void bench_block_attention(const Context& base, std::int64_t ring, int repeats) {
  const std::int64_t S = 131072, C = S / (2 * ring), Hq = 32, Hkv = 8, D = 128;
  Rng rng(static_cast<std::uint64_t>(C));
  const Device dev = base.device;
  const Tensor q = random_bf16({C, Hq, D}, rng, 2.0f, dev);
  const Tensor k = random_bf16({C, Hkv, D}, rng, 2.0f, dev);
  const Tensor v = random_bf16({C, Hkv, D}, rng, 1.0f, dev);
  const Tensor dout = random_bf16({C, Hq, D}, rng, 1.0f, dev);
  const std::vector<std::int32_t> bounds = {0, static_cast<std::int32_t>(S)};
  const Tensor cu = Tensor::from_ints(bounds, {2}).to(dev);
  Tensor out = Tensor::zeros({C, Hq, D}, DType::f32, dev);
  Tensor lse = Tensor::empty({Hq, C}, DType::f32, dev);
  Tensor block_out = Tensor::zeros({C, Hq, D}, DType::f32, dev);
  Tensor block_lse = Tensor::empty({Hq, C}, DType::f32, dev);
  Tensor dq = Tensor::zeros({C, Hq, D}, DType::f32, dev);
  Tensor dk = Tensor::zeros({C, Hkv, D}, DType::f32, dev);
  Tensor dv = Tensor::zeros({C, Hkv, D}, DType::f32, dev);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const double pair_flops = 4.0 * static_cast<double>(C) * C * D * Hq;  // dense pair forward
  for (const auto kernel : {AttentionKernel::automatic, AttentionKernel::builtin}) {
    Context ctx = base;
    ctx.attention_kernel = kernel;  // automatic: cuDNN where it runs, else the reference kernel
    for (const bool diagonal : {true, false}) {
      const std::int64_t k_begin = diagonal ? C : 0;  // queries at [C, 2C)
      ops::BlockAttentionPath path = ops::BlockAttentionPath::reference;
      const double fwd = time_median(ctx, 1, repeats, [&] {
        path = ops::attention_block_forward(ctx, q, k, v, cu, bounds, C, k_begin, scale, block_out,
                                            block_lse);
      });
      ops::BlockAttentionPath backward_path = ops::BlockAttentionPath::reference;
      const double bwd = time_median(ctx, 1, repeats, [&] {
        backward_path = ops::attention_block_backward(ctx, q, k, v, cu, bounds, C, k_begin, scale,
                                                      block_out, block_lse, dout, dq, dk, dv);
      });
      auto name = [](ops::BlockAttentionPath p) {
        return p == ops::BlockAttentionPath::cudnn ? "cudnn" : "reference";
      };
      const double flops = diagonal ? pair_flops / 2 : pair_flops;
      std::printf(
          "block attention %-9s ring %lld (128K) C=%-6lld %-8s Hq=32 Hkv=8 D=128 | fwd %9.3f "
          "ms %6.1f TFLOP/s | bwd %9.3f ms %6.1f TFLOP/s%s\n",
          name(path), static_cast<long long>(ring), static_cast<long long>(C),
          diagonal ? "diagonal" : "full", fwd * 1e3, flops / fwd / 1e12, bwd * 1e3,
          2.5 * flops / bwd / 1e12,
          path == backward_path
              ? ""
              : (std::string(" (backward: ") + name(backward_path) + ")").c_str());
    }
  }
  ops::attention_block_forward(base, q, k, v, cu, bounds, C, 0, scale, out, lse);
  const double merge = time_median(
      base, 1, repeats, [&] { ops::attention_merge(base, out, lse, block_out, block_lse); });
  // Reads out, block_out and both lse, writes out and lse (f32).
  const double bytes = 4.0 * (3.0 * C * Hq * D + 3.0 * C * Hq);
  std::printf("attention merge ring %lld (128K) C=%-6lld Hq=32 D=128 | %8.3f ms %7.1f GB/s\n",
              static_cast<long long>(ring), static_cast<long long>(C), merge * 1e3,
              bytes / merge / 1e9);
}

void bench_linear(const Context& ctx, const char* name, std::int64_t N, std::int64_t K,
                  std::int64_t M, int repeats) {
  Rng rng(static_cast<std::uint64_t>(N * 31 + K * 7 + M));
  const Device dev = ctx.device;
  const Tensor x = random_bf16({N, K}, rng, 1.0f, dev);
  const Tensor w = random_bf16({M, K}, rng, 0.05f, dev);
  const Tensor dy = random_bf16({N, M}, rng, 1.0f, dev);
  Tensor y = Tensor::empty({N, M}, DType::bf16, dev);
  Tensor dx = Tensor::zeros({N, K}, DType::bf16, dev);
  Tensor dw = Tensor::zeros({M, K}, DType::f32, dev);
  const double fwd =
      time_median(ctx, 2, repeats, [&] { ops::linear_forward(ctx, x, w, Tensor(), y); });
  const double bwd =
      time_median(ctx, 2, repeats, [&] { ops::linear_backward(ctx, x, w, dy, dx, dw, Tensor()); });
  const double flops = 2.0 * static_cast<double>(N) * K * M;
  std::printf(
      "linear %-10s N=%-6lld K=%-6lld M=%-7lld | fwd %7.3f ms %6.1f TFLOP/s | bwd (dx bf16 + "
      "dW f32) %7.3f ms %6.1f TFLOP/s\n",
      name, static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(M),
      fwd * 1e3, flops / fwd / 1e12, bwd * 1e3, 2 * flops / bwd / 1e12);
}

// One row of the memory-bound table: median time of f and the bytes it must move.
void row(const Context& ctx, const char* name, double bytes, int repeats,
         const std::function<void()>& f) {
  const double t = time_median(ctx, 2, repeats, f);
  std::printf("%-44s | %8.1f us | %8.1f MB | %7.0f GB/s | %5.1f%% of 4.3 TB/s\n", name, t * 1e6,
              bytes / 1e6, bytes / t / 1e9, 100 * bytes / t / 4.3e12);
}

// The non-GEMM kernels of one qwen3-4b layer at 32K tokens (bench/KERNELS.md lists the bytes).
void bench_kernels(const Context& ctx, int repeats) {
  const std::int64_t T = 32768, C = 2560, I = 9728, Hq = 32, Hkv = 8, D = 128;
  const Device dev = ctx.device;
  Rng rng(5);
  const double TC = static_cast<double>(T * C), TI = static_cast<double>(T * I);
  const Tensor x = random_bf16({T, C}, rng, 1.0f, dev), r = random_bf16({T, C}, rng, 1.0f, dev);
  const Tensor w = random_bf16({C}, rng, 1.0f, dev);
  Tensor y = Tensor::empty({T, C}, DType::bf16, dev), n = Tensor::empty({T, C}, DType::bf16, dev);
  Tensor acc = x.clone(), rstd = Tensor::empty({T}, DType::f32, dev);
  Tensor dw = Tensor::zeros({C}, DType::f32, dev);
  std::printf("\nmemory-bound kernels, qwen3-4b 32K (bf16)\n");
  row(ctx, "add_inplace [T,C]", 6 * TC, repeats, [&] { ops::add_inplace(ctx, acc, r); });
  row(ctx, "rmsnorm.fwd [T,C]", 4 * TC, repeats,
      [&] { ops::rmsnorm_forward(ctx, x, w, 1e-6f, n, rstd); });
  row(ctx, "add_rmsnorm.fwd [T,C] (fused)", 8 * TC, repeats,
      [&] { ops::add_rmsnorm_forward(ctx, x, r, w, 1e-6f, y, n, rstd); });
  row(ctx, "rmsnorm.bwd [T,C]", 12 * TC, repeats,
      [&] { ops::rmsnorm_backward(ctx, x, w, rstd, r, acc, dw); });
  row(ctx, "add_rmsnorm.bwd [T,C] (fused)", 12 * TC, repeats,
      [&] { ops::add_rmsnorm_backward(ctx, x, w, rstd, r, y, n, dw); });

  std::vector<std::int32_t> positions(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t)
    positions[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t);
  const ops::RopeTable table = ops::rope_table(ctx, ops::RopeConfig{1000000.0}, D,
                                               Tensor::from_ints(positions, {T}).to(dev));
  const double table_bytes = static_cast<double>(T * D) * 4;  // cos + sin, f32 [T, D/2] each
  const Tensor wq = random_bf16({D}, rng, 1.0f, dev);
  for (const std::int64_t H : {Hq, Hkv}) {
    const double E = static_cast<double>(T * H * D);
    const std::string tag = H == Hq ? " q [T,32,128]" : " k [T,8,128]";
    const Tensor q_raw = random_bf16({T, H, D}, rng, 1.0f, dev);
    Tensor q = Tensor::empty({T, H, D}, DType::bf16, dev);
    Tensor q_rstd = Tensor::empty({T * H}, DType::f32, dev);
    Tensor dq = Tensor::empty({T, H, D}, DType::bf16, dev);
    Tensor dwq = Tensor::zeros({D}, DType::f32, dev);
    row(ctx, ("rmsnorm.fwd + rope.fwd" + tag).c_str(), 8 * E + table_bytes, repeats, [&] {
      ops::rmsnorm_forward(ctx, q_raw.view({T * H, D}), wq, 1e-6f, q.view({T * H, D}), q_rstd);
      ops::rope_forward(ctx, table, q, q);
    });
    row(ctx, ("qk_norm_rope.fwd" + tag + " (fused)").c_str(), 4 * E + table_bytes, repeats,
        [&] { ops::qk_norm_rope_forward(ctx, table, q_raw, wq, 1e-6f, q, q_rstd); });
    row(ctx, ("zero + rope.bwd + zero + rmsnorm.bwd" + tag).c_str(), 22 * E + 2 * table_bytes,
        repeats, [&] {
          Tensor dpre = Tensor::zeros({T, H, D}, DType::bf16, dev);
          ops::rope_backward(ctx, table, q, dpre);
          dq.zero_();
          ops::rmsnorm_backward(ctx, q_raw.view({T * H, D}), wq, q_rstd, dpre.view({T * H, D}),
                                dq.view({T * H, D}), dwq);
        });
    row(ctx, ("qk_norm_rope.bwd" + tag + " (fused)").c_str(), 10 * E + 2 * table_bytes, repeats,
        [&] { ops::qk_norm_rope_backward(ctx, table, q_raw, wq, q_rstd, q, dq, dwq); });
  }

  const Tensor gate = random_bf16({T, I}, rng, 3.0f, dev), up = random_bf16({T, I}, rng, 1.0f, dev);
  Tensor h = Tensor::empty({T, I}, DType::bf16, dev);
  Tensor dgate = Tensor::zeros({T, I}, DType::bf16, dev),
         dup = Tensor::zeros({T, I}, DType::bf16, dev);
  row(ctx, "swiglu.fwd [T,I]", 6 * TI, repeats, [&] { ops::swiglu_forward(ctx, gate, up, h); });
  row(ctx, "swiglu.bwd [T,I]", 14 * TI, repeats,
      [&] { ops::swiglu_backward(ctx, gate, up, h, dgate, dup); });

  // o_proj with the residual add: separate add vs the cuBLASLt epilogue.
  const Tensor att = random_bf16({T, 4096}, rng, 1.0f, dev),
               wo = random_bf16({C, 4096}, rng, 0.02f, dev);
  const double gemm_bytes = 2.0 * (static_cast<double>(T) * 4096 + C * 4096.0 + TC);
  row(ctx, "o_proj linear + add_inplace", gemm_bytes + 6 * TC, repeats, [&] {
    ops::linear_forward(ctx, att, wo, Tensor(), y);
    ops::add_inplace(ctx, y, x);
  });
  row(ctx, "o_proj linear_forward_residual (epilogue)", gemm_bytes + 2 * TC, repeats,
      [&] { ops::linear_forward_residual(ctx, att, wo, Tensor(), x, y); });

  // AdamW over one layer's ranges (f32 state, bf16 copy): one launch per range vs multi-tensor.
  const std::vector<std::int64_t> sizes = {C,        4096 * C, 1024 * C, 1024 * C, D,    D,
                                           C * 4096, C,        I * C,    I * C,    C * I};
  std::int64_t total = 0;
  for (const auto s : sizes) total += s;
  Tensor p = Tensor::zeros({total}, DType::f32, dev), g = Tensor::zeros({total}, DType::f32, dev);
  Tensor m = Tensor::zeros({total}, DType::f32, dev), v = Tensor::zeros({total}, DType::f32, dev);
  Tensor copy = Tensor::zeros({total}, DType::bf16, dev);
  std::vector<ops::AdamWRange> ranges;
  std::int64_t off = 0;
  for (const auto s : sizes) {
    ranges.push_back({p.rows(off, off + s), g.rows(off, off + s), m.rows(off, off + s),
                      v.rows(off, off + s), copy.rows(off, off + s), s > D});
    off += s;
  }
  const ops::AdamWConfig config;
  const double adam_bytes = 30.0 * static_cast<double>(total);
  row(ctx, "adamw_step_with_copy x11 (one layer)", adam_bytes, repeats, [&] {
    for (const auto& rg : ranges)
      ops::adamw_step_with_copy(ctx, config, 3, rg.param, rg.grad, rg.exp_avg, rg.exp_avg_sq,
                                rg.param_copy);
  });
  row(ctx, "adamw_multi_step (one layer, fused)", adam_bytes, repeats,
      [&] { ops::adamw_multi_step(ctx, config, 3, ranges); });
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false, kernels_only = false, block_only = false, engines = false, heads = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--kernels-only") == 0) {
      kernels_only = true;
    } else if (std::strcmp(argv[i], "--block-attention-only") == 0) {
      block_only = true;
    } else if (std::strcmp(argv[i], "--attention-engines") == 0) {
      engines = true;
    } else if (std::strcmp(argv[i], "--attention-heads") == 0) {
      heads = true;
    } else {
      std::fprintf(stderr,
                   "usage: cuda_ops_bench [--quick] [--kernels-only] [--block-attention-only] "
                   "[--attention-engines] [--attention-heads]\n");
      return 2;
    }
  }
  if (ulysses::cuda_device_count() == 0) {
    std::printf("cuda_ops_bench: no CUDA device visible (or a build without CUDA); skipped\n");
    return 0;
  }
  try {
    const ulysses::Context ctx = ulysses::make_cuda_context(0);
#ifdef ULYSSES_HAS_CUDA
    std::string why;
    const int cudnn = ulysses::ops::cuda::cudnn_version(&why);
    std::printf("cuDNN: %s\n", cudnn ? std::to_string(cudnn).c_str() : why.c_str());
#endif
    const int repeats = quick ? 3 : 7;
    if (kernels_only) {
      bench_kernels(ctx, repeats);
      return 0;
    }
#ifdef ULYSSES_HAS_CUDA
    if (engines) {  // every cuDNN plan of the attention at 8K and 32K, timed; the loss tiles
      for (const std::int64_t T : {8192, 32768}) survey_attention_engines(ctx, T, quick ? 2 : 3);
      bench_loss(ctx, 32768, quick ? 2 : 3);
      return 0;
    }
#endif
    if (heads) {
      for (const std::int64_t T : {8192, 32768})
        for (const std::int64_t Hkv : {8, 32})
          bench_attention(ctx, ulysses::AttentionKernel::cudnn, T, 1, quick ? 3 : 5, Hkv);
      return 0;
    }
    if (block_only) {  // ring attention's block pair and merge only (128K over rings of 4 and 8)
      for (const std::int64_t ring : {4, 8}) bench_block_attention(ctx, ring, quick ? 1 : 3);
      return 0;
    }
    // qwen3-4b: hidden 2560, 32 x 128 query, 8 x 128 kv, intermediate 9728, vocab 151936.
    const std::int64_t N = 8192;
    bench_linear(ctx, "q_proj", N, 2560, 4096, repeats);
    bench_linear(ctx, "k/v_proj", N, 2560, 1024, repeats);
    bench_linear(ctx, "o_proj", N, 4096, 2560, repeats);
    bench_linear(ctx, "gate/up", N, 2560, 9728, repeats);
    bench_linear(ctx, "down", N, 9728, 2560, repeats);
    bench_linear(ctx, "lm_head", 1024, 2560, 151936, repeats);
    bench_loss(ctx, 32768, quick ? 2 : 3);
    for (const auto kernel : {ulysses::AttentionKernel::cudnn, ulysses::AttentionKernel::builtin})
      for (const std::int64_t T : {8192, 32768}) bench_attention(ctx, kernel, T, 1, quick ? 2 : 5);
    bench_attention(ctx, ulysses::AttentionKernel::cudnn, 32768, 8, quick ? 2 : 5);
    bench_attention(ctx, ulysses::AttentionKernel::cudnn, 131072, 1, 2);
    for (const std::int64_t ring : {4, 8}) bench_block_attention(ctx, ring, quick ? 1 : 3);
    bench_kernels(ctx, repeats);
    const auto stats = ulysses::device_memory_stats(0);
    std::printf(
        "device memory: peak in use %.1f MiB, reserved %.1f MiB, %lld cudaMalloc calls, "
        "%lld cache hits\n",
        stats.peak_in_use / 1048576.0, stats.reserved / 1048576.0,
        static_cast<long long>(stats.device_allocations), static_cast<long long>(stats.cache_hits));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
