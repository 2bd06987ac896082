// ParamStore: how the decoder reaches parameters and gradient buffers, group by group.
//
// The decoder acquires a group's parameters right before it uses them and releases them right
// after, and tells the store when a group's gradients are complete for this backward. Where the
// parameters live (resident, sharded and gathered on demand by ZeRO-3, offloaded) and what
// happens to finished gradients (kept, reduce-scattered by ZeRO-2) is the store's business; the
// decoder's code is the same for all of them. Groups: 0 = embed, 1 + i = layer i, L + 1 = final
// (model::layer_group / final_group).
#pragma once

#include <cstddef>

#include "ulysses/model/params.h"

namespace ulysses::model {

class ParamStore {
 public:
  virtual ~ParamStore() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const ParamLayout& layout() const = 0;

  // The group's flat parameter buffer ([group.numel], compute dtype), valid until release.
  // Calls nest per group (acquire twice, release twice).
  virtual Tensor acquire(std::size_t group) = 0;
  virtual void release(std::size_t group) = 0;
  // The group's flat f32 gradient buffer to accumulate into during a backward.
  virtual Tensor grads(std::size_t group) = 0;
  // The group received its last gradient contribution of this backward.
  virtual void grads_done(std::size_t group) = 0;
};

// Every parameter and gradient resident in ParamBuffers (one rank, no sharding). `grads` may be
// null for forward-only use.
class ResidentParamStore final : public ParamStore {
 public:
  ResidentParamStore(const ParamBuffers& params, ParamBuffers* grads)
      : params_(params), grads_(grads) {}
  const ModelConfig& config() const override { return params_.config(); }
  const ParamLayout& layout() const override { return params_.layout(); }
  Tensor acquire(std::size_t group) override { return params_.flat()[group]; }
  void release(std::size_t) override {}
  Tensor grads(std::size_t group) override {
    UL_CHECK(grads_, "gradients requested from a forward-only parameter store");
    return grads_->flat()[group];
  }
  void grads_done(std::size_t) override {}

 private:
  const ParamBuffers& params_;
  ParamBuffers* grads_;
};

}  // namespace ulysses::model
