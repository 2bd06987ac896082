// CUDA backend resources shared by the ops of one CUDA context (CUDA builds only: include it
// from .cu files or code guarded by ULYSSES_HAS_CUDA). Created by make_cuda_context.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <mutex>

#include "ulysses/core/context.h"
#include "ulysses/core/error.h"

// Throws ulysses::Error naming the failed call when a CUDA runtime call does not succeed.
#define UL_CUDA_CHECK(expr)                                                               \
  do {                                                                                    \
    const cudaError_t ul_cuda_status = (expr);                                            \
    if (ul_cuda_status != cudaSuccess)                                                    \
      UL_FAIL("CUDA error '", cudaGetErrorString(ul_cuda_status), "' in ", #expr, " at ", \
              __FILE__, ":", __LINE__);                                                   \
  } while (0)

// After every kernel launch: launch-configuration errors and earlier asynchronous faults.
#define UL_CUDA_CHECK_LAUNCH() UL_CUDA_CHECK(cudaGetLastError())

#define UL_CUBLAS_CHECK(expr)                                                                   \
  do {                                                                                          \
    const cublasStatus_t ul_cublas_status = (expr);                                             \
    if (ul_cublas_status != CUBLAS_STATUS_SUCCESS)                                              \
      UL_FAIL("cuBLASLt error ", static_cast<int>(ul_cublas_status), " (",                      \
              cublasLtGetStatusString(ul_cublas_status), ") in ", #expr, " at ", __FILE__, ":", \
              __LINE__);                                                                        \
  } while (0)

namespace ulysses {

struct MatmulPlanCache;  // defined by ops/cuda/matmul.cu
struct UploadRing;       // defined by core/host_upload.cu
namespace ops::cuda {
struct CudnnAttentionCache;  // defined by ops/cuda/cudnn_attention.cu
}

struct CudaResources {
  int device_index = 0;
  cudaStream_t stream = nullptr;  // compute stream (blocking: orders with cudaMemcpy)
  // Communication stream (non-blocking) for collectives (comm/nccl_communicator.h): ordered
  // with the compute stream by events around every collective.
  cudaStream_t comm_stream = nullptr;
  cublasLtHandle_t cublaslt = nullptr;
  void* workspace = nullptr;  // cuBLASLt workspace
  std::size_t workspace_bytes = 0;
  int multiprocessors = 0;
  std::size_t max_shared_memory_per_block = 0;  // opt-in limit

  // Matmul descriptors and the chosen algorithm per shape (ops/cuda/matmul.cu).
  std::mutex matmul_mutex;
  std::shared_ptr<MatmulPlanCache> matmul_plans;
  // cuDNN handle and attention plans per shape (ops/cuda/cudnn_attention.cu).
  std::mutex attention_mutex;
  std::shared_ptr<ops::cuda::CudnnAttentionCache> attention_plans;
  // Page-locked staging of upload_ints (core/host_upload.h).
  std::mutex upload_mutex;
  std::shared_ptr<UploadRing> uploads;

  CudaResources() = default;
  CudaResources(const CudaResources&) = delete;
  CudaResources& operator=(const CudaResources&) = delete;
  ~CudaResources();
};

// The context's CUDA resources; Error when the context is not a CUDA context.
CudaResources& cuda_resources(const Context& ctx);

}  // namespace ulysses
