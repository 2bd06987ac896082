#include "ulysses/parallel/mesh.h"

#include <sstream>

#include "ulysses/core/error.h"

namespace ulysses::parallel {

ParallelConfig resolve_parallel_config(const ParallelConfig& in, int world_size,
                                       const model::ModelConfig& model) {
  ParallelConfig c = in;
  if (c.sp_size < 1) UL_FAIL("--sp-size must be >= 1 (got ", c.sp_size, ")");
  if (c.dp_replicate_size < 1)
    UL_FAIL("--dp-replicate-size must be >= 1 (got ", c.dp_replicate_size, ")");
  if (c.dp_shard_size < 0) UL_FAIL("--dp-shard-size must be >= 1, or 0 for automatic");
  if (c.dp_shard_size == 0) {
    const std::int64_t groups = c.sp_size * c.dp_replicate_size;
    if (world_size % groups != 0)
      UL_FAIL("world size ", world_size, " is not divisible by --sp-size ", c.sp_size,
              " x --dp-replicate-size ", c.dp_replicate_size,
              "; launch a multiple of ", groups, " ranks or change the sizes");
    c.dp_shard_size = world_size / groups;
  }
  const std::int64_t product = c.dp_replicate_size * c.dp_shard_size * c.sp_size;
  if (product != world_size)
    UL_FAIL("--dp-replicate-size ", c.dp_replicate_size, " x --dp-shard-size ", c.dp_shard_size,
            " x --sp-size ", c.sp_size, " = ", product, " but the job has ", world_size,
            " ranks; make the product equal the number of ranks (or leave --dp-shard-size "
            "unset to derive it)");
  if (c.ring_size < 1 || c.sp_size % c.ring_size != 0)
    UL_FAIL("--ring-size ", c.ring_size, " does not divide --sp-size ", c.sp_size,
            " (sp = Ulysses degree x ring size); choose a ring size that divides ", c.sp_size);
  const std::int64_t heads = model.num_attention_heads, kv = model.num_key_value_heads;
  const std::int64_t U = c.ulysses_size();
  // Ulysses alone names --sp-size; a hybrid its Ulysses degree (pure ring: U = 1, no limit).
  const std::string degree = c.ring_size == 1
                                 ? "--sp-size " + std::to_string(c.sp_size)
                                 : "the Ulysses degree " + std::to_string(U) + " (--sp-size " +
                                       std::to_string(c.sp_size) + " / --ring-size " +
                                       std::to_string(c.ring_size) + ")";
  if (heads % U != 0) {
    std::ostringstream ok;
    for (std::int64_t p = 1; p <= heads; ++p)
      if (heads % p == 0 && (kv % p == 0 || p % kv == 0)) ok << (ok.tellp() ? ", " : "") << p;
    UL_FAIL(degree, " does not divide num_attention_heads ", heads,
            " (Ulysses gives each rank of its group heads/degree heads); ",
            c.ring_size == 1 ? "sp sizes" : "Ulysses degrees", " that work: ", ok.str(),
            c.ring_size == 1 ? " (or --sp-backend ring / hybrid --ring-size for larger sp)"
                             : " (change --ring-size)");
  }
  if (kv % U != 0 && U % kv != 0)
    UL_FAIL(degree, " and num_key_value_heads ", kv,
            ": kv heads must be divisible by the Ulysses degree (split) or divide it "
            "(replicated); choose a degree that is a divisor or a multiple of ",
            kv);
  return c;
}

Mesh::Mesh(comm::Communicator& world, const ParallelConfig& config)
    : world_(world), config_(config) {
  const int sp = static_cast<int>(config.sp_size);
  UL_CHECK(config.sp_size * config.dp_shard_size * config.dp_replicate_size == world.size(),
           "mesh sizes do not multiply to the world size (resolve the config first)");
  sp_group_ = world.split(world.rank() / sp, world.rank() % sp);
  const int zero_size = static_cast<int>(config.dp_shard_size * config.sp_size);
  zero_group_ = world.split(world.rank() / zero_size, world.rank() % zero_size);
  replicate_group_ = world.split(world.rank() % zero_size, world.rank() / zero_size);
  if (config.ring_size > 1) {
    const int U = static_cast<int>(config.ulysses_size()), r = sp_group_->rank();
    ulysses_group_ = sp_group_->split(r / U, r % U);
    ring_group_ = sp_group_->split(r % U, r / U);
  }
}

comm::Communicator& Mesh::ulysses_group() const {
  UL_CHECK(ulysses_group_, "mesh: no Ulysses group (the layout has no ring: --ring-size 1)");
  return *ulysses_group_;
}

comm::Communicator& Mesh::ring_group() const {
  UL_CHECK(ring_group_, "mesh: no ring group (the layout has no ring: --ring-size 1)");
  return *ring_group_;
}

std::string Mesh::describe(int zero_stage) const {
  std::ostringstream out;
  const int sp = static_cast<int>(config_.sp_size);
  out << "mesh: world " << world_.size() << " = dp_replicate " << config_.dp_replicate_size
      << " x dp_shard " << config_.dp_shard_size << " x sp " << sp << "\n";
  out << "  sp groups (ranks that split one sequence):";
  for (int g = 0; g < world_.size() / sp; ++g) {
    out << " [";
    for (int r = 0; r < sp; ++r) out << (r ? " " : "") << g * sp + r;
    out << "]";
  }
  if (config_.ring_size > 1) {
    // The first SP group's grid (the others are the same, shifted by g * sp).
    const int R = static_cast<int>(config_.ring_size), U = static_cast<int>(config_.ulysses_size());
    out << "\n  sp layout: " << (U == 1 ? "ring" : "hybrid") << " = Ulysses " << U << " x ring "
        << R << "; Ulysses all-to-all groups (consecutive ranks):";
    for (int i = 0; i < R; ++i) {
      out << " [";
      for (int u = 0; u < U; ++u) out << (u ? " " : "") << i * U + u;
      out << "]";
    }
    out << "; rings (K/V blocks passed to the next):";
    for (int u = 0; u < U; ++u) {
      out << " [";
      for (int i = 0; i < R; ++i) out << (i ? " " : "") << i * U + u;
      out << "]";
    }
    out << "; zigzag: ring rank i holds chunks i and " << 2 * R - 1 << "-i of " << 2 * R;
  }
  const std::int64_t zero_size = config_.dp_shard_size * config_.sp_size;
  if (world_.size() == 1) {
    out << "\n  gradients: one rank, nothing to reduce\n";
  } else if (zero_stage >= 2) {
    out << "\n  gradients: reduce-scattered over each ZeRO group of " << zero_size
        << " ranks (dp_shard x sp) during backward";
    if (config_.dp_replicate_size > 1)
      out << ", then all-reduced over " << config_.dp_replicate_size << " replicas";
    out << "\n";
  } else {
    out << "\n  gradients: all-reduced over all " << world_.size() << " ranks\n";
  }
  return out.str();
}

}  // namespace ulysses::parallel
