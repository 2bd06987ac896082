// Defaults of the Communicator interface.
#include "ulysses/comm/communicator.h"

#include <cstdint>
#include <cstring>
#include <numeric>

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
  // The shift r -> r + s splits the ranks into cycles (the ranks of equal r mod gcd(P, s));
  // along its cycle, even positions send first and odd ones receive first, so no cycle of
  // blocked sends can form (an odd-length cycle's last rank sends to position 0, which receives
  // once its own send to position 1, receiving first, completed).
  const int P = size(), r = rank(), shift = (send_peer - r + P) % P;
  UL_CHECK(shift != 0 && (recv_peer + shift) % P == r, "send_recv: sending to ", send_peer,
           " and receiving from ", recv_peer,
           " is not a ring shift (the default implementation "
           "supports shifts only: recv_peer = rank - (send_peer - rank))");
  int position = 0;
  for (int x = r % std::gcd(P, shift); x != r; x = (x + shift) % P) ++position;
  if (position % 2 == 0) {
    this->send(send, send_peer, tag);
    this->recv(recv, recv_peer, tag);
  } else {
    this->recv(recv, recv_peer, tag);
    this->send(send, send_peer, tag);
  }
  return std::make_unique<CompletedWork>();
}

}  // namespace ulysses::comm
