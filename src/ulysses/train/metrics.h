// Training metrics: the live progress line (rank 0) and metrics.jsonl in the output dir.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace ulysses::train {

struct StepMetrics {
  std::int64_t step = 0;
  std::int64_t max_steps = 0;
  double loss = 0.0;
  double learning_rate = 0.0;
  double grad_norm = 0.0;
  std::int64_t tokens = 0;          // tokens processed this step (padding included), all ranks
  std::int64_t padding_tokens = 0;  // of which padding
  std::int64_t valid_labels = 0;    // N, the loss denominator
  double seconds = 0.0;
  double tokens_per_s = 0.0;
  double tflops_per_device = 0.0;
  std::int64_t peak_mem_bytes = 0;
  bool skipped = false;  // no valid label anywhere: no update
};

std::string progress_line(const StepMetrics& m);
std::string metrics_json(const StepMetrics& m);

// Peak resident memory of this process (VmHWM), bytes; 0 when unknown.
std::int64_t host_peak_memory_bytes();
// MemAvailable of /proc/meminfo in bytes (0 when unknown).
std::int64_t host_available_memory_bytes();

class MetricsWriter {
 public:
  // Opens dir/metrics.jsonl (truncated, or appended to when resuming); an empty dir disables it.
  explicit MetricsWriter(const std::filesystem::path& dir, bool append = false);
  void write(const StepMetrics& m);

 private:
  std::ofstream out_;
};

}  // namespace ulysses::train
