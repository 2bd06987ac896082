// NCCL communicator on one GPU per rank: every collective against the values it must produce,
// for f32 and bf16 device tensors (small integers, exact in bf16), integer dtypes, sub-groups
// made by split, and host tensors, which go through MPI. Run under mpirun with 2 and 4 ranks.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "cuda_dist_util.h"
#include "test_util.h"
#include "ulysses/comm/nccl_communicator.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/core/cuda_resources.h"  // the compute stream (NcclWatchdog test)
#endif
#include "ulysses/core/rng.h"

namespace ulysses {
namespace {

using testing::gpu;
using testing::nccl_world;
using testing::world;

// A device tensor of dtype holding the given values.
Tensor device_tensor(const std::vector<float>& values, DType dtype) {
  const Tensor host = Tensor::from_floats(values, {static_cast<std::int64_t>(values.size())});
  return (dtype == DType::f32 ? host : host.to(dtype)).to(gpu().device);
}

std::vector<float> values_of(const Tensor& t) { return t.to(Device::cpu()).to_floats(); }

class NcclCollectives : public ::testing::TestWithParam<DType> {};

TEST_P(NcclCollectives, AllToAll) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  constexpr int kChunk = 3;
  std::vector<float> send, expected;
  for (int j = 0; j < P; ++j)
    for (int k = 0; k < kChunk; ++k) {
      send.push_back(static_cast<float>(r * 64 + j * 8 + k));      // to rank j
      expected.push_back(static_cast<float>(j * 64 + r * 8 + k));  // from rank j
    }
  Tensor recv = device_tensor(std::vector<float>(send.size(), NAN), GetParam());
  c.all_to_all(device_tensor(send, GetParam()), recv);
  EXPECT_EQ(values_of(recv), expected);
}

TEST_P(NcclCollectives, AllGather) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  std::vector<float> mine, expected;
  for (int k = 0; k < 5; ++k) mine.push_back(static_cast<float>(r * 8 + k));
  for (int i = 0; i < P; ++i)
    for (int k = 0; k < 5; ++k) expected.push_back(static_cast<float>(i * 8 + k));
  Tensor recv = device_tensor(std::vector<float>(expected.size(), NAN), GetParam());
  c.all_gather(device_tensor(mine, GetParam()), recv);
  EXPECT_EQ(values_of(recv), expected);
}

TEST_P(NcclCollectives, ReduceScatterSumAndMax) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  constexpr int kN = 4;
  std::vector<float> send, sum, max;
  for (int j = 0; j < P; ++j)
    for (int k = 0; k < kN; ++k) send.push_back(static_cast<float>((r + 1) * (j + 1) + k));
  for (int k = 0; k < kN; ++k) {
    sum.push_back(static_cast<float>((r + 1) * P * (P + 1) / 2 + P * k));
    max.push_back(static_cast<float>(P * (r + 1) + k));
  }
  Tensor recv = device_tensor(std::vector<float>(kN, NAN), GetParam());
  c.reduce_scatter(device_tensor(send, GetParam()), recv, comm::ReduceOp::sum);
  EXPECT_EQ(values_of(recv), sum);
  c.reduce_scatter(device_tensor(send, GetParam()), recv, comm::ReduceOp::max);
  EXPECT_EQ(values_of(recv), max);
}

TEST_P(NcclCollectives, AllReduceSumAndMax) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  std::vector<float> mine, sum, max;
  for (int k = 0; k < 7; ++k) {
    mine.push_back(static_cast<float>(r * 10 + k));
    sum.push_back(static_cast<float>(10 * P * (P - 1) / 2 + P * k));
    max.push_back(static_cast<float>((P - 1) * 10 + k));
  }
  Tensor data = device_tensor(mine, GetParam());
  c.all_reduce(data, comm::ReduceOp::sum);
  EXPECT_EQ(values_of(data), sum);
  data = device_tensor(mine, GetParam());
  c.all_reduce(data, comm::ReduceOp::max);
  EXPECT_EQ(values_of(data), max);
}

TEST_P(NcclCollectives, Broadcast) {
  comm::Communicator& c = nccl_world();
  const int root = c.size() - 1;
  std::vector<float> mine;
  for (int k = 0; k < 6; ++k) mine.push_back(static_cast<float>(c.rank() * 16 + k));
  Tensor data = device_tensor(mine, GetParam());
  c.broadcast(data, root);
  std::vector<float> expected;
  for (int k = 0; k < 6; ++k) expected.push_back(static_cast<float>(root * 16 + k));
  EXPECT_EQ(values_of(data), expected);
}

// The started collectives give what the blocking ones give (the blocking ones are start +
// wait, so this checks the Work path with the wait deferred past other queued work), several in
// flight at once, waited in reverse order; a Work destroyed without wait() still orders the
// compute stream after it.
TEST_P(NcclCollectives, StartedCollectivesMatchBlockingOnes) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  std::vector<float> a2a_send, a2a_expected, mine, gathered, rs_send, rs_expected;
  for (int j = 0; j < P; ++j)
    for (int k = 0; k < 2; ++k) {
      a2a_send.push_back(static_cast<float>(r * 64 + j * 8 + k));
      a2a_expected.push_back(static_cast<float>(j * 64 + r * 8 + k));
      rs_send.push_back(static_cast<float>((r + 1) * (j + 1) + k));
    }
  for (int k = 0; k < 3; ++k) mine.push_back(static_cast<float>(r * 8 + k));
  for (int i = 0; i < P; ++i)
    for (int k = 0; k < 3; ++k) gathered.push_back(static_cast<float>(i * 8 + k));
  for (int k = 0; k < 2; ++k)
    rs_expected.push_back(static_cast<float>((r + 1) * P * (P + 1) / 2 + P * k));

  Tensor a2a_recv = device_tensor(std::vector<float>(a2a_send.size(), NAN), GetParam());
  Tensor ag_recv = device_tensor(std::vector<float>(gathered.size(), NAN), GetParam());
  Tensor rs_recv = device_tensor(std::vector<float>(2, NAN), GetParam());
  auto a2a = c.all_to_all_start(device_tensor(a2a_send, GetParam()), a2a_recv);
  auto ag = c.all_gather_start(device_tensor(mine, GetParam()), ag_recv);
  auto rs =
      c.reduce_scatter_start(device_tensor(rs_send, GetParam()), rs_recv, comm::ReduceOp::sum);
  rs->wait();
  ag->wait();
  a2a->wait();
  a2a->wait();  // a second wait is a no-op
  EXPECT_EQ(values_of(a2a_recv), a2a_expected);
  EXPECT_EQ(values_of(ag_recv), gathered);
  EXPECT_EQ(values_of(rs_recv), rs_expected);

  Tensor unwaited = device_tensor(std::vector<float>(gathered.size(), NAN), GetParam());
  c.all_gather_start(device_tensor(mine, GetParam()), unwaited).reset();  // destroyed unwaited
  EXPECT_EQ(values_of(unwaited), gathered);

  // Empty tensors queue nothing and complete.
  Tensor none = Tensor::empty({0}, GetParam(), gpu().device);
  c.all_gather_start(none, Tensor::empty({0}, GetParam(), gpu().device))->wait();
  c.all_to_all(none, Tensor::empty({0}, GetParam(), gpu().device));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, NcclCollectives, ::testing::Values(DType::f32, DType::bf16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Nccl, BackendAndRanks) {
  comm::Communicator& c = nccl_world();
  EXPECT_EQ(c.backend(), "nccl");
  EXPECT_EQ(c.rank(), world().rank());
  EXPECT_EQ(c.size(), world().size());
  EXPECT_EQ(c.world_ranks(), world().world_ranks());
}

TEST(Nccl, LargeF32AllReduceIsCloseToTheExactSumAndIdenticalOnEveryRank) {
  comm::Communicator& c = nccl_world();
  constexpr std::int64_t kN = 1 << 20;
  // Every rank can build every rank's data from the seed.
  std::vector<double> exact(kN, 0.0);
  Tensor mine;
  for (int i = 0; i < c.size(); ++i) {
    Rng rng(100 + static_cast<std::uint64_t>(i));
    Tensor t = testing::random_tensor({kN}, rng);
    for (std::int64_t k = 0; k < kN; ++k) exact[k] += t.data<float>()[k];
    if (i == c.rank()) mine = t;
  }
  Tensor data = mine.to(gpu().device);
  c.all_reduce(data, comm::ReduceOp::sum);
  const Tensor got = data.to(Device::cpu());
  EXPECT_LT(testing::relative_error(testing::as_doubles(got), exact), 1e-6);
  // Bit-identical on every rank: compare with rank 0's result.
  Tensor from_root = got.clone();
  world().broadcast(from_root, 0);
  EXPECT_EQ(std::memcmp(from_root.raw(), got.raw(), got.nbytes()), 0);
}

TEST(Nccl, IntegerDtypes) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  Tensor i32 = Tensor::from_ints({r, 1, -r}, {3}).to(gpu().device);
  c.all_reduce(i32, comm::ReduceOp::sum);
  const Tensor i32_host = i32.to(Device::cpu());
  EXPECT_EQ(i32_host.data<std::int32_t>()[0], P * (P - 1) / 2);
  EXPECT_EQ(i32_host.data<std::int32_t>()[1], P);
  EXPECT_EQ(i32_host.data<std::int32_t>()[2], -P * (P - 1) / 2);
  Tensor i64 = Tensor::empty({2}, DType::i64);
  i64.data<std::int64_t>()[0] = (std::int64_t{1} << 40) + r;
  i64.data<std::int64_t>()[1] = r;
  Tensor i64_device = i64.to(gpu().device);
  c.all_reduce(i64_device, comm::ReduceOp::max);
  const Tensor i64_host = i64_device.to(Device::cpu());
  EXPECT_EQ(i64_host.data<std::int64_t>()[0], (std::int64_t{1} << 40) + P - 1);
  EXPECT_EQ(i64_host.data<std::int64_t>()[1], P - 1);
}

TEST(Nccl, HostTensorsGoThroughMpi) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  Tensor count = Tensor::empty({1}, DType::i64);
  count.data<std::int64_t>()[0] = r + 1;
  c.all_reduce(count, comm::ReduceOp::sum);
  EXPECT_EQ(count.data<std::int64_t>()[0], P * (P + 1) / 2);
  Tensor values = Tensor::from_floats({static_cast<float>(r), 0.5f}, {2});
  c.all_reduce(values, comm::ReduceOp::max);
  EXPECT_EQ(values.to_floats(), (std::vector<float>{static_cast<float>(P - 1), 0.5f}));
  Tensor gathered = Tensor::empty({P}, DType::i32);
  c.all_gather(Tensor::from_ints({r * 3}, {1}), gathered);
  for (int i = 0; i < P; ++i) EXPECT_EQ(gathered.data<std::int32_t>()[i], i * 3);
  c.barrier();
  // A host tensor and a device tensor in one collective: refused (on every rank alike).
  Tensor device = Tensor::zeros({P}, DType::i32, gpu().device);
  EXPECT_THROW(c.all_gather(Tensor::from_ints({r}, {1}), device), Error);
}

TEST(Nccl, SendRecvBetweenPairs) {
  comm::Communicator& c = nccl_world();
  if (c.size() < 2) GTEST_SKIP() << "needs 2 ranks";
  const int r = c.rank();
  const int peer = r ^ 1;
  if (peer >= c.size()) return;
  Tensor mine = device_tensor({static_cast<float>(r), 2.0f, 3.0f}, DType::bf16);
  Tensor theirs = device_tensor({NAN, NAN, NAN}, DType::bf16);
  if (r % 2 == 0) {
    c.send(mine, peer, 0);
    c.recv(theirs, peer, 0);
  } else {
    c.recv(theirs, peer, 0);
    c.send(mine, peer, 0);
  }
  EXPECT_EQ(values_of(theirs), (std::vector<float>{static_cast<float>(peer), 2.0f, 3.0f}));
}

TEST(Nccl, SplitMakesNcclSubGroupsOrderedByKey) {
  comm::Communicator& c = nccl_world();
  const int P = c.size(), r = c.rank();
  // Parity groups, ordered by descending world rank.
  auto parity = c.split(r % 2, -r);
  EXPECT_EQ(parity->backend(), "nccl");
  std::vector<int> members;
  for (int i = P - 1; i >= 0; --i)
    if (i % 2 == r % 2) members.push_back(i);
  EXPECT_EQ(parity->world_ranks(), members);
  EXPECT_EQ(parity->size(), static_cast<int>(members.size()));
  Tensor gathered = device_tensor(std::vector<float>(members.size(), NAN), DType::f32);
  parity->all_gather(device_tensor({static_cast<float>(r)}, DType::f32), gathered);
  EXPECT_EQ(values_of(gathered), std::vector<float>(members.begin(), members.end()));
  // Contiguous halves (like SP groups), then a split of the split.
  const int half = P >= 2 ? P / 2 : 1;
  auto block = c.split(r / half, r % half);
  EXPECT_EQ(block->size(), half);
  EXPECT_EQ(block->rank(), r % half);
  Tensor sum = device_tensor({1.0f, static_cast<float>(r)}, DType::bf16);
  block->all_reduce(sum, comm::ReduceOp::sum);
  const int first = (r / half) * half;
  float rank_sum = 0;
  for (int i = first; i < first + half; ++i) rank_sum += static_cast<float>(i);
  EXPECT_EQ(values_of(sum), (std::vector<float>{static_cast<float>(half), rank_sum}));
  auto single = block->split(block->rank(), 0);
  EXPECT_EQ(single->size(), 1);
  Tensor one = device_tensor({5.0f}, DType::f32);
  single->all_reduce(one, comm::ReduceOp::sum);
  EXPECT_EQ(values_of(one), std::vector<float>{5.0f});
  // Host tensors of a split still go through its MPI split.
  Tensor host = Tensor::from_ints({1}, {1});
  block->all_reduce(host, comm::ReduceOp::sum);
  EXPECT_EQ(host.data<std::int32_t>()[0], half);
}

TEST(Nccl, ManyCollectivesInFlightStayOrderedWithCompute) {
  // Collectives queued back to back, each reading the previous one's output, with no host sync
  // in between: the stream ordering (compute -> comm -> compute) must keep them consistent.
  comm::Communicator& c = nccl_world();
  const int P = c.size();
  Tensor data = device_tensor(std::vector<float>(1000, 1.0f), DType::f32);
  for (int i = 0; i < 10; ++i) c.all_reduce(data, comm::ReduceOp::sum);
  const float expected = std::pow(static_cast<float>(P), 10.0f);
  for (const float v : values_of(data)) ASSERT_EQ(v, expected);
}

TEST(Nccl, TimeoutSetting) { EXPECT_GT(comm::nccl_timeout_seconds(), 0.0); }

// A collective that one rank never joins must stop the whole job after ULYSSES_NCCL_TIMEOUT_S
// with a message naming the collective and the rank. Run on its own (it ends the job):
//   ULYSSES_TEST_NCCL_HANG=1 ULYSSES_NCCL_TIMEOUT_S=5 mpirun -np 2 -x ULYSSES_TEST_NCCL_HANG
//     -x ULYSSES_NCCL_TIMEOUT_S cuda_dist_comm_test --gtest_filter=NcclFailure.*
// expected: exit status != 0 within seconds, stderr "... did not complete within 5 ...".
TEST(NcclFailure, MissingRankStopsTheJobAfterTheTimeout) {
  if (std::getenv("ULYSSES_TEST_NCCL_HANG") == nullptr)
    GTEST_SKIP() << "set ULYSSES_TEST_NCCL_HANG=1 to run (it stops the job on purpose)";
  comm::Communicator& c = nccl_world();
  if (c.size() < 2) GTEST_SKIP() << "needs 2 ranks";
  if (c.rank() != 0) {
    Tensor data = device_tensor(std::vector<float>(16, 1.0f), DType::f32);
    c.all_reduce(data, comm::ReduceOp::sum);  // rank 0 never joins
  }
  std::this_thread::sleep_for(
      std::chrono::seconds(static_cast<int>(comm::nccl_timeout_seconds()) + 60));
  FAIL() << "the watchdog should have stopped the job";
}

// A collective that cannot complete on a single GPU (the compute stream it waits for is held by
// a host callback) must stop the rank after ULYSSES_NCCL_TIMEOUT_S with a message naming the
// collective, while this rank's main thread keeps making MPI calls: the watchdog thread stops
// the process without calling MPI (MPI runs at MPI_THREAD_FUNNELED). One rank is enough:
//   ULYSSES_TEST_NCCL_STALL=1 ULYSSES_NCCL_TIMEOUT_S=5 mpirun -np 1 -x ULYSSES_TEST_NCCL_STALL
//     -x ULYSSES_NCCL_TIMEOUT_S cuda_dist_comm_test --gtest_filter=NcclWatchdog.*
// expected: exit status 1 within seconds, stderr "... all_reduce ... did not complete within 5 s".
#ifdef ULYSSES_HAS_CUDA
void hold_stream(void* seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(*static_cast<int*>(seconds)));
}
#endif

TEST(NcclWatchdog, StalledCollectiveStopsTheRankWithoutMpi) {
  if (std::getenv("ULYSSES_TEST_NCCL_STALL") == nullptr)
    GTEST_SKIP() << "set ULYSSES_TEST_NCCL_STALL=1 to run (it stops the job on purpose)";
#ifndef ULYSSES_HAS_CUDA
  GTEST_SKIP() << "needs a CUDA build";
#else
  comm::Communicator& c = nccl_world();
  static int hold_seconds = static_cast<int>(comm::nccl_timeout_seconds()) + 60;
  // The tensor first: its host-to-device copy would wait for the held compute stream.
  Tensor data = device_tensor(std::vector<float>(16, 1.0f), DType::f32);
  UL_CUDA_CHECK(cudaLaunchHostFunc(cuda_resources(gpu()).stream, hold_stream, &hold_seconds));
  c.all_reduce(data, comm::ReduceOp::sum);  // queued behind the held compute stream
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(hold_seconds);
  while (std::chrono::steady_clock::now() < end) {  // MPI calls on this thread meanwhile
    Tensor flag = Tensor::from_ints({1}, {1});
    world().all_reduce(flag, comm::ReduceOp::sum);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  FAIL() << "the watchdog should have stopped the rank";
#endif
}

}  // namespace
}  // namespace ulysses
