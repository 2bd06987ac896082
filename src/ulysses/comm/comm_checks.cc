#include "ulysses/comm/comm_checks.h"

#include <cstddef>

namespace ulysses::comm::detail {

std::vector<std::int64_t> prefix_offsets(const std::vector<std::int64_t>& counts) {
  std::vector<std::int64_t> offsets(counts.size() + 1, 0);
  for (std::size_t i = 0; i < counts.size(); ++i) offsets[i + 1] = offsets[i] + counts[i];
  return offsets;
}

void check_defined(const char* collective, const Tensor& data, const char* name) {
  UL_CHECK(data.defined(), collective, ": ", name, " is an undefined tensor");
}

void check_pair(const char* collective, const Tensor& send, const Tensor& recv) {
  check_defined(collective, send, "send");
  check_defined(collective, recv, "recv");
  UL_CHECK(send.dtype() == recv.dtype(), collective, ": send has dtype ", dtype_name(send.dtype()),
           " but recv has dtype ", dtype_name(recv.dtype()));
  if (send.nbytes() == 0 || recv.nbytes() == 0 || !(send.device() == recv.device())) return;
  const auto* send_begin = static_cast<const char*>(send.raw());
  const auto* recv_begin = static_cast<const char*>(recv.raw());
  const bool disjoint =
      send_begin + send.nbytes() <= recv_begin || recv_begin + recv.nbytes() <= send_begin;
  UL_CHECK(disjoint, collective, ": send and recv overlap in memory");
}

void check_all_to_all(const Tensor& send, const Tensor& recv, int group_size) {
  check_pair("all_to_all", send, recv);
  UL_CHECK(send.numel() == recv.numel(), "all_to_all: send has ", send.numel(),
           " elements but recv has ", recv.numel());
  UL_CHECK(send.numel() % group_size == 0, "all_to_all: send has ", send.numel(),
           " elements, not divisible into ", group_size, " equal chunks (one per rank)");
}

void check_all_gather(const Tensor& send, const Tensor& recv, int group_size) {
  check_pair("all_gather", send, recv);
  UL_CHECK(recv.numel() == send.numel() * group_size, "all_gather: recv has ", recv.numel(),
           " elements, expected ", group_size, " ranks x ", send.numel(), " send elements");
}

void check_reduce_scatter(const Tensor& send, const Tensor& recv, int group_size) {
  check_pair("reduce_scatter", send, recv);
  UL_CHECK(send.numel() == recv.numel() * group_size, "reduce_scatter: send has ", send.numel(),
           " elements, expected ", group_size, " ranks x ", recv.numel(), " recv elements");
}

void check_rank_in_group(const char* collective, const char* name, int value, int group_size) {
  UL_CHECK(0 <= value && value < group_size, collective, ": ", name, " ", value,
           " is outside the group of ", group_size, " ranks");
}

}  // namespace ulysses::comm::detail
