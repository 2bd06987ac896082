// Training metrics: the live progress line (rank 0) and metrics.jsonl in the output dir.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace ulysses::train {

struct EvalMetrics;  // train/evaluator.h

struct StepMetrics {
  std::int64_t step = 0;
  std::int64_t max_steps = 0;
  double epoch = -1.0;  // epochs of the data consumed after this step (< 0: endless source)
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
  // Filled by RunProgress (train/run_report.h) when the step runs in Trainer::run.
  double elapsed_seconds = 0.0;        // since the run (this invocation) started
  double eta_seconds = -1.0;           // to the last step (< 0: unknown)
  double smoothed_tokens_per_s = 0.0;  // 0: unknown (the line shows tokens_per_s)
  bool skipped = false;                // no valid label anywhere: no update
};

std::string progress_line(const StepMetrics& m);
// One metrics.jsonl line, with Hugging Face's key names (learning_rate, epoch, eval_loss, as in
// TrainerState.log_history) and a UTC timestamp.
std::string metrics_json(const StepMetrics& m);
std::string metrics_json(const EvalMetrics& m, double epoch = -1.0);

// Peak resident memory of this process (VmHWM), bytes; 0 when unknown.
std::int64_t host_peak_memory_bytes();
// MemAvailable of /proc/meminfo in bytes (0 when unknown).
std::int64_t host_available_memory_bytes();

// Drops the lines of dir/metrics.jsonl whose "step" is after `step` (a resume from a checkpoint
// at `step` writes them again), rewriting the file through a temporary name. Lines that are not
// JSON objects with an integer "step" are kept. No file: nothing to do.
void truncate_metrics_after(const std::filesystem::path& dir, std::int64_t step);

class MetricsWriter {
 public:
  // Opens dir/metrics.jsonl: truncated for a fresh run (resume_step 0), or cut back to the lines
  // up to resume_step (truncate_metrics_after) and appended to when resuming; an empty dir
  // disables it.
  explicit MetricsWriter(const std::filesystem::path& dir, std::int64_t resume_step = 0);
  void write(const StepMetrics& m);
  void write(const EvalMetrics& m, double epoch = -1.0);

 private:
  std::ofstream out_;
};

}  // namespace ulysses::train
