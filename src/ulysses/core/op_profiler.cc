#include "ulysses/core/op_profiler.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "ulysses/core/error.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/core/profiler_events.h"
#endif

namespace ulysses {

OpProfiler::~OpProfiler() {
#ifdef ULYSSES_HAS_CUDA
  for (Record& r : records_) {
    if (r.start_event) profiler_events::destroy(r.start_event);
    if (r.end_event) profiler_events::destroy(r.end_event);
  }
  for (void* e : pool_) profiler_events::destroy(e);
#endif
}

void* OpProfiler::take_event() {
#ifdef ULYSSES_HAS_CUDA
  if (pool_.empty()) return profiler_events::create();
  void* e = pool_.back();
  pool_.pop_back();
  return e;
#else
  UL_FAIL("OpProfiler: CUDA events in a build without CUDA");
#endif
}

int OpProfiler::begin(const Context& ctx, bool is_phase, const char* name) {
  if (!is_phase && op_depth_++ > 0)
    return kUnrecordedOp;  // nested op: its caller's scope covers it
  if (is_phase) phases_.emplace_back(name);
  if (!enabled_) return is_phase ? kUnrecordedPhase : kUnrecordedOp;
  Record r;
  r.is_phase = is_phase;
  r.kind = name;
  // A phase is booked under the phase around it; an op under the innermost phase.
  const std::size_t outer = is_phase ? phases_.size() - 1 : phases_.size();
  if (outer > 0) r.phase = phases_[outer - 1];
  if (ctx.device.is_cuda()) {
    r.start_event = take_event();
    r.end_event = take_event();
#ifdef ULYSSES_HAS_CUDA
    profiler_events::record(ctx, r.start_event);
#endif
  } else {
    r.start_time = std::chrono::steady_clock::now();
  }
  records_.push_back(std::move(r));
  return static_cast<int>(records_.size() - 1);
}

int OpProfiler::begin_op(const Context& ctx, const char* kind) { return begin(ctx, false, kind); }
int OpProfiler::begin_phase(const Context& ctx, const char* phase) {
  return begin(ctx, true, phase);
}

void OpProfiler::end([[maybe_unused]] const Context& ctx, int token) {
  if (token == kUnrecordedOp) {  // a nested op, or an op while disabled
    UL_CHECK(op_depth_ > 0, "OpProfiler: end of an op scope that is not open");
    --op_depth_;
    return;
  }
  if (token == kUnrecordedPhase) {  // a phase opened while disabled
    UL_CHECK(!phases_.empty(), "OpProfiler: end of a phase that is not open");
    phases_.pop_back();
    return;
  }
  UL_CHECK(static_cast<std::size_t>(token) < records_.size() && records_[token].open,
           "OpProfiler: end of an unknown or closed scope");
  Record& r = records_[token];
  if (r.is_phase) {
    UL_CHECK(!phases_.empty() && phases_.back() == r.kind, "OpProfiler: phase '", r.kind,
             "' closed out of order");
    phases_.pop_back();
  } else {
    --op_depth_;
  }
  r.open = false;
  if (r.end_event) {
#ifdef ULYSSES_HAS_CUDA
    profiler_events::record(ctx, r.end_event);
#endif
  } else {
    r.end_time = std::chrono::steady_clock::now();
  }
}

void OpProfiler::fold() {
  for (const Record& r : records_)
    UL_CHECK(!r.open, "OpProfiler: totals read while the scope '", r.kind, "' is open");
#ifdef ULYSSES_HAS_CUDA
  // The last finished event is the latest on the stream: one wait covers all of them.
  for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
    if (!it->open && it->end_event) {
      profiler_events::synchronize(it->end_event);
      break;
    }
  }
#endif
  for (Record& r : records_) {
    double ms = 0;
    if (r.end_event) {
#ifdef ULYSSES_HAS_CUDA
      ms = profiler_events::elapsed_ms(r.start_event, r.end_event);
#endif
      pool_.push_back(r.start_event);
      pool_.push_back(r.end_event);
    } else {
      ms = std::chrono::duration<double, std::milli>(r.end_time - r.start_time).count();
    }
    auto& sums = r.is_phase ? phase_sums_ : sums_;
    Row& row = sums[{r.phase, r.kind}];
    row.phase = r.phase;
    row.kind = r.kind;
    row.calls += 1;
    row.ms += ms;
  }
  records_.clear();
}

std::vector<OpProfiler::Row> OpProfiler::totals() {
  fold();
  std::vector<Row> rows;
  for (const auto& [key, row] : sums_) rows.push_back(row);
  return rows;
}

std::vector<OpProfiler::Row> OpProfiler::phase_totals() {
  fold();
  std::vector<Row> rows;
  for (const auto& [key, row] : phase_sums_) rows.push_back(row);
  return rows;
}

std::vector<OpProfiler::Row> OpProfiler::kind_totals() {
  fold();
  std::map<std::string, Row> by_kind;
  for (const auto& [key, row] : sums_) {
    Row& r = by_kind[row.kind];
    r.kind = row.kind;
    r.calls += row.calls;
    r.ms += row.ms;
  }
  std::vector<Row> rows;
  for (auto& [kind, row] : by_kind) rows.push_back(row);
  std::stable_sort(rows.begin(), rows.end(),
                   [](const Row& a, const Row& b) { return a.ms > b.ms; });
  return rows;
}

void OpProfiler::reset() {
  UL_CHECK(op_depth_ == 0 && phases_.empty(), "OpProfiler: reset with open scopes");
  fold();
  sums_.clear();
  phase_sums_.clear();
}

std::string profile_table(OpProfiler& profiler, double measured_ms, std::int64_t steps) {
  UL_CHECK(steps >= 1, "profile_table: steps is ", steps, ", expected >= 1");
  const double n = static_cast<double>(steps);
  std::ostringstream out;
  char line[256];
  const auto share = [&](double ms) { return measured_ms > 0 ? 100.0 * ms / measured_ms : 0.0; };
  const auto row = [&](const std::string& name, double calls, double ms) {
    std::snprintf(line, sizeof line, "| %s | %.0f | %.2f | %.1f%% |\n", name.c_str(), calls / n,
                  ms / n, share(ms));
    out << line;
  };
  out << "| op kind | calls/step | ms/step | share of step |\n| --- | --- | --- | --- |\n";
  double sum = 0;
  for (const OpProfiler::Row& r : profiler.kind_totals()) {
    row(r.kind, static_cast<double>(r.calls), r.ms);
    sum += r.ms;
  }
  row("unaccounted", 0, measured_ms - sum);
  row("step", n, measured_ms);
  const auto phases = profiler.phase_totals();
  if (!phases.empty()) {
    out << "\n| phase | calls/step | ms/step | share of step |\n| --- | --- | --- | --- |\n";
    for (const OpProfiler::Row& r : phases)
      row(r.phase.empty() ? r.kind : r.phase + "/" + r.kind, static_cast<double>(r.calls), r.ms);
    out << "\n| phase | op kind | calls/step | ms/step | share of step |\n"
           "| --- | --- | --- | --- | --- |\n";
    for (const OpProfiler::Row& r : profiler.totals()) {
      std::snprintf(line, sizeof line, "| %s | %s | %.0f | %.2f | %.1f%% |\n",
                    r.phase.empty() ? "-" : r.phase.c_str(), r.kind.c_str(),
                    static_cast<double>(r.calls) / n, r.ms / n, share(r.ms));
      out << line;
    }
  }
  return out.str();
}

}  // namespace ulysses
