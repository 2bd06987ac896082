// Counter-based normal draws: value i of a stream is a pure function of (key, i), so any
// element range of a tensor can be drawn alone, in parallel, on the CPU or on a GPU, with the
// SAME f32 result on both (bit-identical).
//
// How the equality is kept: the integer hash is plain 64-bit arithmetic; the Box-Muller
// transform is computed in double with our own log and cos/sin polynomials written only with
// +, -, *, / and explicit fma (each correctly rounded by IEEE 754 on x86-64 and on CUDA
// devices), never the libraries' transcendental functions (which differ in the last bit between
// glibc and CUDA), and with every multiply-add that a compiler could contract already an fma
// (nvcc contracts a * b + c by default, GCC in ISO C++ mode does not). Only the final double ->
// float rounding and the scaling by std (f32 multiply) follow. Compiled as host code by the C++
// compiler and as host and device code by nvcc (include it from .cc and .cu files alike).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define UL_HOST_DEVICE __host__ __device__
#else
#define UL_HOST_DEVICE
#endif

namespace ulysses::counter_rng {

// SplitMix64's output function (a bijective 64-bit mixer).
UL_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The key of stream `stream` (for example a parameter's name hash) under `seed`.
UL_HOST_DEVICE inline std::uint64_t key(std::uint64_t seed, std::uint64_t stream) {
  return mix64(mix64(seed + 0x9e3779b97f4a7c15ull) ^ (stream + 0x632be59bd9b4e019ull));
}

// 64 random bits number `counter` of the stream (SplitMix64 seeded with the key).
UL_HOST_DEVICE inline std::uint64_t bits(std::uint64_t k, std::uint64_t counter) {
  return mix64(k + (counter + 1) * 0x9e3779b97f4a7c15ull);
}

UL_HOST_DEVICE inline std::uint64_t double_bits(double x) {
#ifdef __CUDA_ARCH__
  return static_cast<std::uint64_t>(__double_as_longlong(x));
#else
  std::uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}
UL_HOST_DEVICE inline double bits_double(std::uint64_t u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// ln(u) for u in [2^-53, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s),
// s = (m - 1) / (m + 1), |s| < 0.172, by its series to s^25 (error far below f32's).
UL_HOST_DEVICE inline double log_unit(double u) {
  const std::uint64_t b = double_bits(u);
  int e = static_cast<int>((b >> 52) & 0x7ff) - 1023;
  double m = bits_double((b & 0x000fffffffffffffull) | 0x3ff0000000000000ull);  // [1, 2)
  if (m > 0x1.6a09e667f3bcdp+0) {  // sqrt(2): halve (exact)
    m = m * 0.5;
    e += 1;
  }
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  double p = 0x1.47ae147ae147bp-5;  // 1/25
  p = fma(p, s2, 0x1.642c8590b2164p-5);
  p = fma(p, s2, 0x1.8618618618618p-5);
  p = fma(p, s2, 0x1.af286bca1af28p-5);
  p = fma(p, s2, 0x1.e1e1e1e1e1e1ep-5);
  p = fma(p, s2, 0x1.1111111111111p-4);
  p = fma(p, s2, 0x1.3b13b13b13b14p-4);
  p = fma(p, s2, 0x1.745d1745d1746p-4);
  p = fma(p, s2, 0x1.c71c71c71c71cp-4);
  p = fma(p, s2, 0x1.2492492492492p-3);
  p = fma(p, s2, 0x1.999999999999ap-3);
  p = fma(p, s2, 0x1.5555555555555p-2);
  p = fma(p, s2, 1.0);
  const double ln_m = (2.0 * s) * p;
  return fma(static_cast<double>(e), 0x1.62e42fefa39efp-1, ln_m);  // + e ln 2
}

// cos(x) and sin(x) for x in [0, pi/2] by their Taylor series to x^24 / x^25.
UL_HOST_DEVICE inline double cos_quarter(double x) {
  const double x2 = x * x;
  double p = 0x1.f2cf01972f578p-80;
  p = fma(p, x2, -0x1.0ce396db7f853p-70);
  p = fma(p, x2, 0x1.e542ba4020225p-62);
  p = fma(p, x2, -0x1.6827863b97d97p-53);
  p = fma(p, x2, 0x1.ae7f3e733b81fp-45);
  p = fma(p, x2, -0x1.93974a8c07c9dp-37);
  p = fma(p, x2, 0x1.1eed8eff8d898p-29);
  p = fma(p, x2, -0x1.27e4fb7789f5cp-22);
  p = fma(p, x2, 0x1.a01a01a01a01ap-16);
  p = fma(p, x2, -0x1.6c16c16c16c17p-10);
  p = fma(p, x2, 0x1.5555555555555p-5);
  p = fma(p, x2, -0x1.0000000000000p-1);
  return fma(p, x2, 1.0);
}
UL_HOST_DEVICE inline double sin_quarter(double x) {
  const double x2 = x * x;
  double p = 0x1.3f3ccdd165fa9p-84;
  p = fma(p, x2, -0x1.761b41316381ap-75);
  p = fma(p, x2, 0x1.71b8ef6dcf572p-66);
  p = fma(p, x2, -0x1.2f49b46814157p-57);
  p = fma(p, x2, 0x1.952c77030ad4ap-49);
  p = fma(p, x2, -0x1.ae7f3e733b81fp-41);
  p = fma(p, x2, 0x1.6124613a86d09p-33);
  p = fma(p, x2, -0x1.ae64567f544e4p-26);
  p = fma(p, x2, 0x1.71de3a556c734p-19);
  p = fma(p, x2, -0x1.a01a01a01a01ap-13);
  p = fma(p, x2, 0x1.1111111111111p-7);
  p = fma(p, x2, -0x1.5555555555555p-3);
  p = fma(p, x2, 1.0);
  return x * p;
}

// Standard normal number i of the stream (Box-Muller: the cosine branch of draws 2i, 2i + 1).
UL_HOST_DEVICE inline float normal(std::uint64_t k, std::uint64_t i) {
  const std::uint64_t a = bits(k, 2 * i) >> 11, b = bits(k, 2 * i + 1) >> 11;  // 53 bits each
  const double u1 = static_cast<double>(a + 1) * 0x1.0p-53;                    // (0, 1]
  const double radius = sqrt(-2.0 * log_unit(u1));
  // cos(2 pi b / 2^53): quadrant from the top 2 bits, the rest a fraction of a quarter turn.
  const std::uint64_t quadrant = b >> 51;
  const double x = static_cast<double>(b & ((std::uint64_t{1} << 51) - 1)) * 0x1.0p-51 *
                   0x1.921fb54442d18p+0;  // [0, pi/2)
  double c = 0;
  switch (quadrant) {
    case 0: c = cos_quarter(x); break;
    case 1: c = -sin_quarter(x); break;
    case 2: c = -cos_quarter(x); break;
    default: c = sin_quarter(x); break;
  }
  return static_cast<float>(radius * c);
}

}  // namespace ulysses::counter_rng
