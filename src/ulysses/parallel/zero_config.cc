#include "ulysses/parallel/zero_config.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "ulysses/core/error.h"
#include "ulysses/core/format.h"
#include "ulysses/model/params.h"

namespace ulysses::parallel {

namespace {

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace

void validate_zero_config(const ZeroConfig& c, std::int64_t replicate_size) {
  if (c.grad_reduce_dtype != DType::f32 && c.grad_reduce_dtype != DType::bf16)
    UL_FAIL("--grad-reduce-dtype must be float32 or bfloat16 (got ", dtype_name(c.grad_reduce_dtype),
            ")");
  if (c.grad_reduce_dtype == DType::bf16 && c.stage > 0)
    UL_FAIL("--grad-reduce-dtype bfloat16 is implemented for --zero-stage 0 only (got stage ",
            c.stage, "); use --grad-reduce-dtype float32 with ZeRO");
  UL_CHECK(c.offload_stage_elements >= 1, "ZeroConfig: offload_stage_elements is ",
           c.offload_stage_elements, ", expected >= 1");
  if (c.stage < 0 || c.stage > 3) UL_FAIL("--zero-stage must be 0, 1, 2 or 3 (got ", c.stage, ")");
  if (c.offload_params && c.stage != 3)
    UL_FAIL("--offload-params needs --zero-stage 3 (got --zero-stage ", c.stage,
            "): parameters are sharded only at stage 3; use --zero-stage 3 or drop "
            "--offload-params");
  if (c.offload_gradients && (c.stage < 2 || !c.offload_optimizer))
    UL_FAIL("--offload-gradients needs --zero-stage 2 or 3 and --offload-optimizer (got "
            "--zero-stage ",
            c.stage, c.offload_optimizer ? " with" : " without",
            " --offload-optimizer): the gradient shards go to the host AdamW that "
            "--offload-optimizer runs; add those flags or drop --offload-gradients");
  if (c.offload_gradients && replicate_size > 1)
    UL_FAIL("--offload-gradients with --dp-replicate-size ", replicate_size,
            ": the replicas' gradient all-reduce would run on host memory; use "
            "--dp-replicate-size 1 (shard over every rank with --dp-shard-size) or drop "
            "--offload-gradients");
  if (c.offload_optimizer && c.stage < 1)
    UL_FAIL(
        "--offload-optimizer needs --zero-stage 1, 2 or 3 (got --zero-stage 0); raise "
        "--zero-stage or drop --offload-optimizer");
}

ZeroMemory zero_memory_formula(const model::ModelConfig& config, const ZeroConfig& zero,
                               int zero_group_size, Precision precision) {
  validate_zero_config(zero);
  UL_CHECK(zero_group_size >= 1, "zero_memory_formula: zero_group_size must be >= 1, got ",
           zero_group_size);
  const std::int64_t Z = zero.stage == 0 ? 1 : zero_group_size;
  // elements: padded sum, shard sum, largest group (padded), largest shard
  std::int64_t full = 0, shard = 0, largest = 0, largest_shard = 0;
  const model::ParamLayout layout(config);
  for (const auto& group : layout.groups()) {
    const std::int64_t s = ceil_div(group.numel, Z);
    full += Z * s;
    shard += s;
    largest = std::max(largest, Z * s);
    largest_shard = std::max(largest_shard, s);
  }
  const bool bf16 = precision == Precision::bf16_mixed;
  ZeroMemory m;
  m.params = (bf16 ? 2 : 4) * (zero.stage >= 3 ? shard : full);
  m.grads = 4 * (zero.stage >= 2 ? shard : full);
  m.optimizer = 8 * shard;
  m.master = bf16 ? 4 * shard : 0;
  if (zero.offload_optimizer) m.offloaded += m.optimizer + m.master;
  if (zero.offload_params) m.offloaded += m.params;
  if (zero.offload_gradients) m.offloaded += m.grads;
  if (zero.offload_optimizer && bf16) {
    std::int64_t slot = 0;  // elements of one staging slot
    for (const auto& group : layout.groups())
      slot = std::max(slot, std::min(ceil_div(group.numel, Z), zero.offload_stage_elements));
    m.host_staging =
        (zero.offload_gradients ? 0 : 2 * 4 * slot) + (zero.offload_params ? 0 : 2 * 2 * slot);
  }
  if (zero.stage >= 2) m.transient += 3 * 4 * largest;
  if (zero.stage >= 3) m.transient += 3 * (bf16 ? 2 : 4) * largest;
  if (zero.offload_gradients && bf16) m.transient += 4 * largest_shard;
  return m;
}

std::string zero_memory_table(const model::ModelConfig& config, int zero_group_size,
                              Precision precision) {
  std::ostringstream out;
  out << "ZeRO memory per rank over " << zero_group_size << " ranks (dp_shard x sp), "
      << (precision == Precision::fp32 ? "fp32" : "bf16 + fp32 master")
      << ", model states only (bytes):\n";
  out << "  stage        params        master         grads     optimizer         total\n";
  for (int stage = 0; stage <= 3; ++stage) {
    const ZeroMemory m = zero_memory_formula(config, stage, zero_group_size, precision);
    // transient: the bound on the full buffers in flight at stage 2-3 (not in the total)
    char line[200];
    std::snprintf(line, sizeof line, "  %5d %13lld %13lld %13lld %13lld %13lld  (%s)", stage,
                  static_cast<long long>(m.params), static_cast<long long>(m.master),
                  static_cast<long long>(m.grads), static_cast<long long>(m.optimizer),
                  static_cast<long long>(m.total()), format_bytes(m.total()).c_str());
    out << line;
    if (m.transient > 0) out << " + up to " << format_bytes(m.transient) << " transient";
    out << "\n";
  }
  return out.str();
}

}  // namespace ulysses::parallel
