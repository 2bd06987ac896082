#include "ulysses/ops/indices.h"

#include "ulysses/core/error.h"

namespace ulysses::ops {

std::span<const std::int32_t> host_values(const Indices& indices,
                                          std::vector<std::int32_t>& storage, const char* name) {
  const Tensor& t = indices.tensor;
  UL_CHECK(t.defined() && t.dtype() == DType::i32, name, " must be an i32 tensor");
  const auto n = static_cast<std::size_t>(t.numel());
  if (!indices.host.empty() || n == 0) {
    UL_CHECK(indices.host.size() == n, name, ": the host copy has ", indices.host.size(),
             " values for a tensor of ", n);
    if (t.device().is_cpu()) {
      const std::int32_t* v = t.data<std::int32_t>();
      for (std::size_t i = 0; i < n; ++i)
        UL_CHECK(indices.host[i] == v[i], name, ": the host copy differs from the tensor at ", i,
                 " (", indices.host[i], " vs ", v[i], ")");
    }
    return indices.host;
  }
  if (t.device().is_cpu()) return {t.data<std::int32_t>(), n};
  const Tensor back = t.to(Device::cpu());  // synchronizes
  storage.assign(back.data<std::int32_t>(), back.data<std::int32_t>() + n);
  return storage;
}

}  // namespace ulysses::ops
