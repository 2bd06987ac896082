// Collectives of the MPI communicator, run under mpirun with 1, 2 and 4 ranks. Every rank's
// data is a known function of (rank, destination, element), so each rank can work out exactly
// what it must receive.
#include <gtest/gtest.h>
// The C API only (no deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "dist_util.h"
#include "test_util.h"

namespace ulysses {
namespace {

using comm::Communicator;
using comm::ReduceOp;
using ulysses::testing::world;

// Exact integer <-> element encoding (bf16 carries the integer in its raw 16 bits, which also
// checks that 16-bit transfers do not convert anything).
template <typename T>
T encode(std::int64_t v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return bf16{static_cast<std::uint16_t>(v)};
  } else {
    return static_cast<T>(v);
  }
}
template <typename T>
std::int64_t decode(T x) {
  if constexpr (std::is_same_v<T, bf16>) {
    return x.bits;
  } else {
    return static_cast<std::int64_t>(x);
  }
}

// Tensor of shape with element i = encode(value(i)).
template <typename T>
Tensor make(const Shape& shape, const std::function<std::int64_t(std::int64_t)>& value) {
  Tensor t = Tensor::empty(shape, dtype_of<T>::value);
  T* p = t.data<T>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = encode<T>(value(i));
  return t;
}
// Filled with a value no test expects, so unwritten elements fail.
template <typename T>
Tensor poison(std::int64_t numel) {
  return make<T>({numel}, [](std::int64_t) { return 0x7777; });
}
template <typename T>
std::vector<std::int64_t> decode_all(const Tensor& t) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < t.numel(); ++i) out.push_back(decode(t.data<T>()[i]));
  return out;
}

TEST(MpiComm, WorldBasics) {
  Communicator& w = world();
  EXPECT_EQ(w.backend(), "mpi");
  ASSERT_GE(w.size(), 1);
  EXPECT_GE(w.rank(), 0);
  EXPECT_LT(w.rank(), w.size());
  std::vector<int> expected(static_cast<std::size_t>(w.size()));
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(w.world_ranks(), expected);
  EXPECT_EQ(comm::launched_with_several_ranks(), w.size() > 1);
  w.barrier();
}

// Rank r sends r*100 + j*10 + k as element k of chunk j (to rank j).
template <typename T>
void check_all_to_all() {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int chunk = 3;
  Tensor send =
      make<T>({n, chunk}, [&](std::int64_t i) { return r * 100 + i / chunk * 10 + i % chunk; });
  Tensor recv = poison<T>(n * chunk);
  w.all_to_all(send, recv);
  const auto got = decode_all<T>(recv);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < chunk; ++k)
      EXPECT_EQ(got[i * chunk + k], i * 100 + r * 10 + k) << "from rank " << i << " element " << k;
}
TEST(MpiComm, AllToAllF32) { check_all_to_all<float>(); }
TEST(MpiComm, AllToAllI32) { check_all_to_all<std::int32_t>(); }
TEST(MpiComm, AllToAllBf16) { check_all_to_all<bf16>(); }
TEST(MpiComm, AllToAllI64) { check_all_to_all<std::int64_t>(); }

template <typename T>
void check_all_gather() {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  Tensor send = make<T>({2}, [&](std::int64_t k) { return r * 10 + k; });
  Tensor recv = poison<T>(n * 2);
  w.all_gather(send, recv);
  const auto got = decode_all<T>(recv);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < 2; ++k) EXPECT_EQ(got[i * 2 + k], i * 10 + k);
}
TEST(MpiComm, AllGatherF32) { check_all_gather<float>(); }
TEST(MpiComm, AllGatherI32) { check_all_gather<std::int32_t>(); }
TEST(MpiComm, AllGatherBf16) { check_all_gather<bf16>(); }

// A float that is not exactly representable, distinct per (rank, element).
float fractional(int rank, std::int64_t i) {
  return 0.1f * static_cast<float>(rank + 1) + 0.0137f * static_cast<float>(i) - 0.3f;
}
// The contract: f32 sums are taken left to right in rank order.
float rank_order_sum(int ranks, std::int64_t i) {
  float acc = fractional(0, i);
  for (int r = 1; r < ranks; ++r) acc += fractional(r, i);
  return acc;
}
double exact_sum(int ranks, std::int64_t i) {
  double acc = 0;
  for (int r = 0; r < ranks; ++r) acc += fractional(r, i);
  return acc;
}
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The process has other threads (OpenMP, the NCCL watchdog on GPUs) that make no MPI calls:
// the granted level must be at least FUNNELED (make_mpi_world refuses less).
TEST(MpiComm, ThreadLevelIsAtLeastFunneled) {
  world();
  int provided = -1;
  ASSERT_EQ(MPI_Query_thread(&provided), MPI_SUCCESS);
  EXPECT_GE(provided, MPI_THREAD_FUNNELED);
}

// The started collectives of the MPI backend complete before they return (the Work's wait()
// is a no-op) and give exactly what the blocking ones give.
TEST(MpiComm, StartedCollectivesMatchBlockingOnes) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  Tensor send = Tensor::empty({n, 4}, DType::f32);
  for (int i = 0; i < n * 4; ++i) send.data<float>()[i] = fractional(r, i);
  const auto same = [](const Tensor& a, const Tensor& b) {
    return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
  };
  Tensor blocking = Tensor::full({n * 4}, std::nanf("")), started = blocking.clone();
  w.all_to_all(send, blocking);
  w.all_to_all_start(send, started)->wait();
  EXPECT_TRUE(same(blocking, started)) << "all_to_all";
  Tensor gathered = Tensor::full({n * n * 4}, std::nanf("")), gathered_started = gathered.clone();
  w.all_gather(send, gathered);
  auto work = w.all_gather_start(send, gathered_started);
  EXPECT_TRUE(same(gathered, gathered_started)) << "all_gather completes before wait()";
  work->wait();
  Tensor reduced = Tensor::full({4}, std::nanf("")), reduced_started = reduced.clone();
  w.reduce_scatter(send, reduced, ReduceOp::sum);
  w.reduce_scatter_start(send, reduced_started, ReduceOp::sum)->wait();
  EXPECT_TRUE(same(reduced, reduced_started)) << "reduce_scatter";
}

TEST(MpiComm, ReduceScatterF32SumIsRankOrdered) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int block = 5;
  // send: [n, block]; element (j, k) = fractional(r, j*block + k).
  Tensor send = Tensor::empty({n, block}, DType::f32);
  for (int i = 0; i < n * block; ++i) send.data<float>()[i] = fractional(r, i);
  Tensor recv = Tensor::full({block}, std::nanf(""));
  w.reduce_scatter(send, recv, ReduceOp::sum);
  for (int k = 0; k < block; ++k) {
    const std::int64_t i = r * block + k;
    EXPECT_TRUE(same_bits(recv.data<float>()[k], rank_order_sum(n, i)))
        << recv.data<float>()[k] << " vs " << rank_order_sum(n, i);
    EXPECT_NEAR(recv.data<float>()[k], exact_sum(n, i), 1e-5);
  }
}

TEST(MpiComm, ReduceScatterMaxAndIntegers) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int block = 3;
  // Element (j, k) from rank r: r * 7 + j * 100 + k (max over ranks: (n-1)*7 + ...).
  auto value = [&](std::int64_t i) { return r * 7 + i / block * 100 + i % block; };
  Tensor f = make<float>({n * block}, value);
  Tensor fmax = poison<float>(block);
  w.reduce_scatter(f, fmax, ReduceOp::max);
  Tensor i32 = make<std::int32_t>({n * block}, value);
  Tensor isum = poison<std::int32_t>(block);
  w.reduce_scatter(i32, isum, ReduceOp::sum);
  // i64 beyond 32 bits: rank r adds (r + 1) << 33.
  Tensor i64 = make<std::int64_t>({n * block}, [&](std::int64_t i) {
    return (static_cast<std::int64_t>(r + 1) << 33) + value(i);
  });
  Tensor lsum = poison<std::int64_t>(block);
  w.reduce_scatter(i64, lsum, ReduceOp::sum);
  for (int k = 0; k < block; ++k) {
    const std::int64_t base = r * 100 + k;  // the element index j*block + k with j = r
    std::int64_t sum = 0, big = 0;
    for (int q = 0; q < n; ++q) {
      sum += q * 7 + base;
      big += (static_cast<std::int64_t>(q + 1) << 33) + q * 7 + base;
    }
    EXPECT_EQ(fmax.data<float>()[k], static_cast<float>((n - 1) * 7 + base));
    EXPECT_EQ(isum.data<std::int32_t>()[k], sum);
    EXPECT_EQ(lsum.data<std::int64_t>()[k], big);
  }
}

// Sizes that do not divide evenly among ranks, including fewer elements than ranks and none.
TEST(MpiComm, AllReduceF32SumIsRankOrderedAndIdenticalOnAllRanks) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  for (const std::int64_t numel : {0, 1, 3, 7, 64, 1001}) {
    Tensor data = Tensor::empty({numel}, DType::f32);
    for (std::int64_t i = 0; i < numel; ++i) data.data<float>()[i] = fractional(r, i);
    w.all_reduce(data, ReduceOp::sum);
    for (std::int64_t i = 0; i < numel; ++i) {
      EXPECT_TRUE(same_bits(data.data<float>()[i], rank_order_sum(n, i)))
          << "numel " << numel << " element " << i;
      EXPECT_NEAR(data.data<float>()[i], exact_sum(n, i), 1e-5);
    }
    // Every rank holds the same bits.
    Tensor gathered = Tensor::empty({n, numel}, DType::f32);
    w.all_gather(data, gathered);
    for (int q = 0; q < n; ++q)
      EXPECT_EQ(std::memcmp(gathered.data<float>() + q * numel, data.data<float>(),
                            static_cast<std::size_t>(numel) * sizeof(float)),
                0)
          << "rank " << q << " differs, numel " << numel;
  }
}

TEST(MpiComm, AllReduceMaxAndIntegers) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const std::int64_t numel = 6;
  // Element i from rank r: (r * 5 + i * 3) % 11 - 4 (the maximum moves between ranks).
  auto value = [&](int q, std::int64_t i) { return (q * 5 + i * 3) % 11 - 4; };
  Tensor f = make<float>({numel}, [&](std::int64_t i) { return value(r, i); });
  Tensor i32 = make<std::int32_t>({numel}, [&](std::int64_t i) { return value(r, i); });
  Tensor i32max = i32.clone();
  Tensor i64 = make<std::int64_t>({numel}, [&](std::int64_t i) {
    return (static_cast<std::int64_t>(r + 1) << 40) + value(r, i);
  });
  w.all_reduce(f, ReduceOp::max);
  w.all_reduce(i32, ReduceOp::sum);
  w.all_reduce(i32max, ReduceOp::max);
  w.all_reduce(i64, ReduceOp::sum);
  for (std::int64_t i = 0; i < numel; ++i) {
    std::int64_t max = value(0, i), sum = 0, big = 0;
    for (int q = 0; q < n; ++q) {
      max = std::max<std::int64_t>(max, value(q, i));
      sum += value(q, i);
      big += (static_cast<std::int64_t>(q + 1) << 40) + value(q, i);
    }
    EXPECT_EQ(f.data<float>()[i], static_cast<float>(max));
    EXPECT_EQ(i32.data<std::int32_t>()[i], sum);
    EXPECT_EQ(i32max.data<std::int32_t>()[i], max);
    EXPECT_EQ(i64.data<std::int64_t>()[i], big);
  }
}

// bf16 sums accumulate in f32 in rank order and round once: with 1 on rank 0 and 2^-9 on the
// others, 4 ranks give 1 + 3 * 2^-9, which rounds to 1 + 2^-7 (bf16-by-bf16 would stay at 1).
TEST(MpiComm, AllReduceBf16SumsInF32) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const float mine = r == 0 ? 1.0f : 0x1.0p-9f;
  Tensor data = Tensor::full({3}, mine).to(DType::bf16);
  w.all_reduce(data, ReduceOp::sum);
  float f32_sum = 1.0f;
  for (int q = 1; q < n; ++q) f32_sum += 0x1.0p-9f;
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(data.data<bf16>()[i].bits, float_to_bf16(f32_sum).bits) << "world size " << n;
}

TEST(MpiComm, BroadcastFromEveryRoot) {
  Communicator& w = world();
  for (int root = 0; root < w.size(); ++root) {
    auto value = [&](std::int64_t k) { return root * 10 + k; };
    Tensor f = w.rank() == root ? make<float>({4}, value) : poison<float>(4);
    Tensor i = w.rank() == root ? make<std::int32_t>({4}, value) : poison<std::int32_t>(4);
    w.broadcast(f, root);
    w.broadcast(i, root);
    for (int k = 0; k < 4; ++k) {
      EXPECT_EQ(decode_all<float>(f)[k], value(k));
      EXPECT_EQ(decode_all<std::int32_t>(i)[k], value(k));
    }
  }
}

// Pairs (0, 1), (2, 3): the even rank sends first, the odd one receives first.
TEST(MpiComm, SendRecvPairs) {
  Communicator& w = world();
  const int r = w.rank();
  testing::expect_error([&] { w.send(Tensor::zeros({1}, DType::f32), r, 0); }, "send");
  testing::expect_error([&] { w.recv(Tensor::zeros({1}, DType::f32), w.size(), 0); }, "recv");
  const int partner = r ^ 1;
  if (partner >= w.size()) {  // the last rank of an odd-sized world
    w.barrier();
    return;
  }
  auto from = [](int q) { return [q](std::int64_t k) { return q * 100 + k; }; };
  Tensor out = make<float>({5}, from(r));
  Tensor in = poison<float>(5);
  Tensor short_message = make<std::int32_t>({2}, from(r));
  Tensor too_big = poison<std::int32_t>(3);
  if (r % 2 == 0) {
    w.send(out, partner, 7);
    w.recv(in, partner, 7);
    w.send(short_message, partner, 8);
  } else {
    w.recv(in, partner, 7);
    w.send(out, partner, 7);
    testing::expect_error([&] { w.recv(too_big, partner, 8); }, "recv");
  }
  for (int k = 0; k < 5; ++k) EXPECT_EQ(decode_all<float>(in)[k], partner * 100 + k);
  w.barrier();
}

// Even and odd world ranks form two groups; run collectives inside each.
TEST(MpiComm, SplitEvenOdd) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  const int color = r % 2;
  std::vector<int> members;
  for (int q = color; q < n; q += 2) members.push_back(q);
  const int m = static_cast<int>(members.size());

  auto part = w.split(color, r);
  EXPECT_EQ(part->backend(), "mpi");
  EXPECT_EQ(part->size(), m);
  EXPECT_EQ(part->rank(), r / 2);
  EXPECT_EQ(part->world_ranks(), members);

  Tensor gathered = poison<std::int32_t>(m);
  part->all_gather(make<std::int32_t>({1}, [&](std::int64_t) { return r; }), gathered);
  EXPECT_EQ(decode_all<std::int32_t>(gathered),
            std::vector<std::int64_t>(members.begin(), members.end()));

  Tensor total = make<std::int32_t>({1}, [&](std::int64_t) { return r; });
  part->all_reduce(total, ReduceOp::sum);
  EXPECT_EQ(total.data<std::int32_t>()[0], std::accumulate(members.begin(), members.end(), 0));

  // Group all-to-all: group rank g sends world_rank*10 + j to group rank j.
  Tensor send = make<float>({m}, [&](std::int64_t j) { return r * 10 + j; });
  Tensor recv = poison<float>(m);
  part->all_to_all(send, recv);
  for (int i = 0; i < m; ++i) EXPECT_EQ(decode_all<float>(recv)[i], members[i] * 10 + r / 2);

  // f32 sum inside the group follows the group's rank order.
  Tensor sum = Tensor::from_floats({fractional(r, 0)}, {1});
  part->all_reduce(sum, ReduceOp::sum);
  float expected = fractional(members[0], 0);
  for (int i = 1; i < m; ++i) expected += fractional(members[i], 0);
  EXPECT_TRUE(same_bits(sum.data<float>()[0], expected));
  part->barrier();
}

TEST(MpiComm, SplitOrdersByKeyAndNests) {
  Communicator& w = world();
  const int n = w.size(), r = w.rank();
  auto reversed = w.split(0, -r);
  EXPECT_EQ(reversed->rank(), n - 1 - r);
  std::vector<int> expected;
  for (int q = n - 1; q >= 0; --q) expected.push_back(q);
  EXPECT_EQ(reversed->world_ranks(), expected);
  // Split of a split: singletons.
  auto alone = reversed->split(reversed->rank(), 0);
  EXPECT_EQ(alone->size(), 1);
  EXPECT_EQ(alone->world_ranks(), std::vector<int>{r});
  Tensor x = Tensor::from_floats({1.5f}, {1});
  alone->all_reduce(x, ReduceOp::sum);
  EXPECT_EQ(x.data<float>()[0], 1.5f);
  testing::expect_error([&] { (void)w.split(-1, 0); }, "split");
}

// Arguments that are wrong on every rank throw everywhere (no collective starts), and the
// communicator stays usable.
TEST(MpiComm, SizeMismatchesThrow) {
  Communicator& w = world();
  const int n = w.size();
  auto f32 = [](std::int64_t numel) { return Tensor::zeros({numel}, DType::f32); };
  testing::expect_error([&] { w.all_to_all(f32(2 * n), f32(2 * n + 1)); }, "all_to_all");
  testing::expect_error([&] { w.all_to_all(f32(2 * n), Tensor::zeros({2 * n}, DType::i32)); },
                        "all_to_all");
  if (n > 1)
    testing::expect_error([&] { w.all_to_all(f32(2 * n + 1), f32(2 * n + 1)); }, "all_to_all");
  Tensor both = f32(4 * n);
  testing::expect_error(
      [&] {
        w.all_to_all(both.view({2, 2 * n}).rows(0, 1), both.view({2, 2 * n}).rows(0, 1));
      },
      "overlap");
  testing::expect_error([&] { w.all_gather(f32(3), f32(3 * n + 1)); }, "all_gather");
  testing::expect_error([&] { w.reduce_scatter(f32(3 * n + 1), f32(3), ReduceOp::sum); },
                        "reduce_scatter");
  testing::expect_error([&] { w.broadcast(f32(1), n); }, "broadcast");
  testing::expect_error([&] { w.broadcast(f32(1), -1); }, "broadcast");
  testing::expect_error([&] { w.all_reduce(Tensor(), ReduceOp::sum); }, "all_reduce");

  Tensor check = Tensor::from_ints({1}, {1});
  w.all_reduce(check, ReduceOp::sum);
  EXPECT_EQ(check.data<std::int32_t>()[0], n);
}

// A collective that one rank never joins stops the whole job after the collective timeout
// (ULYSSES_NCCL_TIMEOUT_S, shared with the NCCL backend), naming the collective. It ends the job,
// so it runs only when asked (ctest registers it as dist.mpi_timeout.np2):
//   ULYSSES_TEST_MPI_HANG=1 ULYSSES_NCCL_TIMEOUT_S=2 mpirun -np 2 dist_comm_test
//     --gtest_filter=MpiWatchdog.*
// expected: exit status != 0 within seconds, stderr "all_reduce did not complete within 2 s".
TEST(MpiWatchdog, MissingRankStopsTheJobAfterTheTimeout) {
  if (std::getenv("ULYSSES_TEST_MPI_HANG") == nullptr)
    GTEST_SKIP() << "set ULYSSES_TEST_MPI_HANG=1 to run (it stops the job on purpose)";
  Communicator& c = world();
  if (c.size() < 2) GTEST_SKIP() << "needs 2 ranks";
  if (c.rank() == 0) {
    Tensor data = Tensor::from_floats(std::vector<float>(16, 1.0f), {16});
    c.all_reduce(data, ReduceOp::sum);  // rank 1 never joins
  }
  std::this_thread::sleep_for(
      std::chrono::seconds(static_cast<int>(comm::collective_timeout_seconds()) + 60));
  FAIL() << "the watchdog should have stopped the job";
}

}  // namespace
}  // namespace ulysses
