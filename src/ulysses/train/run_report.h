// Run reports: the timing of a run as it goes (elapsed time, ETA, smoothed tokens/s for the
// progress line) and its end-of-run summary (printed, and written as train_results.json as
// Hugging Face's run scripts do).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ulysses/train/evaluator.h"
#include "ulysses/train/metrics.h"

namespace ulysses::train {

// Not thread-safe; one per run, on every rank (only rank 0 prints what it says).
class RunProgress {
 public:
  // Steps first_step..max_steps are to run (first_step > 1 after a resume). The clock starts now.
  RunProgress(std::int64_t first_step, std::int64_t max_steps);

  // Adds a finished step and fills its elapsed_seconds, eta_seconds and smoothed_tokens_per_s.
  // Tokens/s are smoothed as (exponential moving average of tokens per step) / (the same of
  // seconds per step), weight kSmoothing per new step, bias-corrected so the first steps are not
  // pulled towards zero; the ETA is the remaining steps times the smoothed step time.
  void add(StepMetrics& m);

  // Seconds since construction.
  double elapsed_seconds() const;
  std::int64_t steps() const { return steps_; }
  std::int64_t tokens() const { return tokens_; }
  const StepMetrics& last() const { return last_; }  // the last step added (step 0 before)
  // Mean loss of the steps added that had one (NaN: none), Hugging Face's train_loss.
  double mean_loss() const;
  std::int64_t peak_mem_bytes() const { return peak_mem_bytes_; }

  static constexpr double kSmoothing = 0.1;

 private:
  std::chrono::steady_clock::time_point start_;
  std::int64_t max_steps_;
  std::int64_t steps_ = 0, tokens_ = 0, peak_mem_bytes_ = 0;
  double loss_sum_ = 0;
  std::int64_t losses_ = 0;
  double average_tokens_ = 0, average_seconds_ = 0, weight_ = 0;  // EMAs before bias correction
  StepMetrics last_;
};

struct RunSummary {
  std::int64_t steps = 0;      // steps run by this invocation (after a resume: since it)
  std::int64_t last_step = 0;  // the final step's index
  double seconds = 0;          // train_runtime: wall time of the loop, evaluations included
  std::int64_t tokens = 0;     // tokens processed (padding included), all ranks
  double tokens_per_s = 0;     // tokens / seconds
  double train_loss = 0;       // mean loss of the steps run (NaN: none)
  double final_loss = 0;       // loss of the last step (NaN: none, or skipped)
  double eval_loss = 0;        // last evaluation (NaN: none)
  double eval_perplexity = 0;
  std::int64_t peak_mem_bytes = 0;  // largest of every rank's peak
};

// The summary of `progress` (after the loop) with the run's evaluations.
RunSummary summarize(const RunProgress& progress, const std::vector<EvalMetrics>& evals);
// Lines for the log: "done: 100 steps in 1m23s | 1.2M tokens, 14.5k tok/s | ...".
std::string format_summary(const RunSummary& s);
// <dir>/train_results.json (train_runtime, train_tokens, train_tokens_per_second, train_loss,
// final_loss, eval_loss, eval_perplexity, peak_mem_bytes, ...), through a temporary name.
void write_train_results(const std::filesystem::path& dir, const RunSummary& s);

// "45s", "3m07s", "2h05m" (a negative value: "?").
std::string format_duration(double seconds);

}  // namespace ulysses::train
