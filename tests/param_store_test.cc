// AcquiredGroup (model/param_store.h): a scoped acquire of a parameter group that releases it
// on every way out of the scope, once.
#include "ulysses/model/param_store.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ulysses/core/error.h"

namespace ulysses::model {
namespace {

// Counts acquires and releases per group; release of a group not held throws (as ZeroState's
// does), and can be made to throw on purpose.
class CountingStore final : public ParamStore {
 public:
  explicit CountingStore(const ParamBuffers& params) : params_(params) {
    held.assign(params.flat().size(), 0);
  }
  const ModelConfig& config() const override { return params_.config(); }
  const ParamLayout& layout() const override { return params_.layout(); }
  Tensor acquire(std::size_t group) override {
    ++held.at(group);
    ++acquires;
    return params_.flat()[group];
  }
  void release(std::size_t group) override {
    ++releases;
    UL_CHECK(held.at(group) > 0, "release of group ", group, " without acquire");
    --held.at(group);
    if (fail_release) UL_FAIL("release failed on purpose");
  }
  Tensor grads(std::size_t) override { UL_FAIL("no gradients here"); }
  void grads_done(std::size_t) override {}

  std::vector<int> held;
  int acquires = 0, releases = 0;
  bool fail_release = false;

 private:
  const ParamBuffers& params_;
};

ParamBuffers tiny_params() { return ParamBuffers(preset_config("tiny")); }

TEST(AcquiredGroup, ReleasesAtTheEndOfItsScope) {
  const ParamBuffers params = tiny_params();
  CountingStore store(params);
  {
    AcquiredGroup g(store, 1);
    EXPECT_TRUE(g.held());
    EXPECT_EQ(g.group(), 1u);
    EXPECT_EQ(store.held[1], 1);
    EXPECT_EQ(g.params().raw(), params.flat()[1].raw());
    EXPECT_EQ(g.params().numel(), params.flat()[1].numel());
  }
  EXPECT_EQ(store.held[1], 0);
  EXPECT_EQ(store.releases, 1);
}

TEST(AcquiredGroup, ReleasesWhenAnExceptionLeavesTheScope) {
  const ParamBuffers params = tiny_params();
  CountingStore store(params);
  EXPECT_THROW(
      {
        AcquiredGroup embed(store, 0);
        AcquiredGroup layer(store, 1);
        throw std::runtime_error("an op failed");
      },
      std::runtime_error);
  EXPECT_EQ(store.held[0], 0);
  EXPECT_EQ(store.held[1], 0);
  EXPECT_EQ(store.releases, 2);
}

TEST(AcquiredGroup, EarlyReleaseReleasesOnce) {
  const ParamBuffers params = tiny_params();
  CountingStore store(params);
  {
    AcquiredGroup g(store, 2);
    g.release();
    EXPECT_FALSE(g.held());
    EXPECT_FALSE(g.params().defined());
    EXPECT_EQ(store.held[2], 0);
    g.release();  // a second release does nothing
  }
  EXPECT_EQ(store.releases, 1);
}

TEST(AcquiredGroup, NestedAcquiresOfOneGroupReleaseInTurn) {
  const ParamBuffers params = tiny_params();
  CountingStore store(params);
  {
    AcquiredGroup outer(store, 0);  // e.g. the tied embedding kept for the LM head
    {
      AcquiredGroup inner(store, 0);
      EXPECT_EQ(store.held[0], 2);
    }
    EXPECT_EQ(store.held[0], 1);
  }
  EXPECT_EQ(store.held[0], 0);
}

TEST(AcquiredGroup, MovesTransferTheRelease) {
  const ParamBuffers params = tiny_params();
  CountingStore store(params);
  {
    AcquiredGroup a(store, 1);
    AcquiredGroup b(std::move(a));
    EXPECT_FALSE(a.held());  // NOLINT(bugprone-use-after-move): the moved-from state is defined
    EXPECT_TRUE(b.held());
    AcquiredGroup c(store, 2);
    c = std::move(b);  // releases group 2, takes over group 1
    EXPECT_EQ(store.held[2], 0);
    EXPECT_EQ(store.held[1], 1);
    EXPECT_EQ(c.group(), 1u);
  }
  EXPECT_EQ(store.held[1], 0);
  EXPECT_EQ(store.acquires, 2);
  EXPECT_EQ(store.releases, 2);
}

TEST(AcquiredGroup, ExplicitReleaseThrowsTheStoresErrorTheDestructorDoesNot) {
  const ParamBuffers params = tiny_params();
  CountingStore store(params);
  store.fail_release = true;
  {
    AcquiredGroup g(store, 1);
    EXPECT_THROW(g.release(), Error);
    EXPECT_FALSE(g.held());  // not released a second time by the destructor
  }
  EXPECT_EQ(store.releases, 1);
  // On the exception path, the first error is the one that propagates.
  try {
    AcquiredGroup g(store, 1);
    throw std::runtime_error("the first error");
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "the first error");
  }
  EXPECT_EQ(store.releases, 2);
}

TEST(AcquiredGroup, WorksWithTheResidentStore) {
  ParamBuffers params = tiny_params();
  ResidentParamStore store(params, nullptr);
  AcquiredGroup g(store, 0);
  EXPECT_EQ(g.params().raw(), params.flat()[0].raw());
}

}  // namespace
}  // namespace ulysses::model
