// CUDA kernels of ops/rope.h (validated by ops/rope.cc).
// x, out, dout, dx: one dtype, f32 or bf16; the cos/sin tables: f32 on the device.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

// Head dimensions up to 2 * kMaxRopeHalf have a device-built table.
inline constexpr std::int64_t kMaxRopeHalf = 256;
// cos, sin: [T, D/2] f32 written from positions [T] i32 (on the device): angle = position *
// inv_freq[i] in double, cos/sin in double, rounded to f32 (as the CPU table; CUDA's double
// cos/sin may differ from the host's by an ulp of double, so the f32 values agree to rounding
// and almost always bit for bit). inv_freq has D/2 <= kMaxRopeHalf values.
void rope_table(const Context& ctx, const std::vector<double>& inv_freq, const Tensor& positions,
                Tensor cos, Tensor sin);

// out may be x (in place).
void rope_forward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& x,
                  Tensor out);
void rope_backward(const Context& ctx, const Tensor& cos, const Tensor& sin, const Tensor& dout,
                   Tensor dx);

}  // namespace ulysses::ops::cuda
