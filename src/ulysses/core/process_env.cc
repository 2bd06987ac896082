#include "ulysses/core/process_env.h"

#include <cmath>
#include <cstdlib>
#include <initializer_list>

#include "ulysses/core/error.h"

namespace ulysses::process_env {

namespace {
// The first of `names` that holds a non-negative integer, else -1.
int first_integer(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    const char* text = std::getenv(name);
    if (text == nullptr || *text == '\0') continue;
    char* end = nullptr;
    const long parsed = std::strtol(text, &end, 10);
    if (end != text && *end == '\0' && parsed >= 0) return static_cast<int>(parsed);
  }
  return -1;
}
}  // namespace

std::string value(const char* name) {
  const char* text = std::getenv(name);
  return text ? text : "";
}

std::string cudnn_library() {
  const std::string path = value(kCudnnLibrary);
  return path.empty() ? "libcudnn.so.9" : path;
}

double collective_timeout_seconds() {
  const std::string text = value(kCollectiveTimeout);
  if (text.empty()) return 600.0;
  char* end = nullptr;
  const double seconds = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(seconds > 0) || !std::isfinite(seconds))
    UL_FAIL(kCollectiveTimeout, "='", text,
            "' must be a positive number of seconds (the timeout of every collective)");
  return seconds;
}

Launcher launcher() {
  Launcher l;
  // Several launchers may be stacked (srun starting Open MPI): the first that answers wins,
  // and for the size the largest answer counts (a junk value is skipped).
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"}) {
    const int size = first_integer({name});
    if (size > l.world_size) l.world_size = size;
  }
  l.rank = first_integer({"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"});
  l.local_rank = first_integer({"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"});
  l.local_size = first_integer({"OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE"});
  return l;
}

}  // namespace ulysses::process_env
