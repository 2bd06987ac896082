#include <algorithm>
#include <array>
#include <map>

#include "ulysses/core/cuda_resources.h"
#include "ulysses/ops/cuda/matmul.cuh"

namespace ulysses {

namespace {
// Descriptors and algorithm of one product configuration.
struct MatmulPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  MatmulPlan() = default;
  MatmulPlan(const MatmulPlan&) = delete;
  MatmulPlan& operator=(const MatmulPlan&) = delete;
  ~MatmulPlan() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
  }
};
using PlanKey = std::array<std::int64_t, 14>;
}  // namespace

struct MatmulPlanCache {
  std::map<PlanKey, std::unique_ptr<MatmulPlan>> plans;
};

namespace ops::cuda {

namespace {

std::int64_t alignment(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  std::int64_t align = 256;
  while (align > 1 && address % static_cast<std::uintptr_t>(align) != 0) align /= 2;
  return align;
}

}  // namespace

cudaDataType cuda_type(DType dtype) {
  switch (dtype) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    default: UL_FAIL("matmul: dtype ", dtype_name(dtype), " is not supported");
  }
}

void gemm(const Context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
          std::int64_t k, const void* a, std::int64_t lda, const void* b, std::int64_t ldb,
          DType ab_type, void* d, std::int64_t ldd, DType d_type, float alpha, float beta,
          const void* bias, const void* c) {
  if (m == 0 || n == 0) return;
  if (c == nullptr) c = d;
  if (k == 0 && beta == 1.0f && !bias && c == d) return;  // nothing to add
  CudaResources& r = cuda_resources(ctx);
  UL_CHECK(k > 0, "matmul with an empty inner dimension is not supported");
  const PlanKey key = {trans_a,
                       trans_b,
                       m,
                       n,
                       k,
                       lda,
                       ldb,
                       ldd,
                       static_cast<std::int64_t>(ab_type),
                       static_cast<std::int64_t>(d_type),
                       bias != nullptr,
                       std::min(alignment(a), alignment(b)),
                       std::min({alignment(d), alignment(c), bias ? alignment(bias) : 256}),
                       beta != 0.0f};
  std::lock_guard<std::mutex> lock(r.matmul_mutex);
  if (!r.matmul_plans) r.matmul_plans = std::make_shared<MatmulPlanCache>();
  auto& slot = r.matmul_plans->plans[key];
  if (!slot) {
    auto plan = std::make_unique<MatmulPlan>();
    const cudaDataType ab = cuda_type(ab_type), dt = cuda_type(d_type);
    UL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    UL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a,
                                                   sizeof op_a));
    UL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b,
                                                   sizeof op_b));
    if (bias) {
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      UL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                     &epilogue, sizeof epilogue));
      UL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
          plan->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &dt, sizeof dt));
      UL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                     &bias, sizeof bias));
    }
    const auto rows = [](bool trans, std::int64_t x, std::int64_t y) {
      return static_cast<std::uint64_t>(trans ? y : x);
    };
    UL_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&plan->a, ab, rows(trans_a, m, k), rows(trans_a, k, m), lda));
    UL_CUBLAS_CHECK(
        cublasLtMatrixLayoutCreate(&plan->b, ab, rows(trans_b, k, n), rows(trans_b, n, k), ldb));
    UL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->d, dt, static_cast<std::uint64_t>(m),
                                               static_cast<std::uint64_t>(n), ldd));
    cublasLtMatmulPreference_t preference = nullptr;
    UL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
    const std::uint64_t workspace = r.workspace_bytes;
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                         &workspace, sizeof workspace);
    const auto set_alignment = [&](cublasLtMatmulPreferenceAttributes_t attribute,
                                   std::int64_t align) {
      const auto value = static_cast<std::uint32_t>(align);
      cublasLtMatmulPreferenceSetAttribute(preference, attribute, &value, sizeof value);
    };
    set_alignment(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key[11]);
    set_alignment(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key[11]);
    set_alignment(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key[12]);
    set_alignment(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key[12]);
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        r.cublaslt, plan->desc, plan->a, plan->b, plan->d, plan->d, preference, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(preference);
    UL_CHECK(status == CUBLAS_STATUS_SUCCESS && found > 0, "cuBLASLt found no algorithm for a ", m,
             "x", n, "x", k, " product (", dtype_name(ab_type), " -> ", dtype_name(d_type),
             "; status ", static_cast<int>(status), ")");
    plan->algo = result.algo;
    slot = std::move(plan);
  }
  MatmulPlan& plan = *slot;
  if (bias) {
    UL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &bias, sizeof bias));
  }
  UL_CUBLAS_CHECK(cublasLtMatmul(r.cublaslt, plan.desc, &alpha, a, plan.a, b, plan.b, &beta, c,
                                 plan.d, d, plan.d, &plan.algo, r.workspace, r.workspace_bytes,
                                 r.stream));
}

}  // namespace ops::cuda
}  // namespace ulysses
