#include "ulysses/train/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ulysses/core/error.h"

namespace ulysses::train {

namespace {

// Picture geometry (pixels): the plot area is [kLeft, kWidth - kRight] x [kTop, kHeight - kBottom].
constexpr double kWidth = 720, kHeight = 420, kLeft = 70, kRight = 20, kTop = 40, kBottom = 50;
constexpr const char* kTrainColor = "#1f77b4";
constexpr const char* kEvalColor = "#ff7f0e";

struct Range {
  double lo, hi;
};

// A tick spacing of 1, 2 or 5 times a power of ten giving about `count` ticks over the range.
double tick_spacing(const Range& r, int count) {
  const double raw = (r.hi - r.lo) / count;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0})
    if (raw <= m * power) return m * power;
  return 10 * power;
}

// The range of the values, widened so ticks land on round numbers and a flat line is visible.
Range axis_range(std::vector<double> values, int ticks) {
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  Range r{*lo, *hi};
  if (r.hi - r.lo < 1e-12 * std::max(1.0, std::abs(r.hi))) {
    r.lo -= 0.5;
    r.hi += 0.5;
  }
  const double step = tick_spacing(r, ticks);
  return {std::floor(r.lo / step) * step, std::ceil(r.hi / step) * step};
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", std::abs(v) < 1e-12 ? 0.0 : v);
  return buf;
}

std::string escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

}  // namespace

LossSeries read_loss_series(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) UL_FAIL(file.string(), ": cannot read");
  LossSeries s;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number())
      UL_FAIL(file.string(), ":", number, ": not a metrics line (a JSON object with a \"step\")");
    const double step = j["step"].get<double>();
    for (const auto& [key, series] : {std::pair{"loss", &s.train}, std::pair{"eval_loss", &s.eval}})
      if (j.contains(key) && j[key].is_number() && std::isfinite(j[key].get<double>()))
        series->emplace_back(step, j[key].get<double>());
  }
  return s;
}

std::string loss_curve_svg(const LossSeries& s, const std::string& title) {
  std::vector<double> steps, losses;
  for (const auto* series : {&s.train, &s.eval})
    for (const auto& [step, loss] : *series) {
      steps.push_back(step);
      losses.push_back(loss);
    }
  UL_CHECK(!steps.empty(), "loss_curve_svg needs at least one loss");
  const Range x = axis_range(steps, 8), y = axis_range(losses, 6);
  const double w = kWidth - kLeft - kRight, h = kHeight - kTop - kBottom;
  const auto px = [&](double step) { return kLeft + (step - x.lo) / (x.hi - x.lo) * w; };
  const auto py = [&](double loss) { return kTop + (y.hi - loss) / (y.hi - y.lo) * h; };

  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kWidth << "\" height=\"" << kHeight
      << "\" viewBox=\"0 0 " << kWidth << " " << kHeight
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  out << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  out << "<text x=\"" << kWidth / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">"
      << escape(title) << "</text>\n";
  // Grid and tick labels.
  const double dx = tick_spacing(x, 8), dy = tick_spacing(y, 6);
  for (double v = x.lo; v <= x.hi + dx / 2; v += dx)
    out << "<line x1=\"" << px(v) << "\" y1=\"" << kTop << "\" x2=\"" << px(v) << "\" y2=\""
        << kTop + h << "\" stroke=\"#e0e0e0\"/>\n<text x=\"" << px(v) << "\" y=\"" << kTop + h + 16
        << "\" text-anchor=\"middle\">" << number(v) << "</text>\n";
  for (double v = y.lo; v <= y.hi + dy / 2; v += dy)
    out << "<line x1=\"" << kLeft << "\" y1=\"" << py(v) << "\" x2=\"" << kLeft + w << "\" y2=\""
        << py(v) << "\" stroke=\"#e0e0e0\"/>\n<text x=\"" << kLeft - 6 << "\" y=\"" << py(v) + 4
        << "\" text-anchor=\"end\">" << number(v) << "</text>\n";
  out << "<rect x=\"" << kLeft << "\" y=\"" << kTop << "\" width=\"" << w << "\" height=\"" << h
      << "\" fill=\"none\" stroke=\"black\"/>\n";
  out << "<text x=\"" << kLeft + w / 2 << "\" y=\"" << kHeight - 12
      << "\" text-anchor=\"middle\">step</text>\n";
  out << "<text x=\"16\" y=\"" << kTop + h / 2
      << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 " << kTop + h / 2
      << ")\">loss</text>\n";
  // The series.
  int legend = 0;
  const auto draw = [&](const std::vector<std::pair<double, double>>& series, const char* color,
                        const char* name, bool markers) {
    if (series.empty()) return;
    out << "<polyline class=\"" << name << "\" fill=\"none\" stroke=\"" << color
        << "\" stroke-width=\"1.5\" points=\"";
    for (const auto& [step, loss] : series) out << px(step) << "," << py(loss) << " ";
    out << "\"/>\n";
    if (markers || series.size() == 1)
      for (const auto& [step, loss] : series)
        out << "<circle cx=\"" << px(step) << "\" cy=\"" << py(loss) << "\" r=\"3\" fill=\""
            << color << "\"/>\n";
    const double ly = kTop + 16 + 18 * legend++;
    out << "<line x1=\"" << kLeft + w - 110 << "\" y1=\"" << ly - 4 << "\" x2=\"" << kLeft + w - 86
        << "\" y2=\"" << ly - 4 << "\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n<text x=\""
        << kLeft + w - 80 << "\" y=\"" << ly << "\">" << name << "</text>\n";
  };
  draw(s.train, kTrainColor, "train loss", false);
  draw(s.eval, kEvalColor, "eval loss", true);
  out << "</svg>\n";
  return out.str();
}

std::filesystem::path write_loss_plot(const std::filesystem::path& dir) {
  const auto metrics = dir / "metrics.jsonl";
  if (!std::filesystem::is_regular_file(metrics))
    UL_FAIL("--output-dir ", dir.string(), ": no metrics.jsonl (the folder of a training run)");
  const LossSeries series = read_loss_series(metrics);
  if (series.train.empty() && series.eval.empty())
    UL_FAIL(metrics.string(), ": no loss to plot (every logged step was skipped?)");
  const auto path = dir / "loss.svg", tmp = dir / "loss.svg.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    const auto name = dir.lexically_normal().filename().empty()
                          ? dir.lexically_normal().parent_path().filename()
                          : dir.lexically_normal().filename();
    out << loss_curve_svg(series, "loss: " + name.string());
    out.flush();
    if (!out.good()) {
      std::filesystem::remove(tmp);
      UL_FAIL("--output-dir ", dir.string(), ": cannot write ", tmp.string());
    }
  }
  std::filesystem::rename(tmp, path);
  return path;
}

}  // namespace ulysses::train
