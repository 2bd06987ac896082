// CUDA kernels of ops/embedding.h (validated by ops/embedding.cc).
// table/out/dout: f32 or bf16 (table and out the same); dtable: f32; ids: i32 on the device.
#pragma once

#include <cstdint>
#include <span>

#include "ulysses/core/context.h"
#include "ulysses/core/tensor.h"

namespace ulysses::ops::cuda {

// ids: [T] i32 on the device, already checked against the vocabulary by the caller.
void embedding_forward(const Context& ctx, const Tensor& ids, const Tensor& table, Tensor out);
// Deterministic: the positions of each id are summed in position order by one thread per
// column (the grouping by id is built on the host from ids_host, the ids' values, and uploaded
// through the context's staging ring: no host wait).
void embedding_backward(const Context& ctx, std::span<const std::int32_t> ids_host,
                        const Tensor& dout, Tensor dtable);

}  // namespace ulysses::ops::cuda
