// GPU op benchmark: causal attention (qwen3-4b heads: 32 query heads, 8 kv heads, head_dim 128)
// forward and backward at 8K and 32K tokens, and the bf16 GEMMs of the qwen3-4b projections
// through ops::linear. Plain timing: the context's stream is synchronized before each clock read;
// warm-up first, the median of several timed runs. Prints a table; exits 0 without a GPU.
//   cuda_ops_bench [--quick]
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
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/cudnn_attention.h"
#endif
#include "ulysses/ops/linear.h"

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
void bench_attention(const Context& base, AttentionKernel kernel, std::int64_t T,
                     std::int64_t documents, int repeats) {
  Context ctx = base;
  ctx.attention_kernel = kernel;
  const std::int64_t Hq = 32, Hkv = 8, D = 128;
  Rng rng(static_cast<std::uint64_t>(T));
  const Device dev = ctx.device;
  const Tensor q = random_bf16({T, Hq, D}, rng, 2.0f, dev);
  const Tensor k = random_bf16({T, Hkv, D}, rng, 2.0f, dev);
  const Tensor v = random_bf16({T, Hkv, D}, rng, 1.0f, dev);
  const Tensor dout = random_bf16({T, Hq, D}, rng, 1.0f, dev);
  std::vector<std::int32_t> bounds;
  for (std::int64_t i = 0; i <= documents; ++i)
    bounds.push_back(static_cast<std::int32_t>(T * i / documents));
  const Tensor cu =
      Tensor::from_ints(bounds, {static_cast<std::int64_t>(bounds.size())}).to(dev);
  Tensor out = Tensor::empty({T, Hq, D}, DType::bf16, dev);
  Tensor lse = Tensor::empty({Hq, T}, DType::f32, dev);
  Tensor dq = Tensor::zeros({T, Hq, D}, DType::bf16, dev);
  Tensor dk = Tensor::zeros({T, Hkv, D}, DType::bf16, dev);
  Tensor dv = Tensor::zeros({T, Hkv, D}, DType::bf16, dev);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const double fwd = time_median(ctx, 1, repeats, [&] {
    ops::attention_forward(ctx, q, k, v, cu, scale, out, lse);
  });
  const double bwd = time_median(ctx, 1, repeats, [&] {
    ops::attention_backward(ctx, q, k, v, cu, scale, out, lse, dout, dq, dk, dv);
  });
  // Causal: half of the dense 4 L^2 D H forward FLOPs per document of L tokens; backward
  // counted as 2.5x forward.
  const double L = static_cast<double>(T) / static_cast<double>(documents);
  const double fwd_flops = 4.0 * L * L / 2 * D * Hq * static_cast<double>(documents);
  const double bwd_flops = 2.5 * fwd_flops;
  std::printf("attention %-7s causal T=%-6lld docs=%-3lld Hq=32 Hkv=8 D=128 | fwd %8.3f ms %6.1f "
              "TFLOP/s | bwd %8.3f ms %6.1f TFLOP/s | fwd+bwd %6.1f TFLOP/s\n",
              kernel == AttentionKernel::cudnn ? "cudnn" : "builtin", static_cast<long long>(T),
              static_cast<long long>(documents), fwd * 1e3, fwd_flops / fwd / 1e12, bwd * 1e3,
              bwd_flops / bwd / 1e12, (fwd_flops + bwd_flops) / (fwd + bwd) / 1e12);
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
  const double fwd = time_median(ctx, 2, repeats, [&] { ops::linear_forward(ctx, x, w, Tensor(), y); });
  const double bwd = time_median(ctx, 2, repeats, [&] {
    ops::linear_backward(ctx, x, w, dy, dx, dw, Tensor());
  });
  const double flops = 2.0 * static_cast<double>(N) * K * M;
  std::printf("linear %-10s N=%-6lld K=%-6lld M=%-7lld | fwd %7.3f ms %6.1f TFLOP/s | bwd (dx bf16 + "
              "dW f32) %7.3f ms %6.1f TFLOP/s\n",
              name, static_cast<long long>(N), static_cast<long long>(K), static_cast<long long>(M),
              fwd * 1e3, flops / fwd / 1e12, bwd * 1e3, 2 * flops / bwd / 1e12);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
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
    // qwen3-4b: hidden 2560, 32 x 128 query, 8 x 128 kv, intermediate 9728, vocab 151936.
    const std::int64_t N = 8192;
    bench_linear(ctx, "q_proj", N, 2560, 4096, repeats);
    bench_linear(ctx, "k/v_proj", N, 2560, 1024, repeats);
    bench_linear(ctx, "o_proj", N, 4096, 2560, repeats);
    bench_linear(ctx, "gate/up", N, 2560, 9728, repeats);
    bench_linear(ctx, "down", N, 9728, 2560, repeats);
    bench_linear(ctx, "lm_head", 1024, 2560, 151936, repeats);
    for (const auto kernel : {ulysses::AttentionKernel::cudnn, ulysses::AttentionKernel::builtin})
      for (const std::int64_t T : {8192, 32768}) bench_attention(ctx, kernel, T, 1, quick ? 2 : 5);
    bench_attention(ctx, ulysses::AttentionKernel::cudnn, 32768, 8, quick ? 2 : 5);
    bench_attention(ctx, ulysses::AttentionKernel::cudnn, 131072, 1, 2);
    const auto stats = ulysses::device_memory_stats(0);
    std::printf("device memory: peak in use %.1f MiB, reserved %.1f MiB, %lld cudaMalloc calls, "
                "%lld cache hits\n",
                stats.peak_in_use / 1048576.0, stats.reserved / 1048576.0,
                static_cast<long long>(stats.device_allocations),
                static_cast<long long>(stats.cache_hits));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
