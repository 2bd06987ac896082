// Mesh: how the world's ranks are arranged. world = dp_replicate x dp_shard x sp.
//
// Ranks of one SP group are contiguous: rank = (replica * dp_shard + shard) * sp + sp_rank.
// The P ranks of an SP group hold the same sequences (each its own 1/P of the tokens) and the
// same weights; the D = dp_shard * dp_replicate SP groups see different sequences. Weight
// gradients are partial sums over every rank's tokens, so they are reduced over the whole world
// (ZeRO shards over dp_shard x sp; replicas add an outer all-reduce — see docs/parallelism.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ulysses/comm/communicator.h"
#include "ulysses/model/config.h"

namespace ulysses::parallel {

struct ParallelConfig {
  std::int64_t sp_size = 1;
  std::int64_t dp_shard_size = 0;  // 0 = world / (sp_size * dp_replicate_size)
  std::int64_t dp_replicate_size = 1;
  // Ring attention inside each SP group: sp = ulysses degree (sp / ring_size) x ring_size.
  // 1: Ulysses only; sp_size: ring only; in between: hybrid (Ulysses inside groups of
  // consecutive SP ranks, a ring across them).
  std::int64_t ring_size = 1;
  std::int64_t ulysses_size() const { return ring_size > 0 ? sp_size / ring_size : sp_size; }
};

// Checks the layout against the world size and the model; throws Error with a message naming
// the option and how to fix it (product != world size; --ring-size not dividing sp; attention
// heads not divisible by the Ulysses degree sp / ring_size, listing the degrees that work; kv
// heads neither divisible by that degree nor dividing it).
// Returns the config with dp_shard_size resolved.
ParallelConfig resolve_parallel_config(const ParallelConfig& config, int world_size,
                                       const model::ModelConfig& model);

class Mesh {
 public:
  // Collective over `world`: splits it into the groups of the layout.
  Mesh(comm::Communicator& world, const ParallelConfig& config);

  comm::Communicator& world() const { return world_; }
  comm::Communicator& sp_group() const { return *sp_group_; }
  // ZeRO shards over the dp_shard x sp ranks of one replica: world ranks
  // [replica * dp_shard * sp, (replica + 1) * dp_shard * sp), in world rank order.
  comm::Communicator& zero_group() const { return *zero_group_; }
  // The dp_replicate ranks holding the same ZeRO shard: world ranks with equal
  // rank % (dp_shard * sp), in world rank order (size 1 without replicas).
  comm::Communicator& replicate_group() const { return *replicate_group_; }
  // Ring / hybrid layouts (ring_size > 1): the SP group as a grid of ring_size x U ranks,
  // sp_rank = ring_index * U + ulysses_index. ulysses_group: the U consecutive SP ranks of one
  // ring position (the all-to-all); ring_group: the ring_size SP ranks of one Ulysses index
  // (the ring), in ring order. Error when the layout has no ring.
  comm::Communicator& ulysses_group() const;
  comm::Communicator& ring_group() const;
  const ParallelConfig& config() const { return config_; }
  int sp_rank() const { return sp_group_->rank(); }
  int sp_size() const { return sp_group_->size(); }
  // Index of this rank's SP group among the D = dp_shard * dp_replicate data-parallel groups.
  int dp_index() const { return world_.rank() / static_cast<int>(config_.sp_size); }
  int dp_size() const {
    return static_cast<int>(config_.dp_shard_size * config_.dp_replicate_size);
  }
  // Human-readable layout: which world ranks form each group, and how gradients are reduced
  // at this ZeRO stage.
  std::string describe(int zero_stage = 0) const;

 private:
  comm::Communicator& world_;
  ParallelConfig config_;
  std::unique_ptr<comm::Communicator> sp_group_;
  std::unique_ptr<comm::Communicator> zero_group_;
  std::unique_ptr<comm::Communicator> replicate_group_;
  std::unique_ptr<comm::Communicator> ulysses_group_;  // ring_size > 1 only
  std::unique_ptr<comm::Communicator> ring_group_;     // ring_size > 1 only
};

}  // namespace ulysses::parallel
