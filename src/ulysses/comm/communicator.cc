// Defaults of the Communicator interface.
#include "ulysses/comm/communicator.h"

#include <cstdint>
#include <cstring>

namespace ulysses::comm {

namespace {

// A collective that completed before its start call returned.
class CompletedWork final : public Work {
 public:
  void wait() override {}
};

}  // namespace

double sum_in_rank_order(Communicator& group, double value) {
  if (group.size() == 1) return value;
  Tensor mine = Tensor::empty({1}, DType::i64);  // [1] the double's bits
  std::memcpy(mine.data<std::int64_t>(), &value, sizeof value);
  Tensor all = Tensor::empty({group.size()}, DType::i64);  // [size]
  group.all_gather(mine, all);
  double sum = 0;
  for (int i = 0; i < group.size(); ++i) {
    double v;
    std::memcpy(&v, all.data<std::int64_t>() + i, sizeof v);
    sum += v;
  }
  return sum;
}

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

std::unique_ptr<Work> Communicator::send_recv_start(const Tensor& send, int send_peer, Tensor recv,
                                                    int recv_peer, int tag) {
  if (size() == 1) {
    UL_CHECK(send_peer == 0 && recv_peer == 0, "send_recv: peers ", send_peer, " and ", recv_peer,
             " outside a group of one");
    UL_CHECK(send.numel() == recv.numel() && send.dtype() == recv.dtype(),
             "send_recv: in a group of one recv must match send (", send.numel(), " vs ",
             recv.numel(), " elements)");
    if (send.numel() > 0) recv.view(send.shape()).copy_from(send);
    return std::make_unique<CompletedWork>();
  }
  if (rank() % 2 == 0) {
    this->send(send, send_peer, tag);
    this->recv(recv, recv_peer, tag);
  } else {
    this->recv(recv, recv_peer, tag);
    this->send(send, send_peer, tag);
  }
  return std::make_unique<CompletedWork>();
}

}  // namespace ulysses::comm
