// Defaults of the Communicator interface.
#include "ulysses/comm/communicator.h"

namespace ulysses::comm {

namespace {

// A collective that completed before its start call returned.
class CompletedWork final : public Work {
 public:
  void wait() override {}
};

}  // namespace

std::unique_ptr<Work> Communicator::all_to_all_start(const Tensor& send, Tensor recv) {
  all_to_all(send, std::move(recv));
  return std::make_unique<CompletedWork>();
}

std::unique_ptr<Work> Communicator::all_gather_start(const Tensor& send, Tensor recv) {
  all_gather(send, std::move(recv));
  return std::make_unique<CompletedWork>();
}

std::unique_ptr<Work> Communicator::reduce_scatter_start(const Tensor& send, Tensor recv,
                                                         ReduceOp op) {
  reduce_scatter(send, std::move(recv), op);
  return std::make_unique<CompletedWork>();
}

}  // namespace ulysses::comm
