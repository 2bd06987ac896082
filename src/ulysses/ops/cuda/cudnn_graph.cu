// cuDNN's backend graph API (see cudnn_graph.h).
#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "ulysses/core/process_env.h"
#include "ulysses/ops/cuda/cudnn_graph.h"

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

DescriptorPtr GraphBuilder::operation_graph(cudnnHandle_t handle) {
  auto graph = std::make_shared<Descriptor>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, handle);
  graph->set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
             static_cast<std::int64_t>(ops_.size()), ops_.data());
  graph->finalize("operation graph");
  return graph;
}

namespace {

// A descriptor-array attribute of `owner` (at most `capacity` entries) read into fresh
// descriptors of `type`: as many as the attribute holds.
std::vector<std::unique_ptr<Descriptor>> get_descriptors(const Descriptor& owner,
                                                         cudnnBackendAttributeName_t name,
                                                         cudnnBackendDescriptorType_t type,
                                                         std::int64_t capacity) {
  std::vector<std::unique_ptr<Descriptor>> out;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (std::int64_t i = 0; i < capacity; ++i) {
    out.push_back(std::make_unique<Descriptor>(type));
    raw.push_back(out.back()->get());
  }
  std::int64_t n = 0;
  check(cudnn_library().get_attribute(owner.get(), name, CUDNN_TYPE_BACKEND_DESCRIPTOR, capacity,
                                      &n, raw.data()),
        "descriptor attribute");
  out.resize(static_cast<std::size_t>(std::min(n, capacity)));
  return out;
}

cudnnBackendKnobType_t get_knob_type(const Descriptor& d, cudnnBackendAttributeName_t name) {
  cudnnBackendKnobType_t type{};
  std::int64_t n = 0;
  check(cudnn_library().get_attribute(d.get(), name, CUDNN_TYPE_KNOB_TYPE, 1, &n, &type),
        "knob type attribute");
  return type;
}

std::int64_t get_int(const Descriptor& d, cudnnBackendAttributeName_t name) {
  std::int64_t value = 0, n = 0;
  check(cudnn_library().get_attribute(d.get(), name, CUDNN_TYPE_INT64, 1, &n, &value),
        "int64 attribute");
  return value;
}

// "engine 5 knobs {24: 2, 30: 1}" for an engine configuration.
std::string describe_config(const Descriptor& config) {
  std::string text;
  try {
    const auto engine =
        get_descriptors(config, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_BACKEND_ENGINE_DESCRIPTOR, 1);
    text = "engine " + std::to_string(get_int(*engine.at(0), CUDNN_ATTR_ENGINE_GLOBAL_INDEX));
    const auto choices = get_descriptors(config, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES,
                                         CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR,
                                         CUDNN_KNOB_TYPE_COUNTS);
    text += " knobs {";
    for (std::size_t i = 0; i < choices.size(); ++i) {
      const auto type = get_knob_type(*choices[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE);
      const std::int64_t value = get_int(*choices[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE);
      text +=
          (i ? ", " : "") + std::to_string(static_cast<int>(type)) + ": " + std::to_string(value);
    }
    text += "}";
  } catch (const NotSupported& e) {
    text += " (" + e.what + ")";
  }
  return text;
}

// The plan of one engine configuration, or NotSupported.
PlanChoice finalize_plan(cudnnHandle_t handle, const Descriptor& config) {
  PlanChoice choice;
  choice.plan = std::make_shared<Descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
  choice.plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, handle);
  choice.plan->set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, config);
  choice.plan->finalize("execution plan");
  choice.workspace_bytes = get_int(*choice.plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE);
  choice.name = describe_config(config);
  return choice;
}

struct KnobRange {
  cudnnBackendKnobType_t type;
  std::int64_t min, max, stride;
};

std::vector<KnobRange> knob_ranges(const Descriptor& engine) {
  std::vector<KnobRange> ranges;
  for (const auto& info : get_descriptors(engine, CUDNN_ATTR_ENGINE_KNOB_INFO,
                                          CUDNN_BACKEND_KNOB_INFO_DESCRIPTOR,
                                          CUDNN_KNOB_TYPE_COUNTS)) {
    KnobRange r{};
    r.type = get_knob_type(*info, CUDNN_ATTR_KNOB_INFO_TYPE);
    r.min = get_int(*info, CUDNN_ATTR_KNOB_INFO_MINIMUM_VALUE);
    r.max = get_int(*info, CUDNN_ATTR_KNOB_INFO_MAXIMUM_VALUE);
    r.stride = std::max<std::int64_t>(1, get_int(*info, CUDNN_ATTR_KNOB_INFO_STRIDE));
    ranges.push_back(r);
  }
  return ranges;
}

}  // namespace

DescriptorPtr GraphBuilder::plan(cudnnHandle_t handle, std::int64_t* workspace_bytes,
                                 std::string* name) {
  const DescriptorPtr graph = operation_graph(handle);
  Descriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, *graph);
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, CUDNN_HEUR_MODE_A);
  heuristics.finalize("engine heuristics");
  std::int64_t count = 0;
  check(cudnn_library().get_attribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                      CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
        "engine heuristics results");
  if (count == 0) throw NotSupported{"no engine configuration supports the graph"};
  std::string last;
  for (const auto& config : get_descriptors(heuristics, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                            CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, count)) {
    try {
      PlanChoice choice = finalize_plan(handle, *config);
      *workspace_bytes = choice.workspace_bytes;
      if (name) *name = choice.name;
      return choice.plan;
    } catch (const NotSupported& e) {
      last = e.what;
    }
  }
  throw NotSupported{"no engine configuration finalized (" + last + ")"};
}

std::vector<PlanChoice> GraphBuilder::plan_choices(cudnnHandle_t handle, int max_values) {
  std::vector<PlanChoice> choices;
  {
    PlanChoice first;
    first.plan = plan(handle, &first.workspace_bytes, &first.name);
    first.name = "heuristic: " + first.name;
    choices.push_back(std::move(first));
  }
  const DescriptorPtr graph = operation_graph(handle);
  const std::int64_t engines = get_int(*graph, CUDNN_ATTR_OPERATIONGRAPH_ENGINE_GLOBAL_COUNT);
  for (std::int64_t index = 0; index < engines; ++index) {
    try {
      Descriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
      engine.set(CUDNN_ATTR_ENGINE_OPERATION_GRAPH, *graph);
      engine.set(CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, index);
      engine.finalize("engine");
      {
        Descriptor config(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        config.set(CUDNN_ATTR_ENGINECFG_ENGINE, engine);
        config.finalize("engine configuration");
        choices.push_back(finalize_plan(handle, config));
      }
      for (const KnobRange& r : knob_ranges(engine)) {
        int tried = 0;
        for (std::int64_t value = r.min; value <= r.max && tried < max_values;
             value += r.stride, ++tried) {
          try {
            Descriptor knob(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR);
            knob.set(CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, r.type);
            knob.set(CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, value);
            knob.finalize("knob choice");
            Descriptor config(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
            config.set(CUDNN_ATTR_ENGINECFG_ENGINE, engine);
            config.set(CUDNN_ATTR_ENGINECFG_KNOB_CHOICES, knob);
            config.finalize("engine configuration");
            choices.push_back(finalize_plan(handle, config));
          } catch (const NotSupported&) {
          }
        }
      }
    } catch (const NotSupported&) {
    }
  }
  return choices;
}

}  // namespace ulysses::ops::cuda::cudnn
