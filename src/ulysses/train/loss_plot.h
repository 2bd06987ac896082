// Loss curve picture: the training loss (and eval loss, when evaluated) of a run against the
// step, as a self-contained SVG file drawn from metrics.jsonl (no plotting library).
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace ulysses::train {

struct LossSeries {
  std::vector<std::pair<double, double>> train;  // (step, loss) of the logged steps
  std::vector<std::pair<double, double>> eval;   // (step, eval_loss)
};

// The series of a metrics.jsonl file, in file order. Lines without a finite "loss" (a skipped
// step) or "eval_loss" add nothing. Error naming the file (and line) when it cannot be read or
// a line is not a JSON object.
LossSeries read_loss_series(const std::filesystem::path& metrics_file);

// The picture: axes with ticks, train as a line, eval as a line with markers, a legend.
// Error when both series are empty.
std::string loss_curve_svg(const LossSeries& series, const std::string& title);

// <dir>/loss.svg from <dir>/metrics.jsonl, written through a temporary name; returns its path.
// Error naming --output-dir when dir holds no metrics.jsonl or it has no loss.
std::filesystem::path write_loss_plot(const std::filesystem::path& dir);

}  // namespace ulysses::train
