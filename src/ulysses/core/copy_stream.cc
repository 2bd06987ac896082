// Host-only build of CopyStream (no CUDA compiler at configure time): every copy is synchronous.
#ifndef ULYSSES_HAS_CUDA

#include "ulysses/core/copy_stream.h"

namespace ulysses {

struct CopyStreamImpl {};
struct CopyMarkImpl {};

CopyStream::CopyStream(const Context&) {}
CopyStream::~CopyStream() = default;
void CopyStream::wait_for_compute() {}
void CopyStream::copy(Tensor dst, const Tensor& src) { dst.copy_from(src); }
CopyMark CopyStream::record() { return {}; }
void CopyStream::compute_waits(const CopyMark&) {}
void CopyStream::host_waits(const CopyMark&) {}

}  // namespace ulysses

#endif
