#include "ulysses/ops/embedding.h"

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/embedding.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/embedding.h"
#endif

namespace ulysses::ops {
namespace {

// ids: [T] i32; throws a user-facing error for the first id outside [0, V). Returns the values
// checked (on the host: the given copy, the CPU tensor, or a copy read back into `storage`).
std::span<const std::int32_t> check_ids_in_vocabulary(const Indices& ids, std::int64_t vocab_size,
                                                      std::vector<std::int32_t>& storage) {
  const std::span<const std::int32_t> host = host_values(ids, storage, "embedding: ids");
  const std::int32_t* id = host.data();
  for (std::size_t t = 0; t < host.size(); ++t) {
    if (id[t] < 0 || id[t] >= vocab_size) {
      UL_FAIL("token id ", id[t], " at position ", t, " is outside the vocabulary (vocab_size ",
              vocab_size, ")");
    }
  }
  return host;
}

}  // namespace

void embedding_forward(const Context& ctx, const Indices& ids_arg, const Tensor& table,
                       Tensor out) {
  ProfileScope scope(ctx, "embedding.fwd");
  const Tensor& ids = ids_arg.tensor;
  std::vector<std::int32_t> storage;
  check_dtype(ids, DType::i32, "embedding_forward: ids");
  UL_CHECK(ids.ndim() == 1, "embedding_forward: ids has shape ", shape_str(ids.shape()),
           ", expected [T]");
  check_compute_dtype(ctx, table, "embedding_forward: table");
  UL_CHECK(table.ndim() == 2, "embedding_forward: table has shape ", shape_str(table.shape()),
           ", expected [V, C]");
  const std::int64_t T = ids.dim(0);
  const std::int64_t V = table.dim(0);
  const std::int64_t C = table.dim(1);
  check_same_dtype(out, table, "embedding_forward: out", "table");
  check_shape(out, {T, C}, "embedding_forward: out");
  check_on_context_device(ctx, ids, "embedding_forward: ids");
  check_on_context_device(ctx, table, "embedding_forward: table");
  check_on_context_device(ctx, out, "embedding_forward: out");

  check_ids_in_vocabulary(ids_arg, V, storage);
  if (ctx.device.is_cpu()) {
    cpu::embedding_forward(ids.data<std::int32_t>(), table.data<float>(), out.data<float>(), T, C);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::embedding_forward(ctx, ids, table, out);
#endif
  } else {
    UL_FAIL("embedding_forward: no kernel for device ", ctx.device.str());
  }
}

void embedding_backward(const Context& ctx, const Indices& ids_arg, const Tensor& dout,
                        Tensor dtable) {
  ProfileScope scope(ctx, "embedding.bwd");
  const Tensor& ids = ids_arg.tensor;
  std::vector<std::int32_t> storage;
  check_dtype(ids, DType::i32, "embedding_backward: ids");
  UL_CHECK(ids.ndim() == 1, "embedding_backward: ids has shape ", shape_str(ids.shape()),
           ", expected [T]");
  check_dtype(dtable, DType::f32, "embedding_backward: dtable");
  UL_CHECK(dtable.ndim() == 2, "embedding_backward: dtable has shape ", shape_str(dtable.shape()),
           ", expected [V, C]");
  const std::int64_t T = ids.dim(0);
  const std::int64_t V = dtable.dim(0);
  const std::int64_t C = dtable.dim(1);
  check_compute_dtype(ctx, dout, "embedding_backward: dout");
  check_shape(dout, {T, C}, "embedding_backward: dout");
  check_on_context_device(ctx, ids, "embedding_backward: ids");
  check_on_context_device(ctx, dout, "embedding_backward: dout");
  check_on_context_device(ctx, dtable, "embedding_backward: dtable");

  [[maybe_unused]] const std::span<const std::int32_t> ids_host =
      check_ids_in_vocabulary(ids_arg, V, storage);
  if (ctx.device.is_cpu()) {
    cpu::embedding_backward(ids.data<std::int32_t>(), dout.data<float>(), dtable.data<float>(), T,
                            C);
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::embedding_backward(ctx, ids_host, dout, dtable);
#endif
  } else {
    UL_FAIL("embedding_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
