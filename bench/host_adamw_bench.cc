// Host AdamW throughput (the --offload-optimizer update: ops/cpu/adamw.cc) with the bf16 copy
// written in the same pass, over one 32 Mi-element piece (ZeroConfig::offload_stage_elements),
// per OpenMP thread count. Bytes moved per element: 16 read (param, grad, moments) + 14 written
// (param, moments, bf16 copy). Multiply the per-element time by a model's parameters for the
// host update of one step (qwen3-4b: 4.02 G elements).
// Run on the GPU machine's host: build/host_adamw_bench [--benchmark_format=json]
#include <benchmark/benchmark.h>
#include <omp.h>

#include "ulysses/core/tensor.h"
#include "ulysses/ops/adamw.h"

namespace {

void BM_HostAdamWWithCopy(benchmark::State& state) {
  using namespace ulysses;
  const std::int64_t n = std::int64_t{1} << 25;
  const int threads = static_cast<int>(state.range(0));
  Tensor param = Tensor::zeros({n}, DType::f32), grad = Tensor::zeros({n}, DType::f32);
  Tensor m = Tensor::zeros({n}, DType::f32), v = Tensor::zeros({n}, DType::f32);
  Tensor copy = Tensor::zeros({n}, DType::bf16);
  for (std::int64_t i = 0; i < n; ++i) {
    param.data<float>()[i] = 0.01f * static_cast<float>(i % 97);
    grad.data<float>()[i] = 1e-3f * static_cast<float>(i % 89) - 0.04f;
  }
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const Context host;
  ops::AdamWConfig config;
  config.weight_decay = 0.1f;
  std::int64_t step = 1;
  for (auto _ : state) ops::adamw_step_with_copy(host, config, step++, param, grad, m, v, copy);
  omp_set_num_threads(saved);
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 30);
  state.counters["threads"] = threads;
}

BENCHMARK(BM_HostAdamWWithCopy)
    ->Arg(1)
    ->Arg(4)
    ->Arg(8)
    ->Arg(16)
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
