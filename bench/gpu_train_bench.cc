// GPU training-step benchmark: one preset at one sequence length on 1..N GPUs.
//
//   gpu_train_bench --model qwen3-4b --seq 8192 [--steps 3] [--gradient-checkpointing] [--profile]
//   mpirun -np 4 -x NCCL_NVLS_ENABLE=0 gpu_train_bench --model qwen3-4b --seq 131072
//       --sp 4 --zero-stage 3 --gradient-checkpointing      (one command line)
//
// One rank per GPU. Each sequence is one document, so attention really spans the whole sequence;
// with --sp P every rank holds seq / P tokens. --data synthetic-random (the default): seq random
// tokens, every one scored, as the PyTorch anchor's; --data synthetic-copy: the copy task's
// seq - 1 tokens and one of padding, only the copied half scored (the loss costs half as much).
// Rank 0 prints a table and one JSON line: global tokens/s, model TFLOP/s per GPU
// (docs/architecture.md formula), MFU against the dense bf16 peak (989 TFLOP/s for H100/H200
// SXM), peak device memory per GPU (the largest rank's), and a breakdown of the step: GEMM and
// attention time measured in isolation on the rank's shapes (forward + backward, times the layer
// count, plus the projections' recomputed forward with gradient checkpointing); the exposed
// communication of the timed steps, i.e. how long the compute stream stood still waiting for
// collectives (comm::set_wait_timing; the largest rank's, per step), split into the Ulysses
// all-to-alls and the ZeRO / data-parallel collectives (all-gathers, reduce-scatters,
// all-reduces, ...); and "other" = step - GEMM - attention - both exposed parts (norms, RoPE,
// loss, optimizer, host synchronizations). With --profile the GEMM and attention columns are
// the in-step times of those op kinds instead (split "in-step"; the isolated ones are printed
// beside): a long step runs the card at its power limit, at lower clocks than the short isolated
// runs, and the isolated split charges that slowdown to "other". For reference it also prints the total time of the
// Ulysses all-to-alls measured in isolation on the same groups (8 per layer: q, k, v, out
// forward; dout, dq, dk, dv backward; 4 more with checkpointing, where the recompute rebuilds
// the head-sharded q, k, v, out). With --sp-pipeline part of that time overlaps
// attention and is not exposed.
// --profile: rank 0 also prints a per-op-kind table of the timed steps (CUDA events around every
// op dispatch, core/op_profiler.h): kind, calls, ms per step, share of the step, "unaccounted"
// (step minus the op sum: host gaps, allocations, synchronizations, untimed work) and the
// phases the decoder marks. The events add a few microseconds per op to the step.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "ulysses/comm/communicator.h"
#include "ulysses/comm/nccl_communicator.h"
#include "ulysses/core/cuda_context.h"
#include "ulysses/core/device_memory.h"
#include "ulysses/core/op_profiler.h"
#include "ulysses/model/flops.h"
#include "ulysses/ops/attention.h"
#include "ulysses/ops/linear.h"
#include "ulysses/parallel/memory_plan.h"
#include "ulysses/parallel/ulysses_exchange.h"
#include "ulysses/train/trainer.h"

namespace {

using namespace ulysses;

double seconds_of(const Context& ctx, const std::function<void()>& f, int repeats) {
  f();  // warm-up
  synchronize(ctx);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) f();
  synchronize(ctx);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / repeats;
}

// Timing inputs: one block of 2^20 normal values repeated (drawing every value of the larger
// activations one by one took tens of seconds at 128K tokens; only the timing matters here).
Tensor random_bf16(const Shape& shape, Device device, std::uint64_t seed) {
  Tensor host = Tensor::empty(shape, DType::bf16);
  const std::int64_t n = host.numel(), block = std::min<std::int64_t>(n, std::int64_t{1} << 20);
  Tensor values = Tensor::empty({block}, DType::f32);
  Rng rng(seed);
  for (std::int64_t i = 0; i < block; ++i) values.data<float>()[i] = 0.05f * rng.normal();
  const Tensor rounded = values.to(DType::bf16);
  const std::size_t element = dtype_size(DType::bf16);
  for (std::int64_t at = 0; at < n; at += block)
    std::memcpy(static_cast<char*>(host.raw()) + static_cast<std::size_t>(at) * element,
                rounded.raw(), static_cast<std::size_t>(std::min(block, n - at)) * element);
  return host.to(device);
}

// Forward + backward seconds of one layer's projections on T local tokens and of its attention
// over the whole sequence of S = T * P tokens for this rank's Hq / P query heads.
std::pair<double, double> layer_component_seconds(const Context& ctx, const model::ModelConfig& c,
                                                  std::int64_t T, std::int64_t P) {
  const Device dev = ctx.device;
  const std::int64_t C = c.hidden_size, I = c.intermediate_size;
  struct Shape3 {
    std::int64_t in, out;
  };
  const Shape3 projections[] = {{C, c.q_dim()}, {C, c.kv_dim()}, {C, c.kv_dim()}, {c.q_dim(), C},
                                {C, I},         {C, I},          {I, C}};
  double gemm = 0;
  for (const auto& p : projections) {
    Tensor x = random_bf16({T, p.in}, dev, 1), w = random_bf16({p.out, p.in}, dev, 2);
    Tensor y = Tensor::empty({T, p.out}, DType::bf16, dev);
    Tensor dx = Tensor::zeros({T, p.in}, DType::bf16, dev);
    Tensor dw = Tensor::zeros({p.out, p.in}, DType::f32, dev);
    gemm += seconds_of(
        ctx,
        [&] {
          ops::linear_forward(ctx, x, w, Tensor(), y);
          ops::linear_backward(ctx, x, w, y, dx, dw, Tensor());
        },
        3);
  }
  const std::int64_t Hq = c.num_attention_heads / P, D = c.head_dim;
  const std::int64_t Hkv = std::max<std::int64_t>(1, c.num_key_value_heads / P);
  T *= P;
  Tensor q = random_bf16({T, Hq, D}, dev, 3), k = random_bf16({T, Hkv, D}, dev, 4),
         v = random_bf16({T, Hkv, D}, dev, 5);
  Tensor out = Tensor::empty({T, Hq, D}, DType::bf16, dev);
  Tensor lse = Tensor::empty({Hq, T}, DType::f32, dev);
  Tensor dq = Tensor::zeros({T, Hq, D}, DType::bf16, dev),
         dk = Tensor::zeros({T, Hkv, D}, DType::bf16, dev),
         dv = Tensor::zeros({T, Hkv, D}, DType::bf16, dev);
  const Tensor cu = Tensor::from_ints({0, static_cast<std::int32_t>(T)}, {2}).to(dev);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const double attention = seconds_of(
      ctx,
      [&] {
        ops::attention_forward(ctx, q, k, v, cu, scale, out, lse);
        ops::attention_backward(ctx, q, k, v, cu, scale, out, lse, out, dq, dk, dv);
      },
      1);
  return {gemm, attention};
}

// Seconds of one layer's eight Ulysses all-to-alls on this rank (T local tokens), on the
// trainer's own SP group. Collective: every rank calls it.
double layer_all_to_all_seconds(const Context& ctx, comm::Communicator& group,
                                const model::ModelConfig& c, std::int64_t T, bool checkpointing) {
  const std::int64_t P = group.size();
  if (P == 1) return 0;
  const Device dev = ctx.device;
  const std::int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const auto qh = parallel::query_head_chunks(Hq, P);
  const auto kvh = parallel::kv_head_chunks(Hkv, P);
  Tensor q = random_bf16({T, Hq, D}, dev, 6), k = random_bf16({T, Hkv, D}, dev, 7);
  Tensor q_back = Tensor::zeros({T, Hq, D}, DType::bf16, dev);
  Tensor k_back = Tensor::zeros({T, Hkv, D}, DType::bf16, dev);
  group.barrier();
  return seconds_of(
      ctx,
      [&] {
        // forward: q, k, v to heads, out back; backward: dout to heads, dq, dk, dv back. With
        // checkpointing the recompute also brings q, k, v and out to heads again (restore).
        if (checkpointing) {
          parallel::sequence_to_heads(ctx, group, q, qh.first_head, qh.chunk);    // q
          parallel::sequence_to_heads(ctx, group, k, kvh.first_head, kvh.chunk);  // k
          parallel::sequence_to_heads(ctx, group, k, kvh.first_head, kvh.chunk);  // v
          parallel::sequence_to_heads(ctx, group, q, qh.first_head, qh.chunk);    // out
        }
        for (int pass = 0; pass < 2; ++pass) {
          const Tensor q_heads =
              parallel::sequence_to_heads(ctx, group, q, qh.first_head, qh.chunk);
          const Tensor k_heads =
              parallel::sequence_to_heads(ctx, group, k, kvh.first_head, kvh.chunk);
          const Tensor v_heads =
              parallel::sequence_to_heads(ctx, group, k, kvh.first_head, kvh.chunk);
          parallel::heads_to_sequence(ctx, group, q_heads, qh.first_head, qh.chunk, q_back,
                                      pass == 1);
          if (pass == 1) {
            parallel::heads_to_sequence(ctx, group, k_heads, kvh.first_head, kvh.chunk, k_back,
                                        true);
            parallel::heads_to_sequence(ctx, group, v_heads, kvh.first_head, kvh.chunk, k_back,
                                        true);
          }
        }
      },
      3);
}

// A layer count of the command line: "auto" (the trainer resolves it) or a number.
std::int64_t count_or_auto(const char* arg, std::int64_t auto_value) {
  return std::strcmp(arg, "auto") == 0 ? auto_value : std::atoll(arg);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = "qwen3-4b", data = "synthetic-random";
  std::int64_t seq = 8192, steps = 3, sp = 1, zero_stage = 0;
  bool checkpointing = false, offload_optimizer = false, offload_params = false, profile = false;
  bool offload_gradients = false;
  bool sp_pipeline = false, zero_overlap = true, recompute_attention = false, warmup = true;
  bool offload_activations = false;
  std::int64_t mlp_tile = -1, offload_layers = -1, recompute_layers = -1, loss_tile = 0;
  std::int64_t checkpoint_layers = -1;
  bool breakdown = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--model" && i + 1 < argc)
      model = argv[++i];
    else if (a == "--data" && i + 1 < argc)
      data = argv[++i];
    else if (a == "--seq" && i + 1 < argc)
      seq = std::atoll(argv[++i]);
    else if (a == "--steps" && i + 1 < argc)
      steps = std::atoll(argv[++i]);
    else if (a == "--sp" && i + 1 < argc)
      sp = std::atoll(argv[++i]);
    else if (a == "--zero-stage" && i + 1 < argc)
      zero_stage = std::atoll(argv[++i]);
    else if (a == "--gradient-checkpointing")
      checkpointing = true;
    else if (a == "--offload-optimizer")
      offload_optimizer = true;
    else if (a == "--offload-params")
      offload_params = true;
    else if (a == "--offload-gradients")
      offload_gradients = true;
    else if (a == "--sp-pipeline")
      sp_pipeline = true;
    else if (a == "--no-zero-overlap")
      zero_overlap = false;
    else if (a == "--profile")
      profile = true;
    else if (a == "--recompute-attention")
      recompute_attention = true;
    else if (a == "--offload-activations")
      offload_activations = true;
    else if (a == "--offload-activation-layers" && i + 1 < argc)
      offload_layers = std::atoll(argv[++i]);
    else if (a == "--mlp-tile-tokens" && i + 1 < argc)
      mlp_tile = std::atoll(argv[++i]);
    else if (a == "--loss-tile-tokens" && i + 1 < argc)
      loss_tile = std::atoll(argv[++i]);
    else if (a == "--no-warmup")
      warmup = false;
    else if (a == "--recompute-attention-layers" && i + 1 < argc)
      recompute_layers = count_or_auto(argv[++i], train::kRecomputeAttentionAuto);
    else if (a == "--checkpoint-layers" && i + 1 < argc)
      checkpoint_layers = count_or_auto(argv[++i], train::kCheckpointLayersAuto);
    else if (a == "--no-breakdown")
      breakdown = false;
    else {
      std::fprintf(stderr,
                   "usage: gpu_train_bench [--model P] "
                   "[--data synthetic-random|synthetic-copy] [--seq N] [--steps K] "
                   "[--sp P] "
                   "[--zero-stage Z] [--gradient-checkpointing] [--offload-optimizer] "
                   "[--offload-params] [--offload-gradients] [--sp-pipeline] "
                   "[--no-zero-overlap] [--profile] "
                   "[--recompute-attention] [--offload-activations] "
                   "[--offload-activation-layers N] [--mlp-tile-tokens N] "
                   "[--loss-tile-tokens N] "
                   "[--recompute-attention-layers N|auto] [--checkpoint-layers N|auto] "
                   "[--no-warmup: reach runs, every step timed] "
                   "[--no-breakdown: skip the isolated GEMM/attention timing]\n");
      return 2;
    }
  }
  std::unique_ptr<comm::Communicator> world;
  try {
    if (cuda_device_count() == 0) {
      std::printf("gpu_train_bench: no CUDA device visible; nothing measured\n");
      return 0;
    }
    world = comm::make_mpi_world();
    const bool main_rank = world->rank() == 0;
    train::TrainConfig config;
    config.model = model;
    config.data = data;
    config.device = "cuda";
    config.max_seq_length = seq;
    config.copy_min_length = config.copy_max_length = (seq - 2) / 2;
    config.per_device_train_batch_size = 1;
    config.max_steps = steps + (warmup ? 1 : 0);
    config.gradient_checkpointing = checkpointing;
    config.sp_size = sp;
    config.zero_stage = zero_stage;
    config.offload_optimizer = offload_optimizer;
    config.offload_params = offload_params;
    config.offload_gradients = offload_gradients;
    config.sp_pipeline = sp_pipeline;
    config.zero_overlap = zero_overlap;
    config.recompute_attention = recompute_attention;
    config.recompute_attention_layers = recompute_layers;
    config.checkpoint_layers = checkpoint_layers;
    config.offload_activations = offload_activations;
    config.offload_activation_layers = offload_layers;
    config.mlp_tile_tokens = mlp_tile;
    if (loss_tile > 0) config.loss_tile_tokens = loss_tile;
    config.output_dir = "";
    config.quiet = true;
    config.learning_rate = 1e-5;
    const auto setup_start = std::chrono::steady_clock::now();
    train::Trainer trainer(config, *world);
    const auto plan_start = std::chrono::steady_clock::now();
    const std::string plan = trainer.plan();
    const auto setup_end = std::chrono::steady_clock::now();
    // Setup = the trainer's constructor (context, NCCL, state allocation, weights) + the plan.
    const double setup_s = std::chrono::duration<double>(setup_end - setup_start).count();
    const double plan_s = std::chrono::duration<double>(setup_end - plan_start).count();
    const train::Trainer::SetupTimes& times = trainer.setup_times();
    if (main_rank) {
      std::printf(
          "%ssetup (init, NCCL, plan): %.1f s = state %.2f s + weights %.2f s + plan "
          "%.2f s + other %.2f s\n",
          plan.c_str(), setup_s, times.state_s, times.weights_s, plan_s,
          std::max(0.0, setup_s - times.state_s - times.weights_s - plan_s));
      std::fflush(stdout);
    }
    std::shared_ptr<OpProfiler> profiler;
    if (profile) {
      profiler = std::make_shared<OpProfiler>();
      profiler->set_enabled(false);  // not the warm-up step
      trainer.set_profiler(profiler);
    }
    const std::int64_t first = warmup ? 2 : 1;
    if (warmup) trainer.train_step(1);  // warm-up: plans, allocator
    if (profiler) profiler->set_enabled(true);
    double seconds = 0, flops = 0;
    std::int64_t tokens = 0, peak = 0;
    comm::set_wait_timing(true);  // the timed steps only
    for (std::int64_t s = first; s < first + steps; ++s) {
      const auto m = trainer.train_step(s);
      seconds += m.seconds;
      flops += m.tflops_per_device * 1e12 * m.seconds;
      tokens += m.tokens;
      peak = std::max(peak, m.peak_mem_bytes);
      if (main_rank) {
        std::printf("step %lld: %.3f s, loss %.4f\n", static_cast<long long>(s), m.seconds, m.loss);
        std::fflush(stdout);
      }
    }
    comm::set_wait_timing(false);
    // With --profile: the in-step GEMM and attention milliseconds per step (rank 0's; the LM
    // head's GEMMs count under "loss", so in "other").
    double profiled_gemm_ms = 0, profiled_attention_ms = 0;
    if (profiler) {
      trainer.set_profiler(nullptr);
      const std::string table = profile_table(*profiler, seconds * 1e3, steps);
      if (main_rank)
        std::printf("\nper-op profile of the timed steps (rank 0):\n%s", table.c_str());
      for (const OpProfiler::Row& row : profiler->kind_totals()) {
        if (row.kind == "gemm") profiled_gemm_ms = row.ms / static_cast<double>(steps);
        // "attention", and ring attention's "attention_block" and "attention_merge".
        if (row.kind.starts_with("attention"))
          profiled_attention_ms += row.ms / static_cast<double>(steps);
      }
    }
    // Seconds this rank's compute stream stood still for collectives in the timed steps: the
    // Ulysses all-to-alls, and the rest (ZeRO / data-parallel traffic).
    double exposed_all_to_all = 0, exposed_zero_comm = 0;
    for (const auto& [collective, stalled] : comm::take_wait_seconds())
      (collective == "all_to_all" ? exposed_all_to_all : exposed_zero_comm) += stalled;
    // The largest rank's peak memory and exposed communication.
    Tensor peak_all = Tensor::empty({1}, DType::i64);
    peak_all.data<std::int64_t>()[0] = peak;
    world->all_reduce(peak_all, comm::ReduceOp::max);
    peak = peak_all.data<std::int64_t>()[0];
    Tensor exposed_all = Tensor::empty({2}, DType::f32);
    exposed_all.data<float>()[0] = static_cast<float>(exposed_all_to_all);
    exposed_all.data<float>()[1] = static_cast<float>(exposed_zero_comm);
    world->all_reduce(exposed_all, comm::ReduceOp::max);
    exposed_all_to_all = exposed_all.data<float>()[0] / static_cast<double>(steps);
    exposed_zero_comm = exposed_all.data<float>()[1] / static_cast<double>(steps);
    const Context& ctx = trainer.context();
    const std::int64_t local = seq / sp;
    // The isolated component timings (--no-breakdown skips them: at reach lengths one layer's
    // attention alone takes seconds).
    // --checkpoint-layers N: only N of the L layers are checkpointed (the rest recompute
    // nothing but, with the MLP in tiles, its gate and up per tile in their backward).
    const double L = static_cast<double>(trainer.model_config().num_hidden_layers);
    const std::int64_t ckpt_layers = trainer.config().checkpoint_layers;
    const double checkpointed = !checkpointing    ? 0.0
                                : ckpt_layers < 0 ? L
                                                  : std::min(static_cast<double>(ckpt_layers), L);
    const auto all_to_all_of = [&](bool ckpt) {
      return layer_all_to_all_seconds(ctx, trainer.mesh().sp_group(), trainer.model_config(), local,
                                      ckpt);
    };
    const double all_to_all_isolated =
        !breakdown ? 0.0
                   : checkpointed * (checkpointed > 0 ? all_to_all_of(true) : 0.0) +
                         (L - checkpointed) * (checkpointed < L ? all_to_all_of(false) : 0.0);
    const auto [gemm_layer, attention_layer] =
        breakdown ? layer_component_seconds(ctx, trainer.model_config(), local, sp)
                  : std::pair<double, double>{0.0, 0.0};
    // A checkpointed layer's recompute runs the forward of every projection but the MLP's down
    // projection again (forward ~ 1/3 of forward + backward; a tiled MLP recomputes gate and up
    // in its backward instead, the same work); attention's forward is kept, unless
    // --recompute-attention (then it runs twice: forward ~ 1/3.5 of forward + backward).
    const model::ModelConfig& mc = trainer.model_config();
    const double C = static_cast<double>(mc.hidden_size),
                 I = static_cast<double>(mc.intermediate_size);
    const double proj = C * static_cast<double>(2 * mc.q_dim() + 2 * mc.kv_dim());
    const std::int64_t tile = train::effective_mlp_tile(trainer.config());
    const bool tiled = tile > 0 && tile < local;
    const double checkpointed_share = (proj + 2 * C * I) / (proj + 3 * C * I);
    const double whole_share = tiled ? 2 * C * I / (proj + 3 * C * I) : 0.0;
    const double recompute =
        1.0 + (checkpointed * checkpointed_share + (L - checkpointed) * whole_share) / L / 3.0;
    const double attention_recompute = checkpointing && recompute_attention ? 1.0 + 1.0 / 3.5 : 1.0;
    const double step = seconds / static_cast<double>(steps);
    const double gemm_isolated = gemm_layer * L * recompute,
                 attention_isolated = attention_layer * L * attention_recompute;
    const char* split = profiler ? "in-step" : breakdown ? "isolated" : "none";
    const double gemm = profiler ? profiled_gemm_ms / 1e3 : gemm_isolated;
    const double attention = profiler ? profiled_attention_ms / 1e3 : attention_isolated;
    if (main_rank && profiler && breakdown)
      std::printf("isolated split (short runs at full clocks): GEMM %.3f s, attention %.3f s\n",
                  gemm_isolated, attention_isolated);
    const double other =
        std::max(0.0, step - gemm - attention - exposed_all_to_all - exposed_zero_comm);
    const double tflops = flops / seconds / 1e12;
    const parallel::MemoryPlan planned = trainer.memory_plan();
    const double gib = static_cast<double>(1ll << 30);
    const double host_peak = static_cast<double>(train::host_peak_memory_bytes()) / gib;
    if (main_rank) {
      std::printf(
          "memory: device planned %.1f GiB, measured peak %.1f GiB (%+.1f%%); host "
          "planned %.1f GiB (+ the process), measured peak RSS %.1f GiB; %lld of %lld "
          "layers' activations offloaded\n",
          static_cast<double>(planned.total()) / gib, static_cast<double>(peak) / gib,
          100.0 * (static_cast<double>(peak) / static_cast<double>(planned.total()) - 1),
          static_cast<double>(planned.host_total()) / gib, host_peak,
          static_cast<long long>(planned.activation_layers_offloaded),
          static_cast<long long>(trainer.model_config().num_hidden_layers));
    }
    const double peak_tflops = 989.0;
    const int gpus = world->size();
    // "yes", or "N/L" with --checkpoint-layers N.
    const std::string ckpt_label = !checkpointing    ? "no"
                                   : ckpt_layers < 0 ? "yes"
                                                     : std::to_string(ckpt_layers) + "/" +
                                                           std::to_string(mc.num_hidden_layers);
    if (main_rank) {
      std::printf(
          "\n| model | seq | GPUs | sp | ZeRO | ckpt | step s | tokens/s | TFLOP/s/GPU | MFU | "
          "peak GiB/GPU | split | GEMM s | attention s | exposed all-to-all s (share) | "
          "exposed ZeRO comm s | other s (share) | all-to-all s (isolated) |\n");
      std::printf(
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- "
          "| --- | --- | --- | --- |\n");
      std::printf(
          "| %s | %lld | %d | %lld | %lld | %s | %.3f | %.0f | %.1f | %.1f%% | %.1f | %s | %.3f | "
          "%.3f | %.3f (%.1f%%) | %.3f | %.3f (%.1f%%) | %.3f |\n",
          model.c_str(), static_cast<long long>(seq), gpus, static_cast<long long>(sp),
          static_cast<long long>(zero_stage), ckpt_label.c_str(), step,
          static_cast<double>(tokens) / seconds, tflops, 100 * tflops / peak_tflops,
          static_cast<double>(peak) / (1ll << 30), split, gemm, attention, exposed_all_to_all,
          100 * exposed_all_to_all / step, exposed_zero_comm, other, 100 * other / step,
          all_to_all_isolated);
      std::printf(
          "{\"model\": \"%s\", \"seq\": %lld, \"gpus\": %d, \"sp\": %lld, "
          "\"zero_stage\": %lld, \"gradient_checkpointing\": %s, \"checkpoint_layers\": %lld, "
          "\"step_s\": %.4f, "
          "\"tokens_per_s\": %.1f, \"tflops_per_device\": %.2f, \"mfu\": %.4f, "
          "\"peak_gib\": %.2f, \"split\": \"%s\", \"gemm_s\": %.4f, \"attention_s\": %.4f, "
          "\"exposed_all_to_all_s\": %.4f, \"exposed_all_to_all_share\": %.4f, "
          "\"exposed_zero_comm_s\": %.4f, \"other_s\": %.4f, "
          "\"all_to_all_isolated_s\": %.4f, \"setup_s\": %.2f, \"setup_state_s\": %.2f, "
          "\"setup_weights_s\": %.2f, \"setup_plan_s\": %.2f}\n",
          model.c_str(), static_cast<long long>(seq), gpus, static_cast<long long>(sp),
          static_cast<long long>(zero_stage), checkpointing ? "true" : "false",
          static_cast<long long>(checkpointing ? ckpt_layers : 0), step,
          static_cast<double>(tokens) / seconds, tflops, tflops / peak_tflops,
          static_cast<double>(peak) / (1ll << 30), split, gemm, attention, exposed_all_to_all,
          exposed_all_to_all / step, exposed_zero_comm, other, all_to_all_isolated, setup_s,
          times.state_s, times.weights_s, plan_s);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    if (world && world->size() > 1) comm::abort_job(1);  // the other ranks may be waiting
    return 1;
  }
  return 0;
}
