// The self communicator (a group of one, no MPI) and the job helpers that need no MPI.
#include <gtest/gtest.h>

// The C API only: without this, Open MPI's mpi.h also pulls in its deprecated C++ bindings,
// which need libmpi_cxx at link time.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include "test_util.h"
#include "ulysses/comm/communicator.h"

namespace ulysses {
namespace {

using comm::ReduceOp;

std::vector<float> values(const Tensor& t) { return t.to_floats(); }

TEST(SelfComm, Basics) {
  auto self = comm::make_self_communicator();
  EXPECT_EQ(self->rank(), 0);
  EXPECT_EQ(self->size(), 1);
  EXPECT_EQ(self->backend(), "self");
  EXPECT_EQ(self->world_ranks(), std::vector<int>{0});
  self->barrier();
  auto part = self->split(3, 5);
  EXPECT_EQ(part->size(), 1);
  EXPECT_EQ(part->backend(), "self");
  EXPECT_THROW(self->split(-1, 0), Error);
}

TEST(SelfComm, CollectivesCopySendToRecv) {
  auto self = comm::make_self_communicator();
  const Tensor send = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3});
  const std::vector<float> expected = {1, 2, 3, 4, 5, 6};

  Tensor recv = Tensor::full({6}, std::nanf(""));
  self->all_to_all(send, recv);
  EXPECT_EQ(values(recv), expected);

  recv = Tensor::full({6}, std::nanf(""));
  self->all_gather(send, recv);
  EXPECT_EQ(values(recv), expected);

  recv = Tensor::full({6}, std::nanf(""));
  self->reduce_scatter(send, recv, ReduceOp::sum);
  EXPECT_EQ(values(recv), expected);

  Tensor ints = Tensor::from_ints({7, -8}, {2});
  Tensor ints_out = Tensor::from_ints({0, 0}, {2});
  self->all_gather(ints, ints_out);
  EXPECT_EQ(ints_out.data<std::int32_t>()[0], 7);
  EXPECT_EQ(ints_out.data<std::int32_t>()[1], -8);

  // In place: unchanged.
  Tensor data = send.clone();
  self->all_reduce(data, ReduceOp::sum);
  self->all_reduce(data, ReduceOp::max);
  self->broadcast(data, 0);
  EXPECT_EQ(values(data), expected);

  // Nothing here started MPI.
  int initialized = 1;
  MPI_Initialized(&initialized);
  EXPECT_EQ(initialized, 0);
}

TEST(SelfComm, EmptyTensors) {
  auto self = comm::make_self_communicator();
  Tensor empty = Tensor::empty({0}, DType::bf16);
  Tensor out = Tensor::empty({0}, DType::bf16);
  self->all_to_all(empty, out);
}

TEST(SelfComm, MismatchesThrow) {
  auto self = comm::make_self_communicator();
  auto f32 = [](std::int64_t n) { return Tensor::zeros({n}, DType::f32); };
  testing::expect_error([&] { self->all_to_all(f32(4), f32(5)); }, "all_to_all");
  testing::expect_error([&] { self->all_to_all(f32(4), Tensor::zeros({4}, DType::bf16)); },
                        "all_to_all");
  testing::expect_error([&] { self->all_gather(f32(4), f32(8)); }, "all_gather");
  testing::expect_error([&] { self->reduce_scatter(f32(4), f32(2), ReduceOp::sum); },
                        "reduce_scatter");
  testing::expect_error([&] { self->broadcast(f32(1), 1); }, "broadcast");
  testing::expect_error([&] { self->send(f32(1), 0, 0); }, "send");
  testing::expect_error([&] { self->recv(f32(1), 0, 0); }, "recv");
  Tensor t = f32(4);
  testing::expect_error([&] { self->all_to_all(t, t); }, "overlap");
}

// Sets an environment variable for the scope, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Job, LaunchedWithSeveralRanksReadsLauncherEnvironment) {
  ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", nullptr);
  ScopedEnv pmi("PMI_SIZE", nullptr);
  ScopedEnv slurm("SLURM_NTASKS", nullptr);
  EXPECT_FALSE(comm::launched_with_several_ranks());
  {
    ScopedEnv one("OMPI_COMM_WORLD_SIZE", "1");
    EXPECT_FALSE(comm::launched_with_several_ranks());
  }
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}) {
    ScopedEnv four(name, "4");
    EXPECT_TRUE(comm::launched_with_several_ranks()) << name;
  }
  ScopedEnv junk("PMI_SIZE", "many");
  EXPECT_FALSE(comm::launched_with_several_ranks());
}

TEST(JobDeathTest, AbortJobWithoutMpiExitsWithTheCode) {
  EXPECT_EXIT(comm::abort_job(3), ::testing::ExitedWithCode(3), "");
}

}  // namespace
}  // namespace ulysses
