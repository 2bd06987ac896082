#include "ulysses/ops/attention.h"
#include "ulysses/parallel/attention_strategies.h"

namespace ulysses::parallel {

namespace {

class LocalAttention final : public AttentionStrategy {
 public:
  std::string name() const override { return "local"; }

  void forward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
               const Tensor& k, const Tensor& v, float scale, Tensor out,
               AttentionSaved& saved) override {
    UL_CHECK(shard.local_length() == shard.global_length,
             "local attention needs the whole sequence on one rank (shard of ",
             shard.local_length(), " of ", shard.global_length, " tokens); use Ulysses");
    // lse: [Hq, T]
    saved.lse = Tensor::empty({q.dim(1), q.dim(0)}, DType::f32, q.device());
    ops::attention_forward(ctx, q, k, v, {shard.cu_seqlens, shard.cu_seqlens_host}, scale, out,
                           saved.lse);
  }

  void backward(const Context& ctx, const data::SequenceShard& shard, const Tensor& q,
                const Tensor& k, const Tensor& v, float scale, const Tensor& out,
                const AttentionSaved& saved, const Tensor& dout, Tensor dq, Tensor dk,
                Tensor dv) override {
    ops::attention_backward(ctx, q, k, v, {shard.cu_seqlens, shard.cu_seqlens_host}, scale, out,
                            saved.lse, dout, dq, dk, dv, ops::GradWrite::overwrite);
  }
};

}  // namespace

std::unique_ptr<AttentionStrategy> make_local_attention() {
  return std::make_unique<LocalAttention>();
}

}  // namespace ulysses::parallel
