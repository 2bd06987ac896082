#include "ulysses/train/metrics.h"

#include <fstream>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "ulysses/core/error.h"

namespace ulysses::train {

namespace {
std::string human(double value) {
  char buf[32];
  if (value >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", value / 1e9);
  else if (value >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", value / 1e6);
  else if (value >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", value / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", value);
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
  std::snprintf(buf, sizeof buf,
                "step %5lld/%lld | loss %.4f | lr %.2e | grad-norm %.3f | %s tok/s | "
                "%.3f TFLOP/s/dev | mem %.0f MiB | pad %.1f%%",
                static_cast<long long>(m.step), static_cast<long long>(m.max_steps), m.loss,
                m.learning_rate, m.grad_norm, human(m.tokens_per_s).c_str(), m.tflops_per_device,
                static_cast<double>(m.peak_mem_bytes) / (1 << 20),
                m.tokens ? 100.0 * static_cast<double>(m.padding_tokens) / static_cast<double>(m.tokens) : 0.0);
  return buf;
}

std::string metrics_json(const StepMetrics& m) {
  nlohmann::json j = {{"step", m.step},
                      {"loss", m.skipped ? nlohmann::json() : nlohmann::json(m.loss)},
                      {"lr", m.learning_rate},
                      {"grad_norm", m.grad_norm},
                      {"tokens", m.tokens},
                      {"padding_tokens", m.padding_tokens},
                      {"padding_share", m.tokens ? static_cast<double>(m.padding_tokens) / static_cast<double>(m.tokens) : 0.0},
                      {"valid_labels", m.valid_labels},
                      {"step_seconds", m.seconds},
                      {"tokens_per_s", m.tokens_per_s},
                      {"tflops_per_device", m.tflops_per_device},
                      {"peak_mem_bytes", m.peak_mem_bytes},
                      {"skipped", m.skipped}};
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

MetricsWriter::MetricsWriter(const std::filesystem::path& dir, bool append) {
  if (dir.empty()) return;
  std::filesystem::create_directories(dir);
  out_.open(dir / "metrics.jsonl", append ? std::ios::app : std::ios::trunc);
  UL_CHECK(out_.good(), "cannot write ", (dir / "metrics.jsonl").string());
}

void MetricsWriter::write(const StepMetrics& m) {
  if (!out_.is_open()) return;
  out_ << metrics_json(m) << '\n';
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
