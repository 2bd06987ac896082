#include "ulysses/core/log.h"

#include "ulysses/core/process_env.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ulysses {

namespace {
LogLevel initial_level() {
  const std::string env = process_env::log_level();
  if (env == "debug") return LogLevel::debug;
  if (env == "warn") return LogLevel::warn;
  if (env == "error") return LogLevel::error;
  return LogLevel::info;
}
std::atomic<LogLevel> g_level{initial_level()};  // process-wide verbosity only
}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }

void log_message(LogLevel level, const std::string& message) {
  const char* tag = level == LogLevel::warn ? "warning: " : level == LogLevel::error ? "error: " : "";
  const std::string line = std::string(tag) + message + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace ulysses
