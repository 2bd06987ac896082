// The process environment: the one module that reads environment variables. Only
// process-level settings live there (nothing that changes what a training step computes):
// the log level, the collective timeout, the cuDNN library to load, and what the launcher
// (mpirun, srun, torchrun-style) says about this process's place in the job. Options that
// change what runs are flags and config keys.
#pragma once

#include <string>

namespace ulysses::process_env {

inline constexpr const char* kLogLevel = "ULYSSES_LOG";  // debug | info | warn | error
inline constexpr const char* kCudnnLibrary = "ULYSSES_CUDNN_LIBRARY";  // path to libcudnn
// Seconds any collective may take before the job is stopped (NCCL and MPI backends).
inline constexpr const char* kCollectiveTimeout = "ULYSSES_NCCL_TIMEOUT_S";

// The value of `name`, or "" when unset.
std::string value(const char* name);

// ULYSSES_LOG ("" when unset).
inline std::string log_level() { return value(kLogLevel); }
// ULYSSES_CUDNN_LIBRARY, or "libcudnn.so.9".
std::string cudnn_library();
// ULYSSES_NCCL_TIMEOUT_S, default 600; Error naming the variable when it is not a positive,
// finite number.
double collective_timeout_seconds();

// What the launcher tells this process before MPI starts (Open MPI, PMI-based launchers,
// Slurm, and LOCAL_RANK/LOCAL_WORLD_SIZE): -1 where it says nothing (or nothing parsable).
struct Launcher {
  int world_size = -1, rank = -1, local_rank = -1, local_size = -1;
};
Launcher launcher();

}  // namespace ulysses::process_env
