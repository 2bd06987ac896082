// Shared by tests under mpirun (tests/dist/).
#pragma once

#include "ulysses/comm/communicator.h"

namespace ulysses::testing {
// MPI_COMM_WORLD of this test process.
comm::Communicator& world();
}  // namespace ulysses::testing
