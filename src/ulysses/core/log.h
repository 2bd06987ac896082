// Logging to stderr with a level and (once set) the process rank.
// Thread-safe: each message is written with one call.
#pragma once

#include <string>

#include "ulysses/core/error.h"

namespace ulysses {

enum class LogLevel { debug, info, warn, error };

// Messages below the level are dropped (default info; ULYSSES_LOG=debug|info|warn|error).
void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const std::string& message);

template <typename... Args>
void log_info(const Args&... args) {
  if (log_level() <= LogLevel::info) log_message(LogLevel::info, detail::concat(args...));
}
template <typename... Args>
void log_warn(const Args&... args) {
  if (log_level() <= LogLevel::warn) log_message(LogLevel::warn, detail::concat(args...));
}
template <typename... Args>
void log_debug(const Args&... args) {
  if (log_level() <= LogLevel::debug) log_message(LogLevel::debug, detail::concat(args...));
}

}  // namespace ulysses
