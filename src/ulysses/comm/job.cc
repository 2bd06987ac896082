// Job-level helpers: how the process was launched, and stopping every rank at once.
// The C API only: without this, Open MPI's mpi.h also pulls in its deprecated C++ bindings,
// which need libmpi_cxx at link time.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "ulysses/comm/communicator.h"
#include "ulysses/comm/nccl_communicator.h"
#include "ulysses/core/error.h"
#include "ulysses/core/process_env.h"

namespace ulysses::comm {

bool launched_with_several_ranks() { return process_env::launcher().world_size > 1; }

double collective_timeout_seconds() { return process_env::collective_timeout_seconds(); }

void abort_job(int exit_code) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(stdout);
  std::fflush(stderr);
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

#ifndef ULYSSES_HAS_CUDA
// Builds without CUDA have no NCCL backend (nccl_communicator.cc is not compiled).
std::unique_ptr<Communicator> make_nccl_world(Communicator&, const Context&) {
  UL_FAIL("make_nccl_world: this build has no CUDA/NCCL support; configure with -DULYSSES_CUDA=on");
}
double nccl_timeout_seconds() { return collective_timeout_seconds(); }
void set_wait_timing(bool) {}
std::map<std::string, double> take_wait_seconds() { return {}; }
#endif

}  // namespace ulysses::comm
