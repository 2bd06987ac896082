// Learning-rate schedules with linear warmup, as Transformers' get_scheduler: the rate used
// for optimizer step s (0-based) is learning_rate * factor(s).
//   linear:               warmup, then linear decay to 0 at max_steps
//   cosine:               warmup, then half a cosine to 0 at max_steps
//   constant:             learning_rate throughout (warmup ignored, as in Transformers)
//   constant_with_warmup: warmup, then constant
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ulysses::train {

// Parsed from --lr-scheduler-type once (parse_schedule_type): no name compares per step.
enum class ScheduleType { linear, cosine, constant, constant_with_warmup };

struct ScheduleConfig {
  ScheduleType type = ScheduleType::linear;
  double learning_rate = 5e-5;
  std::int64_t warmup_steps = 0;
  std::int64_t max_steps = 1;
};

// The names of --lr-scheduler-type, in ScheduleType order.
const std::vector<std::string>& schedule_types();
// The type named by --lr-scheduler-type; Error naming the flag and the choices otherwise.
ScheduleType parse_schedule_type(const std::string& name);
// Throws Error for a negative warmup or learning rate (naming the flag).
void validate_schedule(const ScheduleConfig& config);
double learning_rate_at(const ScheduleConfig& config, std::int64_t step);

}  // namespace ulysses::train
