// CPU fp32 kernels of the SwiGLU gate (no argument validation: see ops/swiglu.h).
#pragma once

#include <cstdint>

namespace ulysses::ops::cpu {

// gate, up: [n] -> out: [n] = silu(gate) * up written (out may equal gate or up).
void swiglu_forward(const float* gate, const float* up, float* out, std::int64_t n);

// gate, up, dout: [n] -> dgate: [n] += dout * up * silu'(gate), dup: [n] += dout * silu(gate)
// (= when overwrite: dgate and dup are not read).
void swiglu_backward(const float* gate, const float* up, const float* dout, float* dgate,
                     float* dup, std::int64_t n, bool overwrite = false);

}  // namespace ulysses::ops::cpu
