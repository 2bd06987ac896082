// What a ZeRO layout is and what it costs per rank: the configuration (stage, offloads,
// overlap) with its validation, and the model-state bytes of zero.h's ZeroState as a formula,
// which the memory plan (parallel/memory_plan.h) and `ulysses info` use without building a
// state. ZeroState::memory() reports the same bytes for a built state (tests compare them).
//
// Per-rank memory (N parameters; every group rounded up to its padded size Z * s, and "N/Z"
// meaning the sum of the per-group shards s):
//
//   fp32 (CPU reference)   params        grads         optimizer (exp_avg + exp_avg_sq)
//   stage 0                4N            4N            8N              (unpadded, Z = 1)
//   stage 1                4N            4N            8N/Z
//   stage 2                4N            4N/Z          8N/Z
//   stage 3                4N/Z          4N/Z          8N/Z
//
//   bf16 mixed (CUDA)      params (bf16) master (fp32) grads (fp32)  optimizer (fp32)
//   stage 0                2N            4N            4N            8N
//   stage 1                2N            4N/Z          4N            8N/Z
//   stage 2                2N            4N/Z          4N/Z          8N/Z
//   stage 3                2N/Z          4N/Z          4N/Z          8N/Z
//
// Not counted in the table (bounded separately by ZeroMemory::transient, which the trainer's
// plan adds to its buffers): the transient full buffers of stage 2-3 (one group's fp32
// gradients between grads() and grads_done() plus, with overlap, the previous group's while its
// reduce-scatter runs; the gathered compute-dtype parameters of the acquired groups plus, with overlap, one
// prefetched group; see peak_transient()).
//
#pragma once

#include <cstdint>
#include <string>

#include "ulysses/core/dtype.h"
#include "ulysses/model/config.h"
#include "ulysses/parallel/memory_plan.h"

namespace ulysses::parallel {

// The offloaded update moves a group's shard through pinned staging slots in pieces of at most
// this many elements (32 Mi: 128 MiB of f32 gradients per slot), so the staging stays small next
// to the largest group (an embedding of 0.4-0.5 G elements) and the pipeline has several steps
// per group.
inline constexpr std::int64_t kOffloadStageElements = std::int64_t{1} << 25;

struct ZeroConfig {
  int stage = 0;
  bool offload_optimizer = false;
  bool offload_params = false;
  // Stage 2-3: prefetch stage-3 gathers and run reduce-scatters asynchronously (see
  // "Overlap"; --zero-overlap / --no-zero-overlap; same results either way).
  bool overlap = true;
  // Element type of the stage-0 gradient all-reduce (--grad-reduce-dtype): bf16 halves the
  // traffic; each rank's gradient and the sum are rounded to bf16 once (the backends still add
  // in f32). Stages 1-3 reduce in f32 (bf16 is refused there).
  DType grad_reduce_dtype = DType::f32;
  // The offloaded update's piece size in elements (see "Offload"; tests use small pieces; the
  // result does not depend on it).
  std::int64_t offload_stage_elements = kOffloadStageElements;
  // Stage 2-3 with offload_optimizer (--offload-gradients): this rank's f32 gradient shards
  // live in pinned host memory instead of the device. Each group's reduced gradient is copied
  // there during backward, as soon as its reduce-scatter is added (zero.h, "Offload"), so the
  // device holds only the groups in flight; the host AdamW reads the shard where it lies.
  // Bit-identical to keeping them on the device. Not with dp_replicate > 1 (the replicas'
  // all-reduce would run on host memory).
  bool offload_gradients = false;
};

// Stage in 0..3 (Error naming --zero-stage); --offload-params needs stage 3; --offload-optimizer
// needs stage >= 1; --offload-gradients needs stage >= 2 and --offload-optimizer, and no
// replicas (replicate_size: the dp_replicate ranks; Errors naming the flags and the fix).
void validate_zero_config(const ZeroConfig& config, std::int64_t replicate_size = 1);

// Bytes per rank (see the table above). offload_gradients moves the grads column to the host.
struct ZeroMemory {
  std::int64_t params = 0;     // weights used by forward/backward (compute dtype)
  std::int64_t grads = 0;      // fp32 gradients
  std::int64_t optimizer = 0;  // AdamW moments (fp32)
  std::int64_t master = 0;     // separate fp32 master weights (bf16 mixed only)
  std::int64_t offloaded = 0;  // of the above, bytes the offload flags put in host memory
  // Not in total(): pinned host staging of the offloaded update (bf16 mixed with
  // offload_optimizer: two f32 slots, unless the gradients are offloaded themselves, and,
  // without offload_params, two compute-dtype slots, each of min(largest shard,
  // kOffloadStageElements) elements). Host memory on top of `offloaded`.
  std::int64_t host_staging = 0;
  // Of offloaded + host_staging, bytes actually page-locked: the staging, the offloaded bf16
  // parameter shards and the offloaded gradient shards (ZeroState::memory() only: 0 in the
  // formula and on the CPU backend; less when cudaHostRegister failed).
  std::int64_t pinned = 0;
  // Not in total(): a bound on the transient full buffers held at once, in sizes of the
  // largest group (stage 2-3: three fp32 gradient buffers: the one accumulating, the one being
  // reduce-scattered and, with tied embeddings, the embedding's, open from the LM head to the
  // embedding backward; stage 3: three gathered compute-dtype copies: the acquired ones and a
  // prefetched one; offload_gradients: one more fp32 shard, the reduced gradient held until its
  // copy to the host is done). The trainer's plan adds it to the buffers.
  std::int64_t transient = 0;
  std::int64_t total() const { return params + grads + optimizer + master; }
};

// The formula of the table, from the model's parameter layout. zero_group_size = Z.
ZeroMemory zero_memory_formula(const model::ModelConfig& config, const ZeroConfig& zero,
                               int zero_group_size,
                               Precision precision = Precision::fp32);
inline ZeroMemory zero_memory_formula(const model::ModelConfig& config, int stage,
                                      int zero_group_size,
                                      Precision precision = Precision::fp32) {
  return zero_memory_formula(config, ZeroConfig{stage, false, false}, zero_group_size, precision);
}

// Per-rank memory of stages 0..3 for `zero_group_size` ranks, as printed by `ulysses info`:
// one row per stage with params, master, grads, optimizer and total, in bytes and GiB.
std::string zero_memory_table(const model::ModelConfig& config, int zero_group_size,
                              Precision precision);

}  // namespace ulysses::parallel
