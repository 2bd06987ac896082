// Seeded pseudo-random numbers (xoshiro256**, seeded through splitmix64).
//
// Deterministic across platforms. Streams for independent purposes are derived from a seed and
// a few integers (Rng::derive), so any (seed, step, index) addresses its own stream without
// shared state: ranks can reproduce each other's draws without communication. The whole state
// is four integers (state()/set_state()) for checkpoints.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>

namespace ulysses {

class Rng {
 public:
  using State = std::array<std::uint64_t, 4>;

  explicit Rng(std::uint64_t seed = 0);
  // A stream keyed by the seed and the given integers.
  static Rng derive(std::uint64_t seed, std::initializer_list<std::uint64_t> keys);

  std::uint64_t next_u64();
  // Uniform integer in [0, n), n > 0 (unbiased).
  std::uint64_t below(std::uint64_t n);
  // Uniform float in [0, 1).
  float uniform();
  // Standard normal (Box-Muller in double precision).
  float normal();

  State state() const { return state_; }
  void set_state(const State& state) { state_ = state; }

 private:
  State state_{};
};

}  // namespace ulysses
