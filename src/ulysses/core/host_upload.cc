// Host-only build of core/host_upload.h (no CUDA compiler at configure time).
#ifndef ULYSSES_HAS_CUDA

#include "ulysses/core/host_upload.h"

#include <vector>

namespace ulysses {

Tensor upload_ints(const Context& ctx, std::span<const std::int32_t> values) {
  UL_CHECK(ctx.device.is_cpu(), "upload_ints: this build has no CUDA support");
  return Tensor::from_ints(std::vector<std::int32_t>(values.begin(), values.end()),
                           {static_cast<std::int64_t>(values.size())});
}

std::size_t upload_ring_bytes(const Context&) { return 0; }

}  // namespace ulysses

#endif
