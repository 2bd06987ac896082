// AttentionStrategy: how attention over a (possibly sharded) sequence is computed.
//
// The decoder hands the strategy its local q/k/v (tokens of its shard, all heads) and gets the
// local attention output back; the strategy decides where the work happens: LocalAttention
// runs the op on the whole sequence held by one rank; Ulysses (sequence parallel) exchanges
// tokens for heads around the op. The decoder code is the same for all of them.
#pragma once

#include <memory>
#include <string>

#include "ulysses/comm/communicator.h"
#include "ulysses/core/context.h"
#include "ulysses/data/sequence.h"

namespace ulysses::parallel {

// What a strategy keeps between forward and backward (opaque to the decoder).
struct AttentionSaved {
  Tensor lse;    // softmax statistics of the heads this rank computed
  Tensor q, k, v, out;  // head-sharded copies, when the strategy exchanged them
};

class AttentionStrategy {
 public:
  virtual ~AttentionStrategy() = default;
  virtual std::string name() const = 0;

  // q: [T, Hq, D], k/v: [T, Hkv, D] for the shard's T tokens -> out: [T, Hq, D] written.
  virtual void forward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
                       const Tensor& k, const Tensor& v, float scale, Tensor out,
                       AttentionSaved& saved) = 0;
  // dq/dk/dv (shapes of q/k/v) += gradients given dout: [T, Hq, D].
  virtual void backward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
                        const Tensor& k, const Tensor& v, float scale, const Tensor& out,
                        const AttentionSaved& saved, const Tensor& dout, Tensor dq, Tensor dk,
                        Tensor dv) = 0;

  // Gradient checkpointing keeps attention's output and `saved` across the forward so that
  // attention never runs twice. Between the forward and the layer's recompute only what cannot
  // be rebuilt without attention needs to stay: drop_rebuildable releases the rest (Ulysses:
  // the head-sharded copies of q, k, v and out, as large as the layer's q, k, v and output
  // together), and restore rebuilds it during the recompute from the recomputed q, k, v and
  // the kept output, by exchanges alone, bit-identical to what forward saved.
  // Defaults: nothing to drop or rebuild.
  virtual void drop_rebuildable(AttentionSaved& /*saved*/) const {}
  virtual void restore(const Context& /*ctx*/, const data::SequenceShard& /*shard*/,
                       const Tensor& /*q*/, const Tensor& /*k*/, const Tensor& /*v*/,
                       const Tensor& /*out*/, AttentionSaved& /*saved*/) {}
};

// Attention on one rank holding the whole sequence.
std::unique_ptr<AttentionStrategy> make_local_attention();

// Ulysses sequence parallelism over `sp_group` (P ranks, each holding S/P tokens of the same
// sequence): an all-to-all turns q/k/v [S/P, H, D] into [S, H/P, D], attention runs over the
// whole sequence for this rank's heads, and a second all-to-all brings the output back to
// [S/P, H, D]. kv heads are split when num_kv_heads % P == 0 and replicated (each rank gets
// the one kv head its query heads use; gradients of the replicas are summed) when
// P % num_kv_heads == 0. The group must outlive the strategy. docs/parallelism.md has the math.
std::unique_ptr<AttentionStrategy> make_ulysses_attention(comm::Communicator& sp_group,
                                                          std::int64_t num_heads,
                                                          std::int64_t num_kv_heads);

}  // namespace ulysses::parallel
