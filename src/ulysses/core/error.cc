#include "ulysses/core/error.h"

namespace ulysses::detail {

void fail_check(const char* file, int line, const char* condition, const std::string& message) {
  std::string where = file;
  if (const auto pos = where.rfind("src/"); pos != std::string::npos) where = where.substr(pos);
  throw Error(concat(message, " [check `", condition, "` failed at ", where, ":", line, "]"));
}

}  // namespace ulysses::detail
