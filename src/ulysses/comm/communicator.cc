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

}  // namespace ulysses::comm
