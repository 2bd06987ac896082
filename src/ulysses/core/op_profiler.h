// Per-op-kind timing of training steps. A Context carries an optional OpProfiler
// (Context::profiler, null by default); the op dispatch functions (ops/*.cc) open a ProfileScope
// with their kind ("gemm", "attention", "rmsnorm.fwd", ...) and callers mark phases
// ("forward", "backward", "recompute"; the trainer: "optimizer") with a PhaseScope. Without a
// profiler both scopes cost one null check.
//
// Timing: on CUDA every scope records a pair of CUDA events on the context's compute stream (no
// host synchronization inside the step); on CPU a steady clock (CPU ops are synchronous).
// Only the outermost op scope records (an op that calls another op is counted once, under its
// own kind), so the op totals never exceed the time they cover. Phases nest with ops: an op
// is booked under the innermost open phase ("" when none).
//
// Reading: totals() waits for the recorded events (one host synchronization) and folds them
// into the per-(phase, kind) sums; call it once after the timed steps. Records are only taken
// while enabled() (set_enabled(false) to skip warm-up steps). Not thread-safe: one profiler per
// stream / thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ulysses/core/context.h"

namespace ulysses {

class OpProfiler {
 public:
  struct Row {
    std::string phase;  // "" outside any phase
    std::string kind;
    std::int64_t calls = 0;
    double ms = 0;
  };

  OpProfiler() = default;
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  void set_enabled(bool enabled) { enabled_ = enabled; }
  bool enabled() const { return enabled_; }

  // Scope bookkeeping (use ProfileScope / PhaseScope rather than these). begin returns a token
  // for end (negative when nothing is recorded: disabled, or nested inside another op scope).
  // Totals are read with no scope open (an Error otherwise).
  int begin_op(const Context& ctx, const char* kind);
  int begin_phase(const Context& ctx, const char* phase);
  void end(const Context& ctx, int token);

  // Per-(phase, kind) op sums of every finished scope so far, sorted by phase then kind.
  // Synchronizes with the recorded CUDA events first.
  std::vector<Row> totals();
  // Time of each phase scope (kind = the phase name, phase = the enclosing phase or "").
  std::vector<Row> phase_totals();
  // Op sums over phases: one row per kind, phase "".
  std::vector<Row> kind_totals();
  // Forgets every record and sum (open scopes must be closed first).
  void reset();

 private:
  struct Record {
    bool is_phase = false;
    std::string phase;            // enclosing phase at begin
    std::string kind;             // op kind or the phase's own name
    void* start_event = nullptr;  // CUDA; null on CPU
    void* end_event = nullptr;
    std::chrono::steady_clock::time_point start_time{}, end_time{};
    bool open = true;
  };
  static constexpr int kUnrecordedOp = -1, kUnrecordedPhase = -2;
  int begin(const Context& ctx, bool is_phase, const char* name);
  void fold();  // finished records into sums_ (events synchronized, recycled into pool_)
  void* take_event();

  bool enabled_ = true;
  int op_depth_ = 0;                 // open op scopes, including the ones that did not record
  std::vector<std::string> phases_;  // open phase names
  std::vector<Record> records_;
  std::vector<void*> pool_;                                        // CUDA events ready for reuse
  std::map<std::pair<std::string, std::string>, Row> sums_;        // (phase, kind) of ops
  std::map<std::pair<std::string, std::string>, Row> phase_sums_;  // (outer, phase)
};

// Times one op of `kind` (a string literal) when ctx.profiler is set.
class ProfileScope {
 public:
  ProfileScope(const Context& ctx, const char* kind) : ctx_(ctx) {
    if (ctx.profiler) {
      token_ = ctx.profiler->begin_op(ctx, kind);
      active_ = true;
    }
  }
  ~ProfileScope() {
    if (!active_) return;
    try {
      ctx_.profiler->end(ctx_, token_);
    } catch (...) {  // a failed event record must not terminate an unwinding op
    }
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const Context& ctx_;
  int token_ = -1;
  bool active_ = false;
};

// Marks a phase ("forward", "backward", "recompute", "optimizer", ...) when ctx.profiler is set.
class PhaseScope {
 public:
  PhaseScope(const Context& ctx, const char* phase) : ctx_(ctx) {
    if (ctx.profiler) {
      token_ = ctx.profiler->begin_phase(ctx, phase);
      active_ = true;
    }
  }
  ~PhaseScope() {
    if (!active_) return;
    try {
      ctx_.profiler->end(ctx_, token_);
    } catch (...) {  // a failed event record must not terminate an unwinding step
    }
  }
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  const Context& ctx_;
  int token_ = -1;
  bool active_ = false;
};

// Markdown tables of kind_totals() and phase_totals() over `steps` steps that took
// `measured_ms` in all: kind, calls per step, ms per step, share of the step; then an
// "unaccounted" row (measured minus the op sum) and, when phases were marked, one row per phase.
std::string profile_table(OpProfiler& profiler, double measured_ms, std::int64_t steps = 1);

}  // namespace ulysses
