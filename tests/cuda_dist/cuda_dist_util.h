// Shared by the multi-GPU tests under mpirun (tests/cuda_dist/): one rank per GPU.
#pragma once

#include "ulysses/comm/communicator.h"
#include "ulysses/core/context.h"

namespace ulysses::testing {
// MPI_COMM_WORLD of this test process.
comm::Communicator& world();
// This rank's CUDA context (the GPU of its local rank).
const Context& gpu();
// The NCCL world over world() on gpu() (created on first use; collective, so every rank must
// call it at the same point the first time).
comm::Communicator& nccl_world();
}  // namespace ulysses::testing
