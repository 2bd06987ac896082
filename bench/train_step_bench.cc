// CPU training-step throughput of a preset (default tiny) on the synthetic copy task.
// Reports tokens/s and model TFLOP/s (FLOP formula of docs/architecture.md) per sequence length.
// Run: build/train_step_bench [--benchmark_format=json]   (or `make bench`)
#include <benchmark/benchmark.h>

#include "ulysses/model/flops.h"
#include "ulysses/parallel/memory_plan.h"
#include "ulysses/train/trainer.h"

namespace {

void BM_TrainStep(benchmark::State& state, const std::string& preset) {
  ulysses::train::TrainConfig config;
  config.model = preset;
  config.max_seq_length = state.range(0);
  config.per_device_train_batch_size = 1;
  config.max_steps = 1000000;
  config.output_dir = "";
  config.quiet = true;
  config.gradient_checkpointing = state.range(1) != 0;
  ulysses::train::Trainer trainer(config);
  trainer.train_step(1);  // warm-up
  std::int64_t tokens = 0, step = 2;
  double flops = 0;
  for (auto _ : state) {
    const auto m = trainer.train_step(step++);
    tokens += m.tokens;
    flops += m.tflops_per_device * 1e12 * m.seconds;
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["TFLOP_per_s"] = benchmark::Counter(flops / 1e12, benchmark::Counter::kIsRate);
  state.SetLabel(preset + (config.gradient_checkpointing ? " +ckpt" : ""));
}

BENCHMARK_CAPTURE(BM_TrainStep, tiny, std::string("tiny"))
    ->ArgsProduct({{256, 1024, 4096}, {0, 1}})
    ->ArgNames({"seq", "ckpt"})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
