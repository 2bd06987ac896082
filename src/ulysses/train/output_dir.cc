#include "ulysses/train/output_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

#include "ulysses/comm/agree.h"
#include "ulysses/core/error.h"
#include "ulysses/core/format.h"

namespace ulysses::train {
namespace {

namespace fs = std::filesystem;

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "unknown-host";
  return buffer;
}

// What the lock file says about its holder (at most one short line).
std::string read_holder(int fd) {
  char buffer[512] = {};
  const ssize_t got = ::pread(fd, buffer, sizeof buffer - 1, 0);
  std::string text = got > 0 ? std::string(buffer, static_cast<std::size_t>(got)) : "";
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  if (const auto newline = text.find('\n'); newline != std::string::npos) text.resize(newline);
  return text.empty() ? "an unknown process (the lock file is empty)" : text;
}

void write_holder(int fd, const fs::path& lock_path) {
  const std::string text =
      "pid=" + std::to_string(::getpid()) + " host=" + host_name() + " started=" + format_utc_now() + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
    UL_FAIL(lock_path.string(), ": cannot write the lock file: ", std::strerror(errno));
}

// Why output_dir counts as used (an earlier run's checkpoint or model), or "" when it does not.
std::string used_by_earlier_run(const fs::path& output_dir) {
  std::error_code ec;
  for (const char* model_file : {"model.safetensors", "model.safetensors.index.json"})
    if (fs::exists(output_dir / model_file, ec)) return std::string("it holds ") + model_file;
  for (const auto& entry : fs::directory_iterator(output_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("checkpoint-", 0) == 0) return "it holds " + name;
  }
  return "";
}

}  // namespace

OutputDirLock::~OutputDirLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the flock
}

std::unique_ptr<OutputDirLock> claim_output_dir(comm::Communicator& world,
                                                const fs::path& output_dir,
                                                const OutputDirClaim& claim) {
  int fd = -1;
  comm::run_agreed(world, [&] {
    if (world.rank() != 0) return;
    std::error_code ec;
    fs::create_directories(output_dir, ec);
    if (ec) UL_FAIL("--output-dir ", output_dir.string(), ": cannot create folder: ", ec.message());
    const fs::path lock_path = output_dir / kLockFileName;
    fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      UL_FAIL("--output-dir ", output_dir.string(), ": cannot open the lock file ",
              lock_path.string(), ": ", std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int why = errno;
      const std::string holder = read_holder(fd);
      ::close(fd);
      fd = -1;
      if (why == EWOULDBLOCK)
        UL_FAIL("--output-dir ", output_dir.string(), " is in use by another run (", holder,
                "; lock file ", lock_path.string(),
                "): wait for that run to finish, stop it, or choose another --output-dir");
      UL_FAIL("--output-dir ", output_dir.string(), ": cannot lock ", lock_path.string(), ": ",
              std::strerror(why));
    }
    try {
      write_holder(fd, lock_path);
      if (!claim.resuming && !claim.overwrite) {
        const std::string used = used_by_earlier_run(output_dir);
        if (!used.empty())
          UL_FAIL("--output-dir ", output_dir.string(), " was used by an earlier run (", used,
                  "): pass --resume-from-checkpoint latest to continue that run, "
                  "--overwrite-output-dir to start a new run there (nothing is deleted; only "
                  "the new run's checkpoints are rotated), or choose another --output-dir");
      }
    } catch (...) {
      ::close(fd);
      fd = -1;
      throw;
    }
  });
  return std::make_unique<OutputDirLock>(fd);
}

std::string make_run_id(comm::Communicator& world) {
  std::string id;
  if (world.rank() == 0) {
    std::random_device device;
    const std::uint64_t value = (static_cast<std::uint64_t>(device()) << 32) ^ device();
    char buffer[17];
    std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(value));
    id = buffer;
  }
  comm::broadcast_string(world, 0, id);
  return id;
}

}  // namespace ulysses::train
