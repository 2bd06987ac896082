#include "ulysses/ops/attention.h"
#include "ulysses/parallel/attention_strategy.h"
#include "ulysses/parallel/ulysses_exchange.h"

namespace ulysses::parallel {

namespace {

class UlyssesAttention final : public AttentionStrategy {
 public:
  UlyssesAttention(comm::Communicator& group, std::int64_t heads, std::int64_t kv_heads)
      : group_(group),
        heads_(heads),
        q_(query_head_chunks(heads, group.size())),
        kv_(kv_head_chunks(kv_heads, group.size())) {}

  std::string name() const override { return "ulysses"; }

  void forward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
               const Tensor& k, const Tensor& v, float scale, Tensor out,
               AttentionSaved& saved) override {
    UL_CHECK(shard.global_length == shard.local_length() * group_.size(), "Ulysses: shard of ",
             shard.local_length(), " tokens x sp ", group_.size(), " != sequence length ",
             shard.global_length, " (sequences must be padded to a multiple of sp)");
    UL_CHECK(q.dim(1) == heads_, "Ulysses: q has ", q.dim(1), " heads, expected ", heads_);
    // Head-sharded copies are kept for backward (same size as the sequence-sharded tensors).
    saved.q = sequence_to_heads(ctx, group_, q, q_.first_head, q_.chunk);
    saved.k = sequence_to_heads(ctx, group_, k, kv_.first_head, kv_.chunk);
    saved.v = sequence_to_heads(ctx, group_, v, kv_.first_head, kv_.chunk);
    const std::int64_t S = shard.global_length, D = q.dim(2);
    saved.out = Tensor::empty({S, q_.chunk, D}, q.dtype(), q.device());
    saved.lse = Tensor::empty({q_.chunk, S}, DType::f32, q.device());
    ops::attention_forward(ctx, saved.q, saved.k, saved.v, shard.cu_seqlens, scale, saved.out,
                           saved.lse);
    heads_to_sequence(ctx, group_, saved.out, q_.first_head, q_.chunk, out, false);
  }

  void backward(const Context& ctx, const data::SequenceShard& shard, const Tensor& /*q*/,
                const Tensor& /*k*/, const Tensor& /*v*/, float scale, const Tensor& /*out*/,
                const AttentionSaved& saved, const Tensor& dout, Tensor dq, Tensor dk,
                Tensor dv) override {
    const Tensor dout_heads = sequence_to_heads(ctx, group_, dout, q_.first_head, q_.chunk);
    Tensor dq_heads = Tensor::zeros(saved.q.shape(), saved.q.dtype(), saved.q.device());
    Tensor dk_heads = Tensor::zeros(saved.k.shape(), saved.k.dtype(), saved.k.device());
    Tensor dv_heads = Tensor::zeros(saved.v.shape(), saved.v.dtype(), saved.v.device());
    ops::attention_backward(ctx, saved.q, saved.k, saved.v, shard.cu_seqlens, scale, saved.out,
                            saved.lse, dout_heads, dq_heads, dk_heads, dv_heads);
    // Replicated kv heads: each replica's gradient comes back and is summed (accumulate).
    heads_to_sequence(ctx, group_, dq_heads, q_.first_head, q_.chunk, dq, true);
    heads_to_sequence(ctx, group_, dk_heads, kv_.first_head, kv_.chunk, dk, true);
    heads_to_sequence(ctx, group_, dv_heads, kv_.first_head, kv_.chunk, dv, true);
  }

 private:
  comm::Communicator& group_;
  std::int64_t heads_;
  HeadChunks q_, kv_;
};

}  // namespace

std::unique_ptr<AttentionStrategy> make_ulysses_attention(comm::Communicator& sp_group,
                                                          std::int64_t num_heads,
                                                          std::int64_t num_kv_heads) {
  return std::make_unique<UlyssesAttention>(sp_group, num_heads, num_kv_heads);
}

}  // namespace ulysses::parallel
