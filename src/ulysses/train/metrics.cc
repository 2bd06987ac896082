#include "ulysses/train/metrics.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ulysses/core/error.h"
#include "ulysses/core/format.h"
#include "ulysses/train/evaluator.h"
#include "ulysses/train/run_report.h"

namespace ulysses::train {

namespace {
std::string human(double value) {
  char buf[32];
  if (value >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", value / 1e9);
  else if (value >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", value / 1e6);
  else if (value >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", value / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", value);
  return buf;
}
}  // namespace

std::string progress_line(const StepMetrics& m) {
  char buf[256];
  if (m.skipped) {
    std::snprintf(buf, sizeof buf, "step %5lld/%lld | skipped: no valid labels in the global batch",
                  static_cast<long long>(m.step), static_cast<long long>(m.max_steps));
    return buf;
  }
  // Tokens/s smoothed over the last steps when known (one step's value swings with the
  // collectives and the allocator); elapsed time and ETA when the run loop measured them.
  const double tokens_per_s =
      m.smoothed_tokens_per_s > 0 ? m.smoothed_tokens_per_s : m.tokens_per_s;
  std::snprintf(buf, sizeof buf,
                "step %5lld/%lld | loss %.4f | lr %.2e | grad-norm %.3f | %s tok/s | "
                "%.3f TFLOP/s/dev | mem %.0f MiB | pad %.1f%%",
                static_cast<long long>(m.step), static_cast<long long>(m.max_steps), m.loss,
                m.learning_rate, m.grad_norm, human(tokens_per_s).c_str(), m.tflops_per_device,
                static_cast<double>(m.peak_mem_bytes) / (1 << 20),
                m.tokens
                    ? 100.0 * static_cast<double>(m.padding_tokens) / static_cast<double>(m.tokens)
                    : 0.0);
  std::string line = buf;
  if (m.epoch >= 0) {
    std::snprintf(buf, sizeof buf, " | epoch %.2f", m.epoch);
    line += buf;
  }
  if (m.eta_seconds >= 0)
    line += " | " + format_duration(m.elapsed_seconds) + " elapsed, eta " +
            format_duration(m.eta_seconds);
  return line;
}

namespace {
nlohmann::ordered_json epoch_value(double epoch) {
  return epoch < 0 ? nlohmann::ordered_json() : nlohmann::ordered_json(epoch);
}
}  // namespace

std::string metrics_json(const StepMetrics& m) {
  nlohmann::ordered_json j = {
      {"step", m.step},
      {"epoch", epoch_value(m.epoch)},
      {"loss", m.skipped ? nlohmann::ordered_json() : nlohmann::ordered_json(m.loss)},
      {"learning_rate", m.learning_rate},
      {"grad_norm", m.grad_norm},
      {"tokens", m.tokens},
      {"padding_tokens", m.padding_tokens},
      {"padding_share",
       m.tokens ? static_cast<double>(m.padding_tokens) / static_cast<double>(m.tokens) : 0.0},
      {"valid_labels", m.valid_labels},
      {"step_seconds", m.seconds},
      {"tokens_per_s", m.tokens_per_s},
      {"tflops_per_device", m.tflops_per_device},
      {"peak_mem_bytes", m.peak_mem_bytes},
      {"elapsed_seconds", m.elapsed_seconds},
      {"tokens_per_s_smoothed", m.smoothed_tokens_per_s},
      {"skipped", m.skipped},
      {"timestamp", format_utc_now()}};
  return j.dump();
}

std::string metrics_json(const EvalMetrics& m, double epoch) {
  nlohmann::ordered_json j = {{"step", m.step},
                              {"epoch", epoch_value(epoch)},
                              {"eval_loss", m.loss},
                              {"eval_perplexity", m.perplexity},
                              {"eval_valid_labels", m.valid_labels},
                              {"eval_sequences", m.sequences},
                              {"eval_tokens", m.tokens},
                              {"eval_runtime", m.seconds},
                              {"timestamp", format_utc_now()}};
  return j.dump();
}

std::int64_t host_peak_memory_bytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  long long kib = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::sscanf(line, "VmHWM: %lld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib * 1024;
}

void truncate_metrics_after(const std::filesystem::path& dir, std::int64_t step) {
  const auto path = dir / "metrics.jsonl";
  if (!std::filesystem::exists(path)) return;
  std::ifstream in(path);
  UL_CHECK(in.good(), "cannot read ", path.string());
  std::string kept, line;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const bool later = j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
                       j["step"].get<std::int64_t>() > step;
    if (!later) kept += line + '\n';
  }
  in.close();
  const auto tmp = dir / "metrics.jsonl.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    out.flush();
    UL_CHECK(out.good(), "cannot write ", tmp.string());
  }
  std::filesystem::rename(tmp, path);
}

MetricsWriter::MetricsWriter(const std::filesystem::path& dir, std::int64_t resume_step) {
  if (dir.empty()) return;
  std::filesystem::create_directories(dir);
  if (resume_step > 0) truncate_metrics_after(dir, resume_step);
  out_.open(dir / "metrics.jsonl", resume_step > 0 ? std::ios::app : std::ios::trunc);
  UL_CHECK(out_.good(), "cannot write ", (dir / "metrics.jsonl").string());
}

void MetricsWriter::write(const StepMetrics& m) {
  if (!out_.is_open()) return;
  out_ << metrics_json(m) << '\n';
  out_.flush();
}

void MetricsWriter::write(const EvalMetrics& m, double epoch) {
  if (!out_.is_open()) return;
  out_ << metrics_json(m, epoch) << '\n';
  out_.flush();
}

std::int64_t host_available_memory_bytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

}  // namespace ulysses::train
