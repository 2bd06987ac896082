// Ring attention with zigzag placement, and its hybrid with Ulysses (docs/parallelism.md).
//
// The SP group is a grid of R ring positions x U Ulysses ranks (sp_rank = i * U + u; U = 1 for
// the pure ring). The sequence of S tokens is cut into 2R chunks of C = S / (2R) tokens; ring
// position i owns chunks i and 2R - 1 - i (data::zigzag_ranges), its U ranks each holding a
// slice of them.
//   forward:  (U > 1) all-to-all inside the Ulysses group: [2C / U, H, D] -> [2C, H / U, D]
//             ring of R steps: at step s this rank holds the K/V of ring position i - s; it sends
//             them on to i + 1 while it computes its two query chunks against the two key
//             chunks (pairs whose keys all follow the queries are skipped) and merges the
//             results by their lse
//             (U > 1) all-to-all back: output [2C, H / U, D] -> [2C / U, H, D]
//   backward: dout exchanged like the inputs; the ring again with the K/V blocks, each
//             carrying its dK/dV accumulator: at every step a rank adds its queries' share to
//             the accumulator of the block it holds and passes both on; after R steps every
//             accumulator is back with its block's owner. dq stays local. Gradients go back
//             through the all-to-all (replicated kv heads summed).
// K/V travel once per step in one message (k and v stacked, in the compute dtype), GQA heads
// unrepeated; outputs, lse and gradients accumulate in f32 (the dK/dV accumulators travel in
// f32), and are rounded to the compute dtype once at the end. Block pairs get the shard's host
// document boundaries (SequenceShard::cu_seqlens_host), from which the block ops pick cuDNN's
// fused attention on CUDA for diagonal and keys-before pairs (ops/block_attention.h).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ulysses/ops/block_attention.h"
#include "ulysses/ops/elementwise.h"
#include "ulysses/ops/indices.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/parallel/ulysses_exchange.h"

namespace ulysses::parallel {
namespace {

constexpr int kKvTag = 41;   // K/V blocks
constexpr int kDkvTag = 42;  // dK/dV accumulators

class RingAttention final : public AttentionStrategy {
 public:
  RingAttention(comm::Communicator& ulysses_group, comm::Communicator& ring_group,
                std::int64_t heads, std::int64_t kv_heads)
      : ulysses_(ulysses_group),
        ring_(ring_group),
        heads_(heads),
        q_(query_head_chunks(heads, ulysses_group.size())),
        kv_(kv_head_chunks(kv_heads, ulysses_group.size())) {}

  std::string name() const override {
    const std::string ring = "ring " + std::to_string(ring_.size()) + ", zigzag";
    return ulysses_.size() == 1
               ? "ring (" + ring + ")"
               : "hybrid (Ulysses " + std::to_string(ulysses_.size()) + " x " + ring + ")";
  }

  void forward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
               const Tensor& k, const Tensor& v, float scale, Tensor out,
               AttentionSaved& saved) override {
    check_shard(shard, q);
    const std::int64_t C = chunk_length(shard);
    if (ulysses_.size() > 1) {
      exchange_inputs(ctx, q, k, v, saved);
      saved.out = Tensor::empty(saved.q.shape(), q.dtype(), q.device());
      ring_forward(ctx, shard, saved.q, saved.k, saved.v, scale, C, saved.out, saved.lse);
      heads_to_sequence(ctx, ulysses_, saved.out, q_.first_head, q_.chunk, out, false);
    } else {
      ring_forward(ctx, shard, q, k, v, scale, C, out, saved.lse);
    }
  }

  void drop_rebuildable(AttentionSaved& saved) const override {
    saved.q = saved.k = saved.v = saved.out = Tensor();
  }

  void restore(const Context& ctx, const data::SequenceShard& /*shard*/, const Tensor& q,
               const Tensor& k, const Tensor& v, const Tensor& out,
               AttentionSaved& saved) override {
    if (ulysses_.size() == 1 || saved.q.defined()) return;  // nothing was dropped
    exchange_inputs(ctx, q, k, v, saved);
    saved.out = sequence_to_heads(ctx, ulysses_, out, q_.first_head, q_.chunk);
  }

  void backward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
                const Tensor& k, const Tensor& v, float scale, const Tensor& out,
                const AttentionSaved& saved, const Tensor& dout, Tensor dq, Tensor dk,
                Tensor dv) override {
    const std::int64_t C = chunk_length(shard);
    // The ring's block pairs and the exchanges back add into dq, dk, dv: start from zero.
    dq.zero_();
    dk.zero_();
    dv.zero_();
    if (ulysses_.size() == 1) {
      ring_backward(ctx, shard, q, k, v, scale, C, out, saved.lse, dout, dq, dk, dv);
      return;
    }
    const Tensor dout_heads = sequence_to_heads(ctx, ulysses_, dout, q_.first_head, q_.chunk);
    Tensor dq_heads = Tensor::zeros(saved.q.shape(), saved.q.dtype(), saved.q.device());
    Tensor dk_heads = Tensor::zeros(saved.k.shape(), saved.k.dtype(), saved.k.device());
    Tensor dv_heads = Tensor::zeros(saved.v.shape(), saved.v.dtype(), saved.v.device());
    ring_backward(ctx, shard, saved.q, saved.k, saved.v, scale, C, saved.out, saved.lse, dout_heads,
                  dq_heads, dk_heads, dv_heads);
    heads_to_sequence(ctx, ulysses_, dq_heads, q_.first_head, q_.chunk, dq, true);
    heads_to_sequence(ctx, ulysses_, dk_heads, kv_.first_head, kv_.chunk, dk, true);
    heads_to_sequence(ctx, ulysses_, dv_heads, kv_.first_head, kv_.chunk, dv, true);
  }

 private:
  // The shard must be this rank's zigzag slice (data::zigzag_ranges of the same grid).
  void check_shard(const data::SequenceShard& shard, const Tensor& q) const {
    const std::int64_t R = ring_.size(), U = ulysses_.size();
    const std::int64_t sp_rank = ring_.rank() * U + ulysses_.rank();
    UL_CHECK(q.dim(1) == heads_, "ring attention: q has ", q.dim(1), " heads, expected ", heads_);
    UL_CHECK(shard.ranges == data::zigzag_ranges(shard.global_length, sp_rank, R, U),
             "ring attention: the shard is not SP rank ", sp_rank,
             "'s zigzag slice (make it with data::zigzag_ranges; sequences padded to a multiple "
             "of 2 x sp)");
  }
  std::int64_t chunk_length(const data::SequenceShard& shard) const {
    return shard.global_length / (2 * ring_.size());
  }

  // saved.q, k, v: this rank's heads of its ring position's 2C tokens.
  void exchange_inputs(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                       AttentionSaved& saved) const {
    saved.q = sequence_to_heads(ctx, ulysses_, q, q_.first_head, q_.chunk);
    saved.k = sequence_to_heads(ctx, ulysses_, k, kv_.first_head, kv_.chunk);
    saved.v = sequence_to_heads(ctx, ulysses_, v, kv_.first_head, kv_.chunk);
  }

  // Global chunk index of local chunk c (0, 1) of ring position `position`.
  std::int64_t chunk_of(std::int64_t position, std::int64_t c) const {
    return c == 0 ? position : 2 * ring_.size() - 1 - position;
  }

  // q: [2C, Hq, D], k, v: [2C, Hkv, D] of this ring position -> out: [2C, Hq, D] written,
  // lse: [2 * Hq, C] f32 allocated (chunk-major: rows [c Hq, (c + 1) Hq) are local chunk c's).
  // The merges accumulate in f32 (in out itself when it is f32); the first block of each query
  // chunk is written in place (at step 0 both chunks have one: the diagonal, and chunk i for
  // the second chunk), so no accumulator needs initializing.
  void ring_forward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
                    const Tensor& k, const Tensor& v, float scale, std::int64_t C, Tensor out,
                    Tensor& lse) {
    const std::int64_t R = ring_.size(), i = ring_.rank(), H = q.dim(1), D = q.dim(2);
    lse = Tensor::empty({2 * H, C}, DType::f32, q.device());
    Tensor acc =
        out.dtype() == DType::f32 ? out : Tensor::empty(out.shape(), DType::f32, q.device());
    Tensor kv = stack(k, v);  // [4C, Hkv, D]: k rows [0, 2C), v rows [2C, 4C)
    Tensor next = Tensor::empty(kv.shape(), kv.dtype(), kv.device());
    Tensor block_out = Tensor::empty({C, H, D}, DType::f32, q.device());
    Tensor block_lse = Tensor::empty({H, C}, DType::f32, q.device());
    const std::vector<std::int32_t> cu_host = host_boundaries(shard);
    bool started[2] = {false, false};
    for (std::int64_t s = 0; s < R; ++s) {
      const std::int64_t source = (i - s + R) % R;  // owner of the K/V held now
      std::unique_ptr<comm::Work> passing;
      if (s + 1 < R)
        passing = ring_.send_recv_start(kv, next_rank(), next, previous_rank(), kKvTag);
      for (std::int64_t qc = 0; qc < 2; ++qc) {
        for (std::int64_t kc = 0; kc < 2; ++kc) {
          const std::int64_t query_chunk = chunk_of(i, qc), key_chunk = chunk_of(source, kc);
          if (key_chunk > query_chunk) continue;  // every key after every query
          Tensor acc_rows = acc.rows(qc * C, (qc + 1) * C);
          Tensor lse_rows = lse.rows(qc * H, (qc + 1) * H);
          const bool first = !started[qc];
          started[qc] = true;
          ops::attention_block_forward(
              ctx, q.rows(qc * C, (qc + 1) * C), kv.rows(kc * C, (kc + 1) * C),
              kv.rows((2 + kc) * C, (3 + kc) * C), shard.cu_seqlens, cu_host, query_chunk * C,
              key_chunk * C, scale, first ? acc_rows : block_out, first ? lse_rows : block_lse);
          if (!first) ops::attention_merge(ctx, acc_rows, lse_rows, block_out, block_lse);
        }
      }
      if (passing) {
        passing->wait();
        std::swap(kv, next);
      }
    }
    UL_CHECK(started[0] && started[1], "ring attention: a query chunk saw no key block");
    if (acc.raw() != out.raw()) ops::convert(ctx, acc, out);
  }

  // Gradients of ring_forward: dq [2C, Hq, D], dk, dv [2C, Hkv, D] accumulated (+=). The
  // block backward accumulates in f32 (in dq itself when it is f32; the dK/dV accumulators that
  // travel the ring always).
  void ring_backward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
                     const Tensor& k, const Tensor& v, float scale, std::int64_t C,
                     const Tensor& out, const Tensor& lse, const Tensor& dout, Tensor dq, Tensor dk,
                     Tensor dv) {
    const std::int64_t R = ring_.size(), i = ring_.rank(), H = q.dim(1);
    const Tensor out32 = as_f32(ctx, out);
    Tensor dq32 =
        dq.dtype() == DType::f32 ? dq : Tensor::zeros(dq.shape(), DType::f32, dq.device());
    Tensor kv = stack(k, v);  // [4C, Hkv, D]
    Tensor next = Tensor::empty(kv.shape(), kv.dtype(), kv.device());
    // The held block's dK/dV (f32): dk rows [0, 2C), dv rows [2C, 4C).
    Tensor dkv = Tensor::zeros(kv.shape(), DType::f32, kv.device());
    Tensor next_dkv = Tensor::empty(kv.shape(), DType::f32, kv.device());
    const std::vector<std::int32_t> cu_host = host_boundaries(shard);
    for (std::int64_t s = 0; s < R; ++s) {
      const std::int64_t source = (i - s + R) % R;
      std::unique_ptr<comm::Work> passing;
      if (s + 1 < R)
        passing = ring_.send_recv_start(kv, next_rank(), next, previous_rank(), kKvTag);
      for (std::int64_t qc = 0; qc < 2; ++qc) {
        for (std::int64_t kc = 0; kc < 2; ++kc) {
          const std::int64_t query_chunk = chunk_of(i, qc), key_chunk = chunk_of(source, kc);
          if (key_chunk > query_chunk) continue;
          const auto query_rows = [&](const Tensor& t) { return t.rows(qc * C, (qc + 1) * C); };
          ops::attention_block_backward(
              ctx, query_rows(q), kv.rows(kc * C, (kc + 1) * C),
              kv.rows((2 + kc) * C, (3 + kc) * C), shard.cu_seqlens, cu_host, query_chunk * C,
              key_chunk * C, scale, query_rows(out32), lse.rows(qc * H, (qc + 1) * H),
              query_rows(dout), query_rows(dq32), dkv.rows(kc * C, (kc + 1) * C),
              dkv.rows((2 + kc) * C, (3 + kc) * C));
        }
      }
      // The accumulator follows its block; after the last step it reaches the block's owner.
      if (R > 1) {
        ring_.send_recv(dkv, next_rank(), next_dkv, previous_rank(), kDkvTag);
        std::swap(dkv, next_dkv);
      }
      if (passing) {
        passing->wait();
        std::swap(kv, next);
      }
    }
    const std::int64_t T = k.dim(0);
    if (dq32.raw() != dq.raw()) add_converted(ctx, dq, dq32);
    add_converted(ctx, dk, dkv.rows(0, T));
    add_converted(ctx, dv, dkv.rows(T, 2 * T));
  }

  // The shard's document boundaries on the host (the block ops plan from them): its
  // cu_seqlens_host, or for a hand-made shard without one a copy read back once per call.
  static std::vector<std::int32_t> host_boundaries(const data::SequenceShard& shard) {
    if (!shard.cu_seqlens_host.empty() || !shard.cu_seqlens.defined()) return shard.cu_seqlens_host;
    std::vector<std::int32_t> storage;
    const std::span<const std::int32_t> values =
        ops::host_values(shard.cu_seqlens, storage, "ring attention: cu_seqlens");
    return {values.begin(), values.end()};
  }

  // x itself when f32, else an f32 copy.
  static Tensor as_f32(const Context& ctx, const Tensor& x) {
    if (x.dtype() == DType::f32) return x;
    Tensor copy = Tensor::empty(x.shape(), DType::f32, x.device());
    ops::convert(ctx, x, copy);
    return copy;
  }
  // to += from (f32), rounded to to's dtype first when that is not f32.
  static void add_converted(const Context& ctx, Tensor to, const Tensor& from) {
    if (to.dtype() == DType::f32) return ops::add_inplace(ctx, to, from);
    Tensor rounded = Tensor::empty(to.shape(), to.dtype(), to.device());
    ops::convert(ctx, from, rounded);
    ops::add_inplace(ctx, to, rounded);
  }

  int next_rank() const { return (ring_.rank() + 1) % ring_.size(); }
  int previous_rank() const { return (ring_.rank() + ring_.size() - 1) % ring_.size(); }

  // [T, H, D] x 2 -> [2T, H, D]
  static Tensor stack(const Tensor& a, const Tensor& b) {
    const std::int64_t T = a.dim(0);
    Tensor both = Tensor::empty({2 * T, a.dim(1), a.dim(2)}, a.dtype(), a.device());
    both.rows(0, T).copy_from(a);
    both.rows(T, 2 * T).copy_from(b);
    return both;
  }
  comm::Communicator& ulysses_;
  comm::Communicator& ring_;
  std::int64_t heads_;
  HeadChunks q_, kv_;
};

}  // namespace

std::unique_ptr<AttentionStrategy> make_ring_attention(comm::Communicator& ulysses_group,
                                                       comm::Communicator& ring_group,
                                                       std::int64_t num_heads,
                                                       std::int64_t num_kv_heads) {
  return std::make_unique<RingAttention>(ulysses_group, ring_group, num_heads, num_kv_heads);
}

}  // namespace ulysses::parallel
