// cuDNN's backend graph API (see cudnn_graph.h).
#include <dlfcn.h>

#include <cstdlib>
#include <type_traits>

#include "ulysses/ops/cuda/cudnn_graph.h"

#include "ulysses/core/process_env.h"

namespace ulysses::ops::cuda::cudnn {

namespace {

// The fused engine needs the backend graph API of cuDNN 9 with ragged (THD) GQA (9.6+).
constexpr int kMinimumVersion = 90600;

CudnnLibrary load_cudnn() {
  CudnnLibrary lib;
  const std::string path = process_env::cudnn_library();
  lib.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib.handle) {
    const char* why = dlerror();
    lib.error = "could not load " + path + " (" + (why ? why : "unknown error") + ")";
    return lib;
  }
  bool missing = false;
  auto load = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib.handle, name));
    if (!fn) {
      lib.error = path + " has no symbol " + name;
      missing = true;
    }
  };
  load(lib.get_version, "cudnnGetVersion");
  load(lib.error_string, "cudnnGetErrorString");
  load(lib.last_error, "cudnnGetLastErrorString");
  load(lib.create, "cudnnCreate");
  load(lib.destroy, "cudnnDestroy");
  load(lib.set_stream, "cudnnSetStream");
  load(lib.create_descriptor, "cudnnBackendCreateDescriptor");
  load(lib.destroy_descriptor, "cudnnBackendDestroyDescriptor");
  load(lib.set_attribute, "cudnnBackendSetAttribute");
  load(lib.get_attribute, "cudnnBackendGetAttribute");
  load(lib.finalize, "cudnnBackendFinalize");
  load(lib.execute, "cudnnBackendExecute");
  if (missing) return lib;
  lib.version = static_cast<int>(lib.get_version());
  if (lib.version < kMinimumVersion)
    lib.error = path + " is cuDNN " + std::to_string(lib.version) +
                "; the fused attention "
                "path needs " +
                std::to_string(kMinimumVersion) + " or newer";
  return lib;
}

}  // namespace

const CudnnLibrary& cudnn_library() {
  static const CudnnLibrary lib = load_cudnn();
  return lib;
}

std::string status_text(cudnnStatus_t status) {
  const CudnnLibrary& lib = cudnn_library();
  std::string text = lib.error_string(status);
  char detail[512] = {0};
  lib.last_error(detail, sizeof detail);
  if (detail[0]) text += std::string(": ") + detail;
  return text;
}

void check(cudnnStatus_t status, const char* what) {
  if (status != CUDNN_STATUS_SUCCESS)
    throw NotSupported{std::string(what) + ": " + status_text(status)};
}

GraphTensor GraphBuilder::tensor(std::int64_t uid, cudnnDataType_t type, Dims dims, Dims strides,
                                 bool is_virtual, const GraphTensor* ragged_offset, bool by_value) {
  auto d = std::make_shared<Descriptor>(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  d->set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, type);
  d->set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, static_cast<std::int64_t>(dims.size()),
         dims.data());
  d->set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, static_cast<std::int64_t>(strides.size()),
         strides.data());
  d->set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, uid);
  d->set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, std::int64_t{16});
  d->set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, is_virtual);
  if (by_value) d->set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, true);
  if (ragged_offset) d->set(CUDNN_ATTR_TENSOR_RAGGED_OFFSET_DESC, *ragged_offset->desc);
  d->finalize("tensor descriptor");
  keep_.push_back(d);
  return {d, std::move(dims), std::move(strides)};
}

GraphTensor GraphBuilder::pointwise(cudnnPointwiseMode_t mode, const GraphTensor& x,
                                    const GraphTensor* b, const GraphTensor* t,
                                    cudnnDataType_t y_type, cudnnDataType_t compute,
                                    std::int64_t axis, const GraphTensor* y_given) {
  auto pw = std::make_shared<Descriptor>(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  pw->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, mode);
  pw->set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, compute);
  if (axis >= 0) pw->set(CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, axis);
  pw->finalize("pointwise descriptor");
  keep_.push_back(pw);
  GraphTensor y = y_given ? *y_given : virtual_tensor(y_type, x.dims, x.strides);
  auto op = std::make_shared<Descriptor>(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, *pw);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, *x.desc);
  if (b) op->set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b->desc);
  if (t) op->set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *t->desc);
  op->set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, *y.desc);
  op->finalize("pointwise operation");
  add(op);
  return y;
}

void GraphBuilder::matmul(const GraphTensor& a, const GraphTensor& b, const GraphTensor& c,
                          const GraphTensor* m_override, const GraphTensor* n_override,
                          const GraphTensor* k_override, bool zero_padding) {
  auto mm = std::make_shared<Descriptor>(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  mm->set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT);
  if (zero_padding) mm->set(CUDNN_ATTR_MATMUL_PADDING_VALUE, CUDNN_TYPE_DOUBLE, 0.0);
  mm->finalize("matmul descriptor");
  keep_.push_back(mm);
  auto op = std::make_shared<Descriptor>(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op->set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, *a.desc);
  op->set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, *b.desc);
  op->set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, *c.desc);
  op->set(CUDNN_ATTR_OPERATION_MATMUL_DESC, *mm);
  if (m_override) op->set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_M_OVERRIDE_DESC, *m_override->desc);
  if (n_override) op->set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_N_OVERRIDE_DESC, *n_override->desc);
  if (k_override) op->set(CUDNN_ATTR_OPERATION_MATMUL_GEMM_K_OVERRIDE_DESC, *k_override->desc);
  op->finalize("matmul operation");
  add(op);
}

void GraphBuilder::reduction(cudnnReduceTensorOp_t reduce, const GraphTensor& x,
                             const GraphTensor& y) {
  auto red = std::make_shared<Descriptor>(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  red->set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, CUDNN_DATA_FLOAT);
  red->set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, reduce);
  red->finalize("reduction descriptor");
  keep_.push_back(red);
  auto op = std::make_shared<Descriptor>(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op->set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, *red);
  op->set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, *x.desc);
  op->set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, *y.desc);
  op->finalize("reduction operation");
  add(op);
}

void GraphBuilder::reshape(const GraphTensor& x, const GraphTensor& y) {
  auto op = std::make_shared<Descriptor>(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  op->set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, *x.desc);
  op->set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, *y.desc);
  op->finalize("reshape operation");
  add(op);
}

DescriptorPtr GraphBuilder::plan(cudnnHandle_t handle, std::int64_t* workspace_bytes) {
  Descriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, handle);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
            static_cast<std::int64_t>(ops_.size()), ops_.data());
  graph.finalize("operation graph");
  Descriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, CUDNN_HEUR_MODE_A);
  heuristics.finalize("engine heuristics");
  std::int64_t count = 0;
  check(cudnn_library().get_attribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                      CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
        "engine heuristics results");
  if (count == 0) throw NotSupported{"no engine configuration supports the graph"};
  std::vector<std::unique_ptr<Descriptor>> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (std::int64_t i = 0; i < count; ++i) {
    configs.push_back(std::make_unique<Descriptor>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(configs.back()->get());
  }
  std::int64_t returned = 0;
  check(cudnn_library().get_attribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                      CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data()),
        "engine heuristics results");
  std::string last;
  for (std::int64_t i = 0; i < returned; ++i) {
    try {
      auto plan = std::make_shared<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, handle);
      plan->set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *configs[static_cast<std::size_t>(i)]);
      plan->finalize("execution plan");
      std::int64_t bytes = 0, n = 0;
      check(cudnn_library().get_attribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                          CUDNN_TYPE_INT64, 1, &n, &bytes),
            "workspace size");
      *workspace_bytes = bytes;
      return plan;
    } catch (const NotSupported& e) {
      last = e.what;
    }
  }
  throw NotSupported{"no engine configuration finalized (" + last + ")"};
}

}  // namespace ulysses::ops::cuda::cudnn
