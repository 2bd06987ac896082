#include "ulysses/train/run_report.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "ulysses/core/error.h"
#include "ulysses/core/format.h"

namespace ulysses::train {

RunProgress::RunProgress(std::int64_t first_step, std::int64_t max_steps)
    : start_(std::chrono::steady_clock::now()), max_steps_(max_steps) {
  last_.step = first_step - 1;
}

double RunProgress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void RunProgress::add(StepMetrics& m) {
  ++steps_;
  tokens_ += m.tokens;
  peak_mem_bytes_ = std::max(peak_mem_bytes_, m.peak_mem_bytes);
  if (!m.skipped && std::isfinite(m.loss)) {
    loss_sum_ += m.loss;
    ++losses_;
  }
  average_tokens_ = (1 - kSmoothing) * average_tokens_ + kSmoothing * static_cast<double>(m.tokens);
  average_seconds_ = (1 - kSmoothing) * average_seconds_ + kSmoothing * m.seconds;
  weight_ = (1 - kSmoothing) * weight_ + kSmoothing;  // the bias correction: 1 - (1 - k)^n
  const double step_seconds = average_seconds_ / weight_;
  m.elapsed_seconds = elapsed_seconds();
  m.smoothed_tokens_per_s = average_seconds_ > 0 ? average_tokens_ / average_seconds_ : 0.0;
  m.eta_seconds = static_cast<double>(max_steps_ - m.step) * step_seconds;
  last_ = m;
}

double RunProgress::mean_loss() const {
  return losses_ > 0 ? loss_sum_ / static_cast<double>(losses_)
                     : std::numeric_limits<double>::quiet_NaN();
}

RunSummary summarize(const RunProgress& progress, const std::vector<EvalMetrics>& evals) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  RunSummary s;
  s.steps = progress.steps();
  s.last_step = progress.last().step;
  s.seconds = progress.elapsed_seconds();
  s.tokens = progress.tokens();
  s.tokens_per_s = s.seconds > 0 ? static_cast<double>(s.tokens) / s.seconds : 0.0;
  s.train_loss = progress.mean_loss();
  s.final_loss = progress.steps() > 0 && !progress.last().skipped ? progress.last().loss : nan;
  s.eval_loss = evals.empty() ? nan : evals.back().loss;
  s.eval_perplexity = evals.empty() ? nan : evals.back().perplexity;
  s.peak_mem_bytes = progress.peak_mem_bytes();
  return s;
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0)) return "?";
  const auto total = static_cast<long long>(std::llround(seconds));
  char buf[32];
  if (total < 60)
    std::snprintf(buf, sizeof buf, "%llds", total);
  else if (total < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", total / 60, total % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", total / 3600, total / 60 % 60);
  return buf;
}

std::string format_summary(const RunSummary& s) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "done: %lld steps (to step %lld) in %s | %lld tokens, %.0f tok/s mean | loss "
                "%.4f final, %.4f mean",
                static_cast<long long>(s.steps), static_cast<long long>(s.last_step),
                format_duration(s.seconds).c_str(), static_cast<long long>(s.tokens),
                s.tokens_per_s, s.final_loss, s.train_loss);
  std::string out = buf;
  if (!std::isnan(s.eval_loss)) {
    std::snprintf(buf, sizeof buf, " | eval_loss %.4f (perplexity %.4g)", s.eval_loss,
                  s.eval_perplexity);
    out += buf;
  }
  out += " | peak memory " + format_bytes(s.peak_mem_bytes) + " per rank";
  return out;
}

void write_train_results(const std::filesystem::path& dir, const RunSummary& s) {
  const auto number = [](double v) {
    return std::isnan(v) ? nlohmann::ordered_json() : nlohmann::ordered_json(v);
  };
  const nlohmann::ordered_json j = {{"train_runtime", s.seconds},
                                    {"train_steps", s.steps},
                                    {"global_step", s.last_step},
                                    {"train_tokens", s.tokens},
                                    {"train_tokens_per_second", s.tokens_per_s},
                                    {"train_loss", number(s.train_loss)},
                                    {"final_loss", number(s.final_loss)},
                                    {"eval_loss", number(s.eval_loss)},
                                    {"eval_perplexity", number(s.eval_perplexity)},
                                    {"peak_mem_bytes", s.peak_mem_bytes},
                                    {"timestamp", format_utc_now()}};
  const auto path = dir / "train_results.json", tmp = dir / "train_results.json.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2) << '\n';
    out.flush();
    if (!out.good()) {
      std::filesystem::remove(tmp);
      UL_FAIL("cannot write ", tmp.string());
    }
  }
  std::filesystem::rename(tmp, path);
}

}  // namespace ulysses::train
