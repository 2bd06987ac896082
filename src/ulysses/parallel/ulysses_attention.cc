#include <algorithm>
#include <string>
#include <vector>

#include "ulysses/ops/attention.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/parallel/ulysses_exchange.h"

namespace ulysses::parallel {

namespace {

// This rank's heads are processed in `parts` parts so the all-to-alls of one part run while
// attention computes another (GPUs: communication stream vs compute stream):
//   forward:  exchange q, k, v of every part (in order) | attention of part 0, then part 1
//             while part 1's inputs and part 0's output travel | output exchanges
//   backward: exchange dout of every part | attention backward of part 0, then part 1 while
//             part 0's dq (dk, dv) travel | gradient exchanges
// Two parts when the query chunk is even and the kv chunk is even (kv heads follow their query
// heads) or is one head (both parts read it); otherwise one. Saved head-sharded tensors are
// part-major: [parts * S, chunk / parts, D] (lse stays [chunk, S]: part p is rows of it).
class UlyssesAttention final : public AttentionStrategy {
 public:
  UlyssesAttention(comm::Communicator& group, std::int64_t heads, std::int64_t kv_heads,
                   bool pipeline)
      : group_(group),
        heads_(heads),
        q_(query_head_chunks(heads, group.size())),
        kv_(kv_head_chunks(kv_heads, group.size())) {
    // Opt-in (--sp-pipeline; same results either way): measured on 4 H100s (sp 4, qwen3-4b)
    // the two parts made steps 4% slower at 32K and 128K tokens; half as many heads per
    // attention call run less efficiently, and the exchanges running beside attention take
    // SMs from it (bench/RESULTS.md).
    if (pipeline && q_.chunk % 2 == 0 && (kv_.chunk % 2 == 0 || kv_.chunk == 1)) parts_ = 2;
    kv_parts_ = kv_.chunk % parts_ == 0 && kv_.chunk > 1 ? parts_ : 1;
  }

  std::string name() const override {
    return parts_ == 2 ? "ulysses (pipelined: 2 head parts)" : "ulysses";
  }

  void forward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
               const Tensor& k, const Tensor& v, float scale, Tensor out,
               AttentionSaved& saved) override {
    UL_CHECK(shard.global_length == shard.local_length() * group_.size(), "Ulysses: shard of ",
             shard.local_length(), " tokens x sp ", group_.size(), " != sequence length ",
             shard.global_length, " (sequences must be padded to a multiple of sp)");
    UL_CHECK(q.dim(1) == heads_, "Ulysses: q has ", q.dim(1), " heads, expected ", heads_);
    const std::int64_t S = shard.global_length, T = q.dim(0);
    const std::int64_t qc = q_.chunk / parts_;
    // Head-sharded copies are kept for backward (same size as the sequence-sharded tensors).
    allocate_copies(q, k, v, S, saved);
    saved.lse = Tensor::empty({q_.chunk, S}, DType::f32, q.device());
    std::vector<PendingExchange> inputs = start_inputs(ctx, q, k, v, S, saved);
    std::vector<PendingExchange> outputs;
    std::size_t next = 0;
    for (std::int64_t p = 0; p < parts_; ++p) {
      const std::size_t arrived = p < kv_parts_ ? 3 : 1;  // this part's k, v (if any) and q
      for (std::size_t i = 0; i < arrived; ++i) finish_sequence_to_heads(inputs[next++]);
      const std::int64_t kp = std::min(p, kv_parts_ - 1);
      Tensor out_p = rows(saved.out, p, S);
      ops::attention_forward(ctx, rows(saved.q, p, S), rows(saved.k, kp, S), rows(saved.v, kp, S),
                             {shard.cu_seqlens, shard.cu_seqlens_host}, scale, out_p,
                             saved.lse.rows(p * qc, (p + 1) * qc));
      outputs.push_back(start_heads_to_sequence(ctx, group_, out_p, T));
    }
    for (std::int64_t p = 0; p < parts_; ++p) {
      const HeadChunks qp = part(q_, parts_, p);
      finish_heads_to_sequence(ctx, outputs[static_cast<std::size_t>(p)], qp.first_head, qc, out,
                               false);
    }
  }

  void drop_rebuildable(AttentionSaved& saved) const override {
    saved.q = saved.k = saved.v = saved.out = Tensor();
  }

  // The exchanges of forward again (q, k, v, and the output back to heads), without attention.
  void restore(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
               const Tensor& k, const Tensor& v, const Tensor& out,
               AttentionSaved& saved) override {
    if (saved.q.defined()) return;  // nothing was dropped
    const std::int64_t S = shard.global_length, qc = q_.chunk / parts_;
    allocate_copies(q, k, v, S, saved);
    std::vector<PendingExchange> exchanges = start_inputs(ctx, q, k, v, S, saved);
    for (std::int64_t p = 0; p < parts_; ++p)
      exchanges.push_back(start_sequence_to_heads(ctx, group_, out, part(q_, parts_, p).first_head,
                                                  qc, rows(saved.out, p, S)));
    for (auto& exchange : exchanges) finish_sequence_to_heads(exchange);
  }

  void backward(const Context& ctx, const data::SequenceShard& shard, const Tensor& /*q*/,
                const Tensor& /*k*/, const Tensor& /*v*/, float scale, const Tensor& /*out*/,
                const AttentionSaved& saved, const Tensor& dout, Tensor dq, Tensor dk,
                Tensor dv) override {
    const std::int64_t S = shard.global_length, T = dout.dim(0), D = dout.dim(2);
    const std::int64_t qc = q_.chunk / parts_, kc = kv_.chunk / kv_parts_;
    // The exchanges back add into dq, dk, dv (replicated kv heads sum there): start from zero.
    dq.zero_();
    dk.zero_();
    dv.zero_();
    Tensor dout_heads = Tensor::empty({parts_ * S, qc, D}, dout.dtype(), dout.device());
    std::vector<PendingExchange> douts;
    for (std::int64_t p = 0; p < parts_; ++p) {
      const HeadChunks qp = part(q_, parts_, p);
      douts.push_back(
          start_sequence_to_heads(ctx, group_, dout, qp.first_head, qc, rows(dout_heads, p, S)));
    }
    Tensor dq_heads = Tensor::zeros(saved.q.shape(), saved.q.dtype(), saved.q.device());
    Tensor dk_heads = Tensor::zeros(saved.k.shape(), saved.k.dtype(), saved.k.device());
    Tensor dv_heads = Tensor::zeros(saved.v.shape(), saved.v.dtype(), saved.v.device());
    std::vector<PendingExchange> grads;  // per part: dq, then dk and dv when kv is split
    for (std::int64_t p = 0; p < parts_; ++p) {
      finish_sequence_to_heads(douts[static_cast<std::size_t>(p)]);
      const std::int64_t kp = std::min(p, kv_parts_ - 1);
      ops::attention_backward(ctx, rows(saved.q, p, S), rows(saved.k, kp, S), rows(saved.v, kp, S),
                              {shard.cu_seqlens, shard.cu_seqlens_host}, scale,
                              rows(saved.out, p, S), saved.lse.rows(p * qc, (p + 1) * qc),
                              rows(dout_heads, p, S), rows(dq_heads, p, S), rows(dk_heads, kp, S),
                              rows(dv_heads, kp, S));
      grads.push_back(start_heads_to_sequence(ctx, group_, rows(dq_heads, p, S), T));
      if (kv_parts_ > 1) {
        grads.push_back(start_heads_to_sequence(ctx, group_, rows(dk_heads, p, S), T));
        grads.push_back(start_heads_to_sequence(ctx, group_, rows(dv_heads, p, S), T));
      }
    }
    // A kv chunk shared by the parts travels once both parts added into it.
    if (kv_parts_ == 1) {
      grads.push_back(start_heads_to_sequence(ctx, group_, dk_heads, T));
      grads.push_back(start_heads_to_sequence(ctx, group_, dv_heads, T));
    }
    // Replicated kv heads: each replica's gradient comes back and is summed (accumulate).
    std::size_t next = 0;
    for (std::int64_t p = 0; p < parts_; ++p) {
      finish_heads_to_sequence(ctx, grads[next++], part(q_, parts_, p).first_head, qc, dq, true);
      if (kv_parts_ > 1) {
        const HeadChunks kv = part(kv_, kv_parts_, p);
        finish_heads_to_sequence(ctx, grads[next++], kv.first_head, kc, dk, true);
        finish_heads_to_sequence(ctx, grads[next++], kv.first_head, kc, dv, true);
      }
    }
    if (kv_parts_ == 1) {
      finish_heads_to_sequence(ctx, grads[next++], kv_.first_head, kc, dk, true);
      finish_heads_to_sequence(ctx, grads[next++], kv_.first_head, kc, dv, true);
    }
  }

 private:
  // saved.q, k, v, out: head-sharded, part-major [parts * S, chunk / parts, D].
  void allocate_copies(const Tensor& q, const Tensor& k, const Tensor& v, std::int64_t S,
                       AttentionSaved& saved) const {
    const std::int64_t D = q.dim(2), qc = q_.chunk / parts_, kc = kv_.chunk / kv_parts_;
    saved.q = Tensor::empty({parts_ * S, qc, D}, q.dtype(), q.device());
    saved.k = Tensor::empty({kv_parts_ * S, kc, D}, k.dtype(), k.device());
    saved.v = Tensor::empty({kv_parts_ * S, kc, D}, v.dtype(), v.device());
    saved.out = Tensor::empty({parts_ * S, qc, D}, q.dtype(), q.device());
  }

  // Starts the exchanges of q, k, v into saved's copies, part by part: k and v (for parts with
  // their own kv slice), then q.
  std::vector<PendingExchange> start_inputs(const Context& ctx, const Tensor& q, const Tensor& k,
                                            const Tensor& v, std::int64_t S,
                                            AttentionSaved& saved) const {
    const std::int64_t qc = q_.chunk / parts_, kc = kv_.chunk / kv_parts_;
    std::vector<PendingExchange> inputs;
    for (std::int64_t p = 0; p < parts_; ++p) {
      if (p < kv_parts_) {
        const HeadChunks kv = part(kv_, kv_parts_, p);
        inputs.push_back(
            start_sequence_to_heads(ctx, group_, k, kv.first_head, kc, rows(saved.k, p, S)));
        inputs.push_back(
            start_sequence_to_heads(ctx, group_, v, kv.first_head, kc, rows(saved.v, p, S)));
      }
      const HeadChunks qp = part(q_, parts_, p);
      inputs.push_back(
          start_sequence_to_heads(ctx, group_, q, qp.first_head, qc, rows(saved.q, p, S)));
    }
    return inputs;
  }

  // Part p of a head assignment: every rank's chunk cut into `parts` equal pieces.
  static HeadChunks part(const HeadChunks& c, std::int64_t parts, std::int64_t p) {
    HeadChunks out = c;
    out.chunk = c.chunk / parts;
    for (auto& first : out.first_head) first += p * out.chunk;
    return out;
  }
  // Rows [p S, (p + 1) S) of a part-major tensor.
  static Tensor rows(const Tensor& t, std::int64_t p, std::int64_t S) {
    return t.rows(p * S, (p + 1) * S);
  }

  comm::Communicator& group_;
  std::int64_t heads_;
  HeadChunks q_, kv_;
  std::int64_t parts_ = 1, kv_parts_ = 1;
};

}  // namespace

std::unique_ptr<AttentionStrategy> make_ulysses_attention(comm::Communicator& sp_group,
                                                          std::int64_t num_heads,
                                                          std::int64_t num_kv_heads,
                                                          bool pipeline) {
  return std::make_unique<UlyssesAttention>(sp_group, num_heads, num_kv_heads, pipeline);
}

}  // namespace ulysses::parallel
