// AttentionStrategy: how attention over a (possibly sharded) sequence is computed — the
// interface the decoder calls, beside ParamStore. Implementations live in parallel/ (local,
// Ulysses; parallel/attention_strategies.h makes them), so swapping one for another touches no
// model code.
//
// The decoder hands the strategy its local q/k/v (tokens of its shard, all heads) and gets the
// local attention output back; the strategy decides where the work happens: the local strategy
// runs the op on the whole sequence held by one rank; Ulysses (sequence parallel) exchanges
// tokens for heads around the op.
#pragma once

#include <string>

#include "ulysses/core/context.h"
#include "ulysses/data/sequence.h"

namespace ulysses::model {

// What a strategy keeps between forward and backward (opaque to the decoder).
struct AttentionSaved {
  Tensor lse;           // softmax statistics of the heads this rank computed
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
  // dq/dk/dv (shapes of q/k/v) = the gradients given dout: [T, Hq, D], written: their old
  // contents are never read (the decoder hands over unzeroed buffers).
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

}  // namespace ulysses::model
