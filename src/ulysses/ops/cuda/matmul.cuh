// Matrix products through cuBLASLt with descriptors and the heuristic's algorithm cached per
// shape, type and alignment (in the context's CudaResources).
#pragma once

#include <library_types.h>

#include <cstdint>

#include "ulysses/core/context.h"
#include "ulysses/core/dtype.h"

namespace ulysses::ops::cuda {

cudaDataType cuda_type(DType dtype);

// Column-major (cuBLAS convention): D[m, n] = alpha * op(A) op(B) + beta * D (+ bias[m] on every
// column when bias is not null; bias has D's type). With c not null the added term is
// beta * C for a separate C of D's type and layout (c may equal d), not beta * D. op(A) is [m, k]:
// A is stored [k, m] with leading dimension lda when trans_a, else [m, k]. op(B) is [k, n]: B
// stored [n, k] when trans_b, else [k, n]. A and B share a type; D may be f32 while A and B are
// bf16. fp32 accumulation (CUBLAS_COMPUTE_32F, no TF32). Runs on the context's stream.
void gemm(const Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
          std::int64_t k, const void* a, std::int64_t lda, const void* b, std::int64_t ldb,
          DType ab_type, void* d, std::int64_t ldd, DType d_type, float alpha, float beta,
          const void* bias = nullptr, const void* c = nullptr);

}  // namespace ulysses::ops::cuda
