// Helpers shared by the unit tests: random tensors, error norms and a finite-difference checker.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ulysses/core/error.h"
#include "ulysses/core/rng.h"
#include "ulysses/core/tensor.h"
#include "ulysses/data/packer.h"

namespace ulysses::testing {

// The message of the ulysses::Error `call` throws, or "" when it throws none.
inline std::string error_message(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Fails the test unless `call` throws an Error whose message contains `fragment`.
inline void expect_error(const std::function<void()>& call, const std::string& fragment) {
  const std::string message = error_message(call);
  if (message.empty())
    ADD_FAILURE() << "expected an Error mentioning '" << fragment << "'";
  else
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
}

// f32 tensor with entries uniform in [-scale, scale).
inline Tensor random_tensor(const Shape& shape, Rng& rng, float scale = 1.0f) {
  Tensor t = Tensor::empty(shape, DType::f32);
  float* p = t.data<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = scale * (2.0f * rng.uniform() - 1.0f);
  return t;
}

// A sequence of documents of the given lengths, tokens uniform below `vocab` (drawn document by
// document), packed as the Packer packs them (positions restart, labels shifted per document).
inline data::PackedSequence random_documents(Rng& rng, const std::vector<std::int32_t>& lengths,
                                             std::int64_t vocab) {
  data::PackedSequence s;
  for (const std::int32_t n : lengths) {
    data::Document d;
    for (std::int32_t i = 0; i < n; ++i)
      d.tokens.push_back(static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab))));
    data::append_document(s, d);
  }
  return s;
}

// f32 tensor filled with NaN, so any element an op fails to write is caught.
inline Tensor poisoned(const Shape& shape) { return Tensor::full(shape, std::nanf("")); }

// ||a - b|| / ||b|| in double; NaN anywhere gives +inf.
inline double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    diff += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return norm == 0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

inline std::vector<double> as_doubles(const Tensor& t) {
  const auto f = t.to_floats();
  return {f.begin(), f.end()};
}

inline double relative_error(const Tensor& a, const Tensor& b) {
  return relative_error(as_doubles(a), as_doubles(b));
}

// Central finite differences of a scalar function of one f32 tensor, evaluated in f32 by the
// function but differenced in double. Returns d f / d x for every element of x (x is restored).
inline std::vector<double> numerical_gradient(Tensor x, const std::function<double()>& f,
                                              double step = 1e-2) {
  std::vector<double> grad(static_cast<std::size_t>(x.numel()));
  float* p = x.data<float>();
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const float saved = p[i];
    p[i] = static_cast<float>(saved + step);
    const double plus = f();
    p[i] = static_cast<float>(saved - step);
    const double minus = f();
    p[i] = saved;
    grad[static_cast<std::size_t>(i)] = (plus - minus) / (2 * step);
  }
  return grad;
}

// Central differences in double of a double function of x (x is restored): for checking a
// float64 reference's analytic gradient with tight tolerances.
inline std::vector<double> numerical_gradient_f64(std::vector<double>& x,
                                                  const std::function<double()>& f,
                                                  double step = 1e-6) {
  std::vector<double> grad(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + step;
    const double plus = f();
    x[i] = saved - step;
    const double minus = f();
    x[i] = saved;
    grad[i] = (plus - minus) / (2 * step);
  }
  return grad;
}

// Sum of out * weights in double: the scalar "loss" whose gradient w.r.t. out is `weights`.
inline double weighted_sum(const Tensor& out, const Tensor& weights) {
  const auto a = out.to_floats();
  const auto b = weights.to_floats();
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace ulysses::testing
