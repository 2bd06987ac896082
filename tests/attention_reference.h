// Naive float64 reference of the causal varlen GQA attention (the full masked [T, T] score
// matrix per head), shared by the attention and block attention tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "test_util.h"

namespace ulysses::testing {

// out, lse and the gradients given dout, all in float64.
struct Reference {
  std::vector<double> out;  // [T, Hq, D]
  std::vector<double> lse;  // [Hq, T]
  std::vector<double> dq;   // [T, Hq, D]
  std::vector<double> dk;   // [T, Hkv, D]
  std::vector<double> dv;   // [T, Hkv, D]
};

inline Reference reference_attention(const Tensor& q_t, const Tensor& k_t, const Tensor& v_t,
                                     const std::vector<std::int32_t>& cu, double scale,
                                     const Tensor& dout_t) {
  const std::int64_t T = q_t.dim(0), Hq = q_t.dim(1), D = q_t.dim(2), Hkv = k_t.dim(1);
  const auto q = as_doubles(q_t), k = as_doubles(k_t), v = as_doubles(v_t);
  const auto dout = as_doubles(dout_t);
  // document[t]: index of the document holding token t
  std::vector<std::size_t> document(static_cast<std::size_t>(T));
  for (std::size_t j = 0; j + 1 < cu.size(); ++j)
    for (std::int32_t t = cu[j]; t < cu[j + 1]; ++t) document[static_cast<std::size_t>(t)] = j;
  auto qi = [&](std::int64_t t, std::int64_t h, std::int64_t d) {
    return static_cast<std::size_t>((t * Hq + h) * D + d);
  };
  auto ki = [&](std::int64_t t, std::int64_t h, std::int64_t d) {
    return static_cast<std::size_t>((t * Hkv + h) * D + d);
  };
  auto ti = [&](std::int64_t t, std::int64_t s) { return static_cast<std::size_t>(t * T + s); };

  Reference r;
  r.out.assign(static_cast<std::size_t>(T * Hq * D), 0.0);
  r.lse.assign(static_cast<std::size_t>(Hq * T), 0.0);
  r.dq.assign(r.out.size(), 0.0);
  r.dk.assign(static_cast<std::size_t>(T * Hkv * D), 0.0);
  r.dv.assign(r.dk.size(), 0.0);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  for (std::int64_t h = 0; h < Hq; ++h) {
    const std::int64_t g = h / (Hq / Hkv);
    // scores, probabilities: [T, T]
    std::vector<double> p(static_cast<std::size_t>(T * T), neg_inf);
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t s = 0; s <= t; ++s) {
        if (document[static_cast<std::size_t>(s)] != document[static_cast<std::size_t>(t)])
          continue;
        double dot = 0;
        for (std::int64_t d = 0; d < D; ++d) dot += q[qi(t, h, d)] * k[ki(s, g, d)];
        p[ti(t, s)] = scale * dot;
      }
      double max = neg_inf, sum = 0;
      for (std::int64_t s = 0; s < T; ++s) max = std::max(max, p[ti(t, s)]);
      for (std::int64_t s = 0; s < T; ++s) sum += std::exp(p[ti(t, s)] - max);
      for (std::int64_t s = 0; s < T; ++s) p[ti(t, s)] = std::exp(p[ti(t, s)] - max) / sum;
      r.lse[static_cast<std::size_t>(h * T + t)] = max + std::log(sum);
      for (std::int64_t s = 0; s < T; ++s)
        for (std::int64_t d = 0; d < D; ++d) r.out[qi(t, h, d)] += p[ti(t, s)] * v[ki(s, g, d)];
    }
    // Backward: dp = dout v^T, ds = p * (dp - rowsum(p * dp)).
    for (std::int64_t t = 0; t < T; ++t) {
      std::vector<double> dp(static_cast<std::size_t>(T));
      double row = 0;
      for (std::int64_t s = 0; s < T; ++s) {
        double dot = 0;
        for (std::int64_t d = 0; d < D; ++d) dot += dout[qi(t, h, d)] * v[ki(s, g, d)];
        dp[static_cast<std::size_t>(s)] = dot;
        row += p[ti(t, s)] * dot;
      }
      for (std::int64_t s = 0; s < T; ++s) {
        const double pts = p[ti(t, s)];
        const double ds = pts * (dp[static_cast<std::size_t>(s)] - row);
        for (std::int64_t d = 0; d < D; ++d) {
          r.dq[qi(t, h, d)] += scale * ds * k[ki(s, g, d)];
          r.dk[ki(s, g, d)] += scale * ds * q[qi(t, h, d)];
          r.dv[ki(s, g, d)] += pts * dout[qi(t, h, d)];
        }
      }
    }
  }
  return r;
}

}  // namespace ulysses::testing
