// Run reports (train/run_report.h) and the loss curve (train/loss_plot.h): smoothing, ETA and
// summary arithmetic on made-up steps; the SVG's series and axes; bad metrics files named.
#include "ulysses/train/run_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "test_util.h"
#include "ulysses/train/loss_plot.h"

namespace ulysses::train {
namespace {

StepMetrics step(std::int64_t index, std::int64_t tokens, double seconds, double loss) {
  StepMetrics m;
  m.step = index;
  m.max_steps = 10;
  m.tokens = tokens;
  m.seconds = seconds;
  m.tokens_per_s = static_cast<double>(tokens) / seconds;
  m.loss = loss;
  return m;
}

TEST(RunProgress, SmoothsTokensPerSecondAndEstimatesTheRest) {
  RunProgress progress(/*first_step=*/3, /*max_steps=*/10);
  EXPECT_EQ(progress.last().step, 2);
  StepMetrics a = step(3, 1000, 1.0, 4.0);
  progress.add(a);
  // One step: bias-corrected averages are that step's values.
  EXPECT_DOUBLE_EQ(a.smoothed_tokens_per_s, 1000.0);
  EXPECT_NEAR(a.eta_seconds, 7 * 1.0, 1e-12);
  StepMetrics b = step(4, 1000, 0.1, 2.0);  // a fast step moves the average by kSmoothing only
  progress.add(b);
  const double k = RunProgress::kSmoothing;
  const double tokens = (1 - k) * k * 1000 + k * 1000, seconds = (1 - k) * k * 1.0 + k * 0.1;
  EXPECT_NEAR(b.smoothed_tokens_per_s, tokens / seconds, 1e-9);
  EXPECT_GT(b.smoothed_tokens_per_s, 1000.0);
  EXPECT_LT(b.smoothed_tokens_per_s, b.tokens_per_s);
  const double weight = (1 - k) * k + k;
  EXPECT_NEAR(b.eta_seconds, 6 * seconds / weight, 1e-9);
  EXPECT_GE(b.elapsed_seconds, a.elapsed_seconds);
  StepMetrics skipped = step(5, 1000, 1.0, NAN);
  skipped.skipped = true;
  skipped.peak_mem_bytes = 77;
  progress.add(skipped);
  EXPECT_EQ(progress.steps(), 3);
  EXPECT_EQ(progress.tokens(), 3000);
  EXPECT_DOUBLE_EQ(progress.mean_loss(), 3.0);  // the skipped step has no loss

  EvalMetrics e;
  e.loss = 1.5;
  e.perplexity = std::exp(1.5);
  const RunSummary s = summarize(progress, {e});
  EXPECT_EQ(s.steps, 3);
  EXPECT_EQ(s.last_step, 5);
  EXPECT_TRUE(std::isnan(s.final_loss));  // the last step was skipped
  EXPECT_DOUBLE_EQ(s.train_loss, 3.0);
  EXPECT_DOUBLE_EQ(s.eval_loss, 1.5);
  EXPECT_EQ(s.peak_mem_bytes, 77);
  EXPECT_NE(format_summary(s).find("eval_loss 1.5000"), std::string::npos) << format_summary(s);
  EXPECT_TRUE(std::isnan(summarize(progress, {}).eval_loss));
  EXPECT_EQ(format_summary(summarize(progress, {})).find("eval_loss"), std::string::npos);
}

TEST(RunProgress, ProgressLineShowsElapsedEtaAndEpoch) {
  StepMetrics m = step(4, 4096, 0.5, 2.0);
  m.epoch = 0.25;
  EXPECT_EQ(progress_line(m).find("eta"), std::string::npos);  // not measured: not shown
  m.elapsed_seconds = 75;
  m.eta_seconds = 7300;
  m.smoothed_tokens_per_s = 1234;
  const std::string line = progress_line(m);
  EXPECT_NE(line.find("1m15s elapsed, eta 2h01m"), std::string::npos) << line;
  EXPECT_NE(line.find("1.2k tok/s"), std::string::npos) << line;  // smoothed, not 8.2k
  EXPECT_NE(line.find("epoch 0.25"), std::string::npos) << line;
}

TEST(RunProgress, FormatDuration) {
  EXPECT_EQ(format_duration(0.4), "0s");
  EXPECT_EQ(format_duration(59.4), "59s");
  EXPECT_EQ(format_duration(187), "3m07s");
  EXPECT_EQ(format_duration(7500), "2h05m");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(NAN), "?");
}

// The points of the polyline of class `name` in an SVG.
std::vector<std::pair<double, double>> points(const std::string& svg, const std::string& name) {
  const std::regex line("<polyline class=\"" + name + "\"[^>]*points=\"([^\"]*)\"");
  std::smatch match;
  if (!std::regex_search(svg, match, line)) return {};
  std::vector<std::pair<double, double>> out;
  std::istringstream in(match[1].str());
  for (std::string point; in >> point;) {
    const auto comma = point.find(',');
    out.emplace_back(std::stod(point.substr(0, comma)), std::stod(point.substr(comma + 1)));
  }
  return out;
}

TEST(LossPlot, DrawsTrainAndEvalInsideTheAxes) {
  LossSeries s;
  for (int i = 1; i <= 10; ++i) s.train.emplace_back(i, 5.0 - 0.3 * i);
  s.eval = {{5, 3.9}, {10, 2.6}};
  const std::string svg = loss_curve_svg(s, "run <a&b>");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("run &lt;a&amp;b&gt;"), std::string::npos);  // the title is escaped
  const auto train = points(svg, "train loss"), eval = points(svg, "eval loss");
  ASSERT_EQ(train.size(), 10u);
  ASSERT_EQ(eval.size(), 2u);
  for (const auto& [x, y] : train) {
    EXPECT_GE(x, 70.0);
    EXPECT_LE(x, 700.0);
    EXPECT_GE(y, 40.0);
    EXPECT_LE(y, 370.0);
  }
  // Steps left to right, a falling loss drawn downwards (larger y), one scale for both series:
  // eval's 2.6 at step 10 is drawn above train's 2.0 there.
  for (std::size_t i = 1; i < train.size(); ++i) {
    EXPECT_GT(train[i].first, train[i - 1].first);
    EXPECT_GT(train[i].second, train[i - 1].second);
  }
  EXPECT_DOUBLE_EQ(eval[1].first, train[9].first);
  EXPECT_LT(eval[1].second, train[9].second);
  EXPECT_EQ(points(loss_curve_svg({s.train, {}}, "t"), "eval loss").size(), 0u);
  // A single flat point still gets a visible axis.
  const std::string one = loss_curve_svg({{{1, 2.0}}, {}}, "one");
  EXPECT_NE(one.find("<circle"), std::string::npos);
}

TEST(LossPlot, ReadsMetricsAndRefusesBadFiles) {
  const auto dir = std::filesystem::temp_directory_path() / "ulysses_loss_plot";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  testing::expect_error([&] { write_loss_plot(dir); }, "no metrics.jsonl");
  std::ofstream(dir / "metrics.jsonl") << "{\"step\":1,\"loss\":3.0}\n{\"step\":2,\"loss\":null}\n"
                                          "{\"step\":2,\"eval_loss\":2.5}\n\n"
                                          "{\"step\":3,\"loss\":2.0}\n";
  const LossSeries s = read_loss_series(dir / "metrics.jsonl");
  EXPECT_EQ(s.train, (std::vector<std::pair<double, double>>{{1, 3.0}, {3, 2.0}}));
  EXPECT_EQ(s.eval, (std::vector<std::pair<double, double>>{{2, 2.5}}));
  const auto path = write_loss_plot(dir);
  EXPECT_EQ(path, dir / "loss.svg");
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(dir / "loss.svg.tmp"));
  std::ofstream(dir / "metrics.jsonl") << "{\"step\":1,\"loss\":3.0}\nnot json\n";
  testing::expect_error([&] { read_loss_series(dir / "metrics.jsonl"); }, "metrics.jsonl:2:");
  std::ofstream(dir / "metrics.jsonl") << "{\"step\":1,\"loss\":null}\n";
  testing::expect_error([&] { write_loss_plot(dir); }, "no loss to plot");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ulysses::train
