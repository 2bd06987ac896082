// CUDA contexts: stream, cuBLASLt handle and workspace.
#include "ulysses/core/cuda_context.h"
#include "ulysses/core/cuda_resources.h"
#include "ulysses/core/device_memory.h"

namespace ulysses {

namespace {
constexpr std::size_t kWorkspaceBytes = std::size_t{64} << 20;
}  // namespace

CudaResources::~CudaResources() {
  // Errors are ignored: this may run while the process tears the CUDA runtime down.
  matmul_plans.reset();
  attention_plans.reset();
  uploads.reset();  // waits for its copies, so before the stream goes
  if (cublaslt) cublasLtDestroy(cublaslt);
  if (workspace) cudaFree(workspace);
  if (stream) cudaStreamDestroy(stream);
  if (comm_stream) cudaStreamDestroy(comm_stream);
}

CudaResources& cuda_resources(const Context& ctx) {
  UL_CHECK(ctx.device.is_cuda() && ctx.cuda, "context for ", ctx.device.str(),
           " has no CUDA resources; create CUDA contexts with make_cuda_context");
  return *ctx.cuda;
}

Context make_cuda_context(int device_index) {
  const int count = cuda_device_count();
  UL_CHECK(count > 0, "a CUDA context was requested but no CUDA device is visible");
  UL_CHECK(device_index >= 0 && device_index < count, "CUDA device ", device_index,
           " requested but only ", count, " device(s) are visible");
  UL_CUDA_CHECK(cudaSetDevice(device_index));
  auto resources = std::make_shared<CudaResources>();
  resources->device_index = device_index;
  UL_CUDA_CHECK(cudaStreamCreate(&resources->stream));
  UL_CUDA_CHECK(cudaStreamCreateWithFlags(&resources->comm_stream, cudaStreamNonBlocking));
  UL_CUBLAS_CHECK(cublasLtCreate(&resources->cublaslt));
  UL_CUDA_CHECK(cudaMalloc(&resources->workspace, kWorkspaceBytes));
  resources->workspace_bytes = kWorkspaceBytes;
  cudaDeviceProp props{};
  UL_CUDA_CHECK(cudaGetDeviceProperties(&props, device_index));
  resources->multiprocessors = props.multiProcessorCount;
  resources->max_shared_memory_per_block = props.sharedMemPerBlockOptin;

  Context ctx;
  ctx.device = Device::cuda(device_index);
  ctx.compute_dtype = DType::bf16;
  ctx.cuda = std::move(resources);
  return ctx;
}

void synchronize(const Context& ctx) {
  if (!ctx.device.is_cuda()) return;
  CudaResources& cuda = cuda_resources(ctx);
  UL_CUDA_CHECK(cudaStreamSynchronize(cuda.stream));
  count_host_synchronization(cuda.device_index);
}

}  // namespace ulysses
