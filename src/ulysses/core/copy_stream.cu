// CUDA build of CopyStream (see copy_stream.h).
#include <cuda_runtime.h>

#include "ulysses/core/copy_stream.h"
#include "ulysses/core/cuda_resources.h"
#include "ulysses/core/device_memory.h"

namespace ulysses {

struct CopyStreamImpl {
  int device_index = 0;
  cudaStream_t stream = nullptr;  // non-blocking: does not order with the legacy default stream
  cudaStream_t compute = nullptr;
  ~CopyStreamImpl() {
    if (!stream) return;
    cudaSetDevice(device_index);
    cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
  }
};

struct CopyMarkImpl {
  int device_index = 0;
  cudaEvent_t event = nullptr;
  ~CopyMarkImpl() {
    if (event) cudaEventDestroy(event);
  }
};

namespace {

std::shared_ptr<CopyMarkImpl> record_on(int device_index, cudaStream_t stream) {
  auto mark = std::make_shared<CopyMarkImpl>();
  mark->device_index = device_index;
  UL_CUDA_CHECK(cudaSetDevice(device_index));  // events belong to the current device
  UL_CUDA_CHECK(cudaEventCreateWithFlags(&mark->event, cudaEventDisableTiming));
  UL_CUDA_CHECK(cudaEventRecord(mark->event, stream));
  return mark;
}

}  // namespace

CopyStream::CopyStream(const Context& ctx) {
  if (!ctx.device.is_cuda()) return;
  const CudaResources& cuda = cuda_resources(ctx);
  auto impl = std::make_shared<CopyStreamImpl>();
  impl->device_index = cuda.device_index;
  impl->compute = cuda.stream;
  UL_CUDA_CHECK(cudaSetDevice(cuda.device_index));
  UL_CUDA_CHECK(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  impl_ = std::move(impl);
}

CopyStream::~CopyStream() = default;

void CopyStream::wait_for_compute() {
  if (!impl_) return;
  const auto mark = record_on(impl_->device_index, impl_->compute);
  UL_CUDA_CHECK(cudaStreamWaitEvent(impl_->stream, mark->event, 0));
}

void CopyStream::copy(Tensor dst, const Tensor& src) {
  UL_CHECK(src.shape() == dst.shape() && src.dtype() == dst.dtype(),
           "CopyStream::copy: ", shape_str(src.shape()), " ", dtype_name(src.dtype()), " into ",
           shape_str(dst.shape()), " ", dtype_name(dst.dtype()));
  if (!impl_ || (dst.device().is_cpu() && src.device().is_cpu())) return dst.copy_from(src);
  if (dst.nbytes() == 0) return;
  UL_CUDA_CHECK(cudaSetDevice(impl_->device_index));
  UL_CUDA_CHECK(
      cudaMemcpyAsync(dst.raw(), src.raw(), dst.nbytes(), cudaMemcpyDefault, impl_->stream));
}

CopyMark CopyStream::record() {
  CopyMark mark;
  if (impl_) mark.impl_ = record_on(impl_->device_index, impl_->stream);
  return mark;
}

void CopyStream::compute_waits(const CopyMark& mark) {
  if (!impl_ || !mark.impl_) return;
  UL_CUDA_CHECK(cudaStreamWaitEvent(impl_->compute, mark.impl_->event, 0));
}

void CopyStream::host_waits(const CopyMark& mark) {
  if (!mark.impl_) return;
  UL_CUDA_CHECK(cudaEventSynchronize(mark.impl_->event));
  count_host_synchronization(mark.impl_->device_index);
}

}  // namespace ulysses
