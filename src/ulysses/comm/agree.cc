// Agreement between ranks (see agree.h).
#include "ulysses/comm/agree.h"

#include <cstdint>
#include <exception>

#include "ulysses/core/error.h"

namespace ulysses::comm {

// One i32 element per byte.
void broadcast_string(Communicator& world, int root, std::string& text) {
  Tensor length = Tensor::empty({1}, DType::i64);  // [1]
  length.data<std::int64_t>()[0] = static_cast<std::int64_t>(text.size());
  world.broadcast(length, root);
  const std::int64_t n = length.data<std::int64_t>()[0];
  if (n == 0) {
    text.clear();
    return;
  }
  Tensor bytes = Tensor::empty({n}, DType::i32);  // [n]
  std::int32_t* b = bytes.data<std::int32_t>();
  if (world.rank() == root)
    for (std::int64_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(text[i]);
  world.broadcast(bytes, root);
  text.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) text[i] = static_cast<char>(b[i]);
}

void agree(Communicator& world, const std::string& error) {
  const int size = world.size();
  Tensor flag = Tensor::from_ints({error.empty() ? 0 : size - world.rank()}, {1});  // [1]
  world.all_reduce(flag, ReduceOp::max);
  const int top = flag.data<std::int32_t>()[0];
  if (top == 0) return;
  const int lowest_failing = size - top;
  std::string message = world.rank() == lowest_failing ? error : std::string();
  broadcast_string(world, lowest_failing, message);
  if (size > 1) message += " (rank " + std::to_string(lowest_failing) + ")";
  throw Error(message);
}

void run_agreed(Communicator& world, const std::function<void()>& work) {
  std::string error;
  try {
    work();
  } catch (const std::exception& e) {
    error = e.what();
    if (error.empty()) error = "unknown error";
  } catch (...) {
    error = "unknown non-standard exception";
  }
  agree(world, error);
}

}  // namespace ulysses::comm
