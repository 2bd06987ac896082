#include "ulysses/parallel/activation_offload.h"

#include "ulysses/core/error.h"

namespace ulysses::parallel {

#if ULYSSES_HAS_CUDA
std::unique_ptr<ActivationOffload> make_cuda_activation_offload(const Context& ctx,
                                                                std::int64_t offload_layers);
#endif

std::unique_ptr<ActivationOffload> make_activation_offload(const Context& ctx,
                                                           std::int64_t offload_layers) {
  UL_CHECK(offload_layers >= 0, "activation offload: negative layer count ", offload_layers);
  if (ctx.device.is_cpu() || offload_layers == 0) return nullptr;
#if ULYSSES_HAS_CUDA
  return make_cuda_activation_offload(ctx, offload_layers);
#else
  UL_FAIL("--offload-activations needs a CUDA build (this build has no CUDA support)");
#endif
}

}  // namespace ulysses::parallel
