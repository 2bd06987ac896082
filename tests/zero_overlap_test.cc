// ZeRO overlap (zero.h, "Overlap"): one optimizer step of a small stage-3 model on one rank,
// through a communicator that records the collectives and defers every started one to its
// Work's wait() — a stand-in for an asynchronous backend: reading a result before wait() sees
// stale data, so a missing wait changes the numbers. Checks the order of the all-gathers
// (prefetching) and reduce-scatters, the bound on gathered parameter memory, and bit-identical
// results with ZeroConfig::overlap off.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"
#include "ulysses/core/rng.h"
#include "ulysses/model/decoder.h"
#include "ulysses/parallel/attention_strategies.h"
#include "ulysses/parallel/zero.h"

namespace ulysses::parallel {
namespace {

// "<prefix><name>" (appended, not operator+: GCC 12's -Wrestrict false positive at -O3).
std::string tag(const char* prefix, const std::string& name) {
  std::string out(prefix);
  out += name;
  return out;
}

// Shared by a recording communicator and its splits: the events, and names for the buffers.
struct Log {
  std::map<const void*, int> groups;  // parameter shard -> group index
  std::vector<std::string> events;
  std::string group_of(const Tensor& t) const {
    const auto it = groups.find(t.raw());
    return it == groups.end() ? "?" : std::to_string(it->second);
  }
  void add(const std::string& event) { events.push_back(event); }
  std::string str() const {
    std::string out;
    for (const auto& e : events) out += (out.empty() ? "" : " ") + e;
    return out;
  }
};

// A started collective that runs only when waited for (or destroyed).
class DeferredWork final : public comm::Work {
 public:
  explicit DeferredWork(std::function<void()> run) : run_(std::move(run)) {}
  ~DeferredWork() override { wait(); }
  void wait() override {
    if (!run_) return;
    auto run = std::move(run_);
    run_ = nullptr;
    run();
  }

 private:
  std::function<void()> run_;
};

// Events: "g<i>" all_gather_start of group i's shard, "d<i>" its completion (wait), "rs" a
// reduce_scatter_start, "rd" its completion; blocking all_gather / reduce_scatter as "AG" / "RS".
class RecordingCommunicator final : public comm::Communicator {
 public:
  RecordingCommunicator(std::unique_ptr<comm::Communicator> inner, std::shared_ptr<Log> log)
      : inner_(std::move(inner)), log_(std::move(log)) {}
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }
  std::vector<int> world_ranks() const override { return inner_->world_ranks(); }
  void all_to_all(const Tensor& send, Tensor recv) override { inner_->all_to_all(send, recv); }
  void all_gather(const Tensor& send, Tensor recv) override {
    log_->add("AG");
    inner_->all_gather(send, recv);
  }
  std::unique_ptr<comm::Work> all_gather_start(const Tensor& send, Tensor recv) override {
    const std::string group = log_->group_of(send);
    log_->add(tag("g", group));
    return std::make_unique<DeferredWork>([this, send, recv, group] {
      log_->add(tag("d", group));
      inner_->all_gather(send, recv);
    });
  }
  void reduce_scatter(const Tensor& send, Tensor recv, comm::ReduceOp op) override {
    log_->add("RS");
    inner_->reduce_scatter(send, recv, op);
  }
  std::unique_ptr<comm::Work> reduce_scatter_start(const Tensor& send, Tensor recv,
                                                   comm::ReduceOp op) override {
    log_->add("rs");
    return std::make_unique<DeferredWork>([this, send, recv, op] {
      log_->add("rd");
      inner_->reduce_scatter(send, recv, op);
    });
  }
  void all_reduce(Tensor data, comm::ReduceOp op) override { inner_->all_reduce(data, op); }
  void broadcast(Tensor data, int root) override { inner_->broadcast(data, root); }
  void send(const Tensor& data, int peer, int tag) override { inner_->send(data, peer, tag); }
  void recv(Tensor data, int peer, int tag) override { inner_->recv(data, peer, tag); }
  void barrier() override { inner_->barrier(); }
  std::unique_ptr<comm::Communicator> split(int color, int key) const override {
    return std::make_unique<RecordingCommunicator>(inner_->split(color, key), log_);
  }

 private:
  std::unique_ptr<comm::Communicator> inner_;
  std::shared_ptr<Log> log_;
};

// Forwards to the ZeroState and records the decoder's calls: "A<i>" acquire (after it
// returned), "R<i>" release, "D<i>" grads_done.
class RecordingStore final : public model::ParamStore {
 public:
  RecordingStore(ZeroState& zero, Log& log) : zero_(zero), log_(log) {}
  const model::ModelConfig& config() const override { return zero_.config(); }
  const model::ParamLayout& layout() const override { return zero_.layout(); }
  Tensor acquire(std::size_t group) override {
    Tensor t = zero_.acquire(group);
    log_.add(tag("A", std::to_string(group)));
    return t;
  }
  void release(std::size_t group) override {
    zero_.release(group);
    log_.add(tag("R", std::to_string(group)));
  }
  Tensor grads(std::size_t group) override { return zero_.grads(group); }
  void grads_done(std::size_t group) override {
    zero_.grads_done(group);
    log_.add(tag("D", std::to_string(group)));
  }

 private:
  ZeroState& zero_;
  Log& log_;
};

// 2 layers, untied: groups 0 = embed, 1 = layer 0, 2 = layer 1, 3 = final.
model::ModelConfig overlap_config() {
  model::ModelConfig c = model::preset_config("tiny");
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.vocab_size = 29;
  c.tie_word_embeddings = false;
  return c;
}

data::PackedSequence make_sequence(std::uint64_t index, std::int64_t vocab) {
  Rng rng = Rng::derive(3, {index});
  return testing::random_documents(rng, {6, 4}, vocab);
}

struct StepResult {
  std::string events;  // of the step (begin_step .. finish_step)
  double norm = 0;
  std::vector<float> params;
  ZeroState::Transient peak;
  std::int64_t dropped = 0;
  bool overlap = false;
};

// One optimizer step of 2 micro-steps at stage 3 (stage 3 also reduce-scatters gradients).
StepResult run_step(bool overlap) {
  const model::ModelConfig config = overlap_config();
  auto log = std::make_shared<Log>();
  RecordingCommunicator world(comm::make_self_communicator(), log);
  Mesh mesh(world, ParallelConfig{1, 1, 1});
  ZeroConfig zero_config{3, false, false};
  zero_config.overlap = overlap;
  ZeroState zero(config, mesh, zero_config, ops::AdamWConfig{});
  int index = 0;
  for (const auto& [name, t] : zero.state_tensors())
    if (name.rfind("param.", 0) == 0) log->groups[t.raw()] = index++;
  model::ParamBuffers init(config);
  model::init_weights(init, 7);
  zero.set_parameters(init);

  auto attention = make_local_attention();
  const model::Decoder decoder(config, *attention);
  RecordingStore store(zero, *log);
  const Context ctx;
  log->events.clear();
  zero.begin_step();
  for (std::uint64_t micro = 0; micro < 2; ++micro)
    decoder.forward_backward(ctx, store,
                             data::make_full_shard(make_sequence(micro, config.vocab_size)),
                             0.05f, {});
  StepResult r;
  r.norm = zero.finish_step(ctx, 1, 1e-2f, 1.0);
  r.events = log->str();
  r.peak = zero.peak_transient();
  r.dropped = zero.dropped_prefetches();
  r.overlap = zero.overlap();
  model::ParamBuffers out(config);
  zero.gather_parameters(out);
  for (const auto& flat : out.flat())
    for (const float v : flat.to_floats()) r.params.push_back(v);
  return r;
}

TEST(ZeroOverlapTest, PrefetchesTheNextGroupAndReducesAsynchronously) {
  const StepResult r = run_step(true);
  EXPECT_TRUE(r.overlap);
  // Forward: acquire(i) waits for group i's gather (d<i>) and starts group i + 1's (g<i+1>);
  // backward: group i - 1's. The reduce-scatter started by grads_done(i) completes at the next
  // grads_done (rd before its rs) or at finish_step.
  const std::string micro_step_backward =
      "rs D3 R3 "                      // final's gradients travel
      "g2 d2 g1 A2 rd rs D2 R2 "       // backward turns: layer 1 gathered, layer 0 prefetched
      "d1 g0 A1 rd rs D1 R1 "          // layer 0 (prefetched), embed prefetched
      "rd rs D0";                      // embed's gradients (embed not acquired in backward)
  const std::string expected =
      // micro-step 1: a step starts with the forward at group 0.
      "g0 d0 g1 A0 R0 d1 g2 A1 R1 d2 g3 A2 R2 d3 A3 " + micro_step_backward +
      // micro-step 2: the embed prefetched during the backward is used; then forward again.
      " d0 A0 R0 g1 d1 g2 A1 R1 d2 g3 A2 R2 d3 A3 rd " + micro_step_backward +
      // finish_step: the last reduce-scatter; the unused embed prefetch is dropped.
      " rd d0";
  EXPECT_EQ(r.events, expected);
  EXPECT_EQ(r.dropped, 1);

  // Memory: at most the acquired group plus one prefetched group; the accumulating gradients
  // plus the previous group's in flight. The layers are the largest groups.
  const model::ParamLayout layout(overlap_config());
  const auto bytes = [&](std::size_t g) { return 4 * layout.groups()[g].numel; };
  ASSERT_GT(bytes(1), bytes(0));
  ASSERT_GT(bytes(1), bytes(3));
  EXPECT_EQ(r.peak.params, bytes(2) + bytes(1));  // layer 1 acquired, layer 0 prefetched
  EXPECT_EQ(r.peak.grads, bytes(2) + bytes(1));   // layer 1 in flight, layer 0 accumulating
}

TEST(ZeroOverlapTest, OffIsBlockingAndBitIdentical) {
  const StepResult off = run_step(false);
  EXPECT_FALSE(off.overlap);
  // Every gather completes before its acquire returns, nothing is prefetched, and every
  // reduce-scatter completes inside its grads_done.
  const std::string forward = "g0 d0 A0 R0 g1 d1 A1 R1 g2 d2 A2 R2 g3 d3 A3 ";
  const std::string backward = "rs rd D3 R3 g2 d2 A2 rs rd D2 R2 g1 d1 A1 rs rd D1 R1 rs rd D0";
  EXPECT_EQ(off.events, forward + backward + " " + forward + backward);
  EXPECT_EQ(off.dropped, 0);
  const model::ParamLayout layout(overlap_config());
  EXPECT_EQ(off.peak.params, 4 * layout.groups()[1].numel);  // one group (a layer) at a time
  EXPECT_EQ(off.peak.grads, 4 * layout.groups()[1].numel);

  const StepResult on = run_step(true);
  EXPECT_EQ(std::memcmp(&on.norm, &off.norm, sizeof on.norm), 0) << on.norm << " " << off.norm;
  ASSERT_EQ(on.params.size(), off.params.size());
  EXPECT_EQ(std::memcmp(on.params.data(), off.params.data(), 4 * on.params.size()), 0);
}

}  // namespace
}  // namespace ulysses::parallel
