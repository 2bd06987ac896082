// An i32 index tensor an op reads (token ids, labels, document boundaries) together with, when
// the caller has them, the same values on the host.
//
// Ops that check the values or plan by them on the host read the host copy, so a CUDA step
// never waits to read them back (data::SequenceShard keeps the host copies of its arrays for
// this). Without one they read the tensor: directly on a CPU context, through a copy back on
// CUDA (a host synchronization). The host copy is the caller's promise: against a CPU tensor
// it is checked (Error naming the argument), on a device it is trusted.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ulysses/core/tensor.h"

namespace ulysses::ops {

struct Indices {
  // Implicit, so a plain tensor stays a valid argument (its values read back when needed).
  Indices(const Tensor& tensor) : tensor(tensor) {}  // NOLINT(google-explicit-constructor)
  // An empty host copy means "not given" (data::SequenceShard's copies are empty in a
  // hand-made shard); a std::vector converts to the span.
  Indices(const Tensor& tensor, std::span<const std::int32_t> host) : tensor(tensor), host(host) {}

  Tensor tensor;
  std::span<const std::int32_t> host;  // empty: not given
};

// The values of `indices` on the host: the given host copy (checked against a CPU tensor: same
// count, same values), else the CPU tensor's own data, else a copy read back into `storage`.
// `name` prefixes the error messages (e.g. "attention: cu_seqlens").
std::span<const std::int32_t> host_values(const Indices& indices,
                                          std::vector<std::int32_t>& storage, const char* name);

}  // namespace ulysses::ops
