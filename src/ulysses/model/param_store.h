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
#include <utility>

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

// A parameter group acquired for one scope: the constructor acquires `group` from `store`, the
// destructor releases it if it is still held, so an exception thrown while the group is in use
// (a failing op, a bad shape) cannot leave it acquired (for ZeRO-3: its gathered buffer
// allocated and its acquire count off by one for the next step).
// - release() gives the group back early (at the point the decoder is done with it); its errors
//   throw. After it the guard holds nothing and params() is undefined.
// - The destructor's release happens only on the exception path (or when release() was not
//   called); a failure there is swallowed, since the error already propagating is the one to
//   report (a destructor must not throw).
// - Movable (the moved-from guard holds nothing), not copyable. The store must outlive it.
class AcquiredGroup {
 public:
  AcquiredGroup(ParamStore& store, std::size_t group)
      : store_(&store), group_(group), params_(store.acquire(group)) {}
  ~AcquiredGroup() { drop(); }
  AcquiredGroup(AcquiredGroup&& other) noexcept
      : store_(other.store_), group_(other.group_), params_(std::move(other.params_)) {
    other.store_ = nullptr;
  }
  AcquiredGroup& operator=(AcquiredGroup&& other) noexcept {
    if (this != &other) {
      drop();
      store_ = other.store_;
      group_ = other.group_;
      params_ = std::move(other.params_);
      other.store_ = nullptr;
    }
    return *this;
  }
  AcquiredGroup(const AcquiredGroup&) = delete;
  AcquiredGroup& operator=(const AcquiredGroup&) = delete;

  // The group's flat parameter buffer (what ParamStore::acquire returned).
  const Tensor& params() const { return params_; }
  std::size_t group() const { return group_; }
  bool held() const { return store_ != nullptr; }
  void release() {
    if (store_ == nullptr) return;
    ParamStore* store = store_;
    store_ = nullptr;
    params_ = Tensor();
    store->release(group_);
  }

 private:
  // The destructor's release: the buffer first (so a store that frees it, ZeRO-3, really can),
  // then the group; failures swallowed.
  void drop() noexcept {
    if (store_ == nullptr) return;
    ParamStore* store = store_;
    store_ = nullptr;
    params_ = Tensor();
    try {
      store->release(group_);
    } catch (...) {  // see the class comment: never throw from the destructor
    }
  }

  ParamStore* store_;
  std::size_t group_;
  Tensor params_;
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
