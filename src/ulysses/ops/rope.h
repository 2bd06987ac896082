// Rotary position embedding in Hugging Face's convention (rotate_half: the first and second
// halves of each head form the pairs), with the rope types we can compute exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops {

// The rope types we compute, parsed from their Hugging Face names once (parse_rope_type, at
// config validation): nothing compares names in a step.
enum class RopeType {
  default_,  // "default": inv_freq[i] = theta^(-2i / D)
  linear,    // "linear": default / factor
  llama3,    // "llama3": long wavelengths / factor, short kept, a smooth band between
};
// The Hugging Face name ("default", "linear", "llama3").
const char* rope_type_name(RopeType type);
// The type of a Hugging Face rope_type name; Error "rope type '<name>' is not supported
// (supported: default, linear, llama3)" prefixed by `where` (e.g. the file and key) otherwise.
RopeType parse_rope_type(const std::string& name, const std::string& where);

struct RopeConfig {
  double theta = 10000.0;
  RopeType type = RopeType::default_;
  double factor = 1.0;                                   // linear, llama3
  double low_freq_factor = 1.0;                          // llama3
  double high_freq_factor = 4.0;                         // llama3
  std::int64_t original_max_position_embeddings = 8192;  // llama3
};

// Inverse frequencies [head_dim / 2] as Transformers computes them for this rope type.
// Throws Error for an odd head_dim or out-of-range factors.
std::vector<double> rope_inv_freq(const RopeConfig& config, std::int64_t head_dim);

// cos/sin of position * inv_freq for every token: both [T, head_dim / 2] f32.
struct RopeTable {
  Tensor cos;
  Tensor sin;
};
// positions: [T] i32 on the context's device (positions restart at 0 for every packed
// document); the table is built there: on the CPU in double, on CUDA by a kernel (in double,
// on the stream: no host synchronization, no copy; the f32 values agree with the CPU's to
// rounding, almost always bit for bit).
RopeTable rope_table(const Context& ctx, const RopeConfig& config, std::int64_t head_dim,
                     const Tensor& positions);

// x: [T, H, D] -> out: [T, H, D] written; out may be x itself (in place).
// out[..., i] = x[i] cos - x[i + D/2] sin;  out[..., i + D/2] = x[i + D/2] cos + x[i] sin.
void rope_forward(const Context& ctx, const RopeTable& table, const Tensor& x, Tensor out);

// dx: [T, H, D] += R^T dout (the inverse rotation); dx must not alias dout.
// Dtypes: x/out and dout/dx f32 on CPU; f32 or bf16 on CUDA (each pair alike). The table is f32
// on the op's device (rope_table builds it there).
void rope_backward(const Context& ctx, const RopeTable& table, const Tensor& dout, Tensor dx);

}  // namespace ulysses::ops
