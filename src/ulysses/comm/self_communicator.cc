// The group of one process: every collective is a copy from send to recv (any device), or
// nothing when it works in place. No MPI call is made.
#include <memory>

#include "ulysses/comm/comm_checks.h"
#include "ulysses/comm/communicator.h"

namespace ulysses::comm {
namespace {

// recv = send, element for element (shapes may differ; numel and dtype are already checked).
void copy_elements(const Tensor& send, Tensor recv) {
  if (send.numel() == 0) return;
  recv.view(send.shape()).copy_from(send);
}

class SelfCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "self"; }
  std::vector<int> world_ranks() const override { return {0}; }

  void all_to_all(const Tensor& send, Tensor recv) override {
    detail::check_all_to_all(send, recv, 1);
    copy_elements(send, recv);
  }

  void all_gather(const Tensor& send, Tensor recv) override {
    detail::check_all_gather(send, recv, 1);
    copy_elements(send, recv);
  }

  void reduce_scatter(const Tensor& send, Tensor recv, ReduceOp) override {
    detail::check_reduce_scatter(send, recv, 1);
    copy_elements(send, recv);
  }

  void all_reduce(Tensor data, ReduceOp) override {
    detail::check_defined("all_reduce", data, "data");
  }

  void broadcast(Tensor data, int root) override {
    detail::check_defined("broadcast", data, "data");
    detail::check_rank_in_group("broadcast", "root", root, 1);
  }

  void send(const Tensor&, int peer, int) override {
    UL_FAIL("send: the self communicator has no peer to send to (peer ", peer, ")");
  }

  void recv(Tensor, int peer, int) override {
    UL_FAIL("recv: the self communicator has no peer to receive from (peer ", peer, ")");
  }

  void barrier() override {}

  std::unique_ptr<Communicator> split(int color, int) const override {
    UL_CHECK(color >= 0, "split: color ", color, " must be non-negative");
    return std::make_unique<SelfCommunicator>();
  }
};

}  // namespace

std::unique_ptr<Communicator> make_self_communicator() {
  return std::make_unique<SelfCommunicator>();
}

}  // namespace ulysses::comm
