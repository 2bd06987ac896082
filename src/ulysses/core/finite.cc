#include "ulysses/core/finite.h"

#include <cmath>

#include "ulysses/core/error.h"

namespace ulysses {

std::int64_t first_non_finite(const Tensor& t) {
  if (!t.defined() || (t.dtype() != DType::f32 && t.dtype() != DType::bf16)) return -1;
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
  const std::int64_t n = host.numel();
  if (host.dtype() == DType::f32) {
    const float* x = host.data<float>();
    for (std::int64_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) return i;
  } else {
    const bf16* x = host.data<bf16>();
    for (std::int64_t i = 0; i < n; ++i)
      if (!std::isfinite(bf16_to_float(x[i]))) return i;
  }
  return -1;
}

void check_finite(const Tensor& t, const std::string& where, const std::string& name,
                  const std::string& advice) {
  const std::int64_t i = first_non_finite(t);
  if (i < 0) return;
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
  const float value =
      host.dtype() == DType::f32 ? host.data<float>()[i] : bf16_to_float(host.data<bf16>()[i]);
  UL_FAIL(where, ": tensor '", name, "' holds a non-finite value (", value, " at element ", i, ")",
          advice.empty() ? "" : "; ", advice);
}

}  // namespace ulysses
