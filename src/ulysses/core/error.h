// Error type and check macros.
//
// Every failure in ulysses is reported by throwing ulysses::Error. Messages are written for the
// person running the program: they name the option, file or tensor at fault and, where possible,
// how to fix it. The CLI catches Error, prints "error: <message>" and exits non-zero.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ulysses {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
[[noreturn]] void fail_check(const char* file, int line, const char* condition,
                             const std::string& message);
}  // namespace detail

}  // namespace ulysses

// UL_CHECK(cond, parts...): throws Error("parts... [check `cond` failed at file:line]") when
// cond is false. Use it for argument and invariant checks.
#define UL_CHECK(cond, ...)                                                                   \
  do {                                                                                        \
    if (!(cond))                                                                              \
      ::ulysses::detail::fail_check(__FILE__, __LINE__, #cond,                                \
                                    ::ulysses::detail::concat(__VA_ARGS__));                  \
  } while (0)

// UL_FAIL(parts...): throws Error with the concatenated message (a user-facing failure: no
// source location).
#define UL_FAIL(...) throw ::ulysses::Error(::ulysses::detail::concat(__VA_ARGS__))
