#include "ulysses/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "ulysses/core/error.h"

namespace ulysses::train {

const std::vector<std::string>& schedule_types() {
  static const std::vector<std::string> types = {"linear", "cosine", "constant",
                                                 "constant_with_warmup"};
  return types;
}

ScheduleType parse_schedule_type(const std::string& name) {
  const auto& types = schedule_types();
  const auto found = std::find(types.begin(), types.end(), name);
  if (found == types.end())
    UL_FAIL("--lr-scheduler-type '", name,
            "' is not supported (choose linear, cosine, constant or constant_with_warmup)");
  return static_cast<ScheduleType>(found - types.begin());
}

void validate_schedule(const ScheduleConfig& c) {
  if (c.warmup_steps < 0) UL_FAIL("--warmup-steps must be >= 0 (got ", c.warmup_steps, ")");
  if (c.learning_rate < 0) UL_FAIL("--learning-rate must be >= 0 (got ", c.learning_rate, ")");
}

double learning_rate_at(const ScheduleConfig& c, std::int64_t step) {
  const double lr = c.learning_rate;
  if (c.type == ScheduleType::constant) return lr;
  if (step < c.warmup_steps)
    return lr * static_cast<double>(step) /
           static_cast<double>(std::max<std::int64_t>(1, c.warmup_steps));
  if (c.type == ScheduleType::constant_with_warmup) return lr;
  const double progress =
      static_cast<double>(step - c.warmup_steps) /
      static_cast<double>(std::max<std::int64_t>(1, c.max_steps - c.warmup_steps));
  if (c.type == ScheduleType::linear) return lr * std::max(0.0, 1.0 - progress);
  return lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));  // cosine
}

}  // namespace ulysses::train
