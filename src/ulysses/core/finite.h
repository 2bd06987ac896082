// Finiteness checks of tensor contents: nothing non-finite is loaded as a weight or written to a
// checkpoint or a model (see train/checkpoint.h and io/hf_checkpoint.h).
#pragma once

#include <cstdint>
#include <string>

#include "ulysses/core/tensor.h"

namespace ulysses {

// Index of the first NaN or infinite element of `t` (f32 or bf16; any device: a CUDA tensor is
// copied to the host), or -1 when every element is finite. Integer tensors: always -1.
std::int64_t first_non_finite(const Tensor& t);

// Throws Error "<where>: tensor '<name>' holds a non-finite value (<value> at element <i>)..."
// followed by `advice`, when `t` holds a NaN or an infinity.
void check_finite(const Tensor& t, const std::string& where, const std::string& name,
                  const std::string& advice);

}  // namespace ulysses
