// Ownership of an output directory: one run at a time, and no silent reuse of an earlier run's
// folder.
//
// - Lock: rank 0 holds an advisory flock(2) on <output_dir>/.lock for as long as the returned
//   OutputDirLock lives (the whole run). The lock file holds "pid=<pid> host=<host>
//   started=<UTC time>" of the holder. A second run on the same folder is refused on every rank
//   with a message naming that holder. The lock is released by the kernel when the process
//   ends (even by kill -9), so a crashed run never leaves the folder locked. flock works on
//   local file systems and on NFSv4 / Lustre mounted with flock support; elsewhere it may lock
//   per host only.
// - Used folder: a folder that already holds checkpoint-<N> folders or a model
//   (model.safetensors, model.safetensors.index.json) is refused unless the run resumes
//   (--resume-from-checkpoint) or says --overwrite-output-dir. Overwriting deletes nothing: the
//   new run gets its own run id (see TrainingState::run_id), and checkpoint rotation removes
//   only the checkpoints of its own run.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "ulysses/comm/communicator.h"

namespace ulysses::train {

inline constexpr const char* kLockFileName = ".lock";

// Holds the flock of rank 0 (other ranks hold nothing). Releases it on destruction.
class OutputDirLock {
 public:
  explicit OutputDirLock(int fd) : fd_(fd) {}
  ~OutputDirLock();
  OutputDirLock(const OutputDirLock&) = delete;
  OutputDirLock& operator=(const OutputDirLock&) = delete;

 private:
  int fd_ = -1;  // -1 on ranks other than 0
};

struct OutputDirClaim {
  bool resuming = false;   // --resume-from-checkpoint was given
  bool overwrite = false;  // --overwrite-output-dir
};

// Collective over world (rank 0 works on the file system; every rank agrees on the outcome and
// throws the same Error on failure, naming output_dir, the holder of the lock or what makes the
// folder used, and the options that fix it). Creates output_dir when missing.
std::unique_ptr<OutputDirLock> claim_output_dir(comm::Communicator& world,
                                                const std::filesystem::path& output_dir,
                                                const OutputDirClaim& claim);

// A random run identity (16 hex digits from std::random_device), made on rank 0 and broadcast:
// the same on every rank. Collective.
std::string make_run_id(comm::Communicator& world);

}  // namespace ulysses::train
