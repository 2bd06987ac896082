// cuDNN's backend graph API, loaded at run time: the library's entry points, descriptors and a
// small operation-graph builder. Internal to the CUDA ops (include from .cu files only).
//
// The library (libcudnn.so.9, or the file named by ULYSSES_CUDNN_LIBRARY) is opened once per
// process on first use and never closed; it is immutable after loading. Nothing links against
// cuDNN, so builds and machines without it work (cudnn_library().error says why it is unusable).
#pragma once

#include <cudnn_graph.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ulysses::ops::cuda::cudnn {

struct CudnnLibrary {
  void* handle = nullptr;
  std::string error;  // why it could not be used; empty when usable
  int version = 0;
  decltype(&cudnnGetVersion) get_version = nullptr;
  decltype(&cudnnGetErrorString) error_string = nullptr;
  decltype(&cudnnGetLastErrorString) last_error = nullptr;
  decltype(&cudnnCreate) create = nullptr;
  decltype(&cudnnDestroy) destroy = nullptr;
  decltype(&cudnnSetStream) set_stream = nullptr;
  decltype(&cudnnBackendCreateDescriptor) create_descriptor = nullptr;
  decltype(&cudnnBackendDestroyDescriptor) destroy_descriptor = nullptr;
  decltype(&cudnnBackendSetAttribute) set_attribute = nullptr;
  decltype(&cudnnBackendGetAttribute) get_attribute = nullptr;
  decltype(&cudnnBackendFinalize) finalize = nullptr;
  decltype(&cudnnBackendExecute) execute = nullptr;
};

// The process's cuDNN (loaded on first call). Usable when error is empty.
const CudnnLibrary& cudnn_library();

// A failure while building a graph or a plan: the caller falls back (not an Error).
struct NotSupported {
  std::string what;
};

// cudnnGetErrorString plus the library's last error message.
std::string status_text(cudnnStatus_t status);
// Throws NotSupported naming `what` unless status is success.
void check(cudnnStatus_t status, const char* what);

// One backend descriptor, destroyed with its owner.
class Descriptor {
 public:
  explicit Descriptor(cudnnBackendDescriptorType_t type) {
    check(cudnn_library().create_descriptor(type, &desc_), "cudnnBackendCreateDescriptor");
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (desc_) cudnn_library().destroy_descriptor(desc_);
  }
  cudnnBackendDescriptor_t get() const { return desc_; }

  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                  std::int64_t count, const void* values) {
    check(cudnn_library().set_attribute(desc_, name, type, count, values),
          "cudnnBackendSetAttribute");
    return *this;
  }
  template <typename T>
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, T value) {
    return set(name, type, 1, &value);
  }
  Descriptor& set(cudnnBackendAttributeName_t name, const Descriptor& other) {
    cudnnBackendDescriptor_t d = other.get();
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d);
  }
  void finalize(const char* what) { check(cudnn_library().finalize(desc_), what); }

 private:
  cudnnBackendDescriptor_t desc_ = nullptr;
};
using DescriptorPtr = std::shared_ptr<Descriptor>;

using Dims = std::vector<std::int64_t>;

// A tensor of the graph: its descriptor and shape.
struct GraphTensor {
  DescriptorPtr desc;
  Dims dims, strides;
};

// One way to run a graph: an execution plan, its workspace and what it is ("engine 5 knobs
// {24: 2}"), for surveys of the engines (cuda_ops_bench --attention-engines).
struct PlanChoice {
  DescriptorPtr plan;
  std::int64_t workspace_bytes = 0;
  std::string name;
};

// Unique ids >= this are given to virtual tensors.
constexpr std::int64_t kFirstVirtualUid = 1000;

// Builds an operation graph, then an execution plan.
class GraphBuilder {
 public:
  GraphTensor tensor(std::int64_t uid, cudnnDataType_t type, Dims dims, Dims strides,
                     bool is_virtual = false, const GraphTensor* ragged_offset = nullptr,
                     bool by_value = false);
  GraphTensor virtual_tensor(cudnnDataType_t type, Dims dims, Dims strides) {
    return tensor(next_virtual_++, type, std::move(dims), std::move(strides), true);
  }
  GraphTensor scalar(std::int64_t uid, cudnnDataType_t type) {
    return tensor(uid, type, {1, 1, 1, 1}, {1, 1, 1, 1}, false, nullptr, true);
  }

  // y = op(x[, b[, t]]) elementwise; y is a new virtual tensor of x's shape unless given.
  GraphTensor pointwise(cudnnPointwiseMode_t mode, const GraphTensor& x, const GraphTensor* b,
                        const GraphTensor* t, cudnnDataType_t y_type,
                        cudnnDataType_t compute = CUDNN_DATA_FLOAT, std::int64_t axis = -1,
                        const GraphTensor* y_given = nullptr);

  void matmul(const GraphTensor& a, const GraphTensor& b, const GraphTensor& c,
              const GraphTensor* m_override, const GraphTensor* n_override,
              const GraphTensor* k_override, bool zero_padding = false);

  void reduction(cudnnReduceTensorOp_t reduce, const GraphTensor& x, const GraphTensor& y);

  void reshape(const GraphTensor& x, const GraphTensor& y);

  // The execution plan of the first heuristic engine configuration that accepts the graph.
  DescriptorPtr plan(cudnnHandle_t handle, std::int64_t* workspace_bytes,
                     std::string* name = nullptr);
  // Every plan the graph finalizes with, for a survey: each engine's default configuration, then
  // that engine with one knob moved to another of its values (at most max_values per knob).
  // The first entry is what plan() returns.
  std::vector<PlanChoice> plan_choices(cudnnHandle_t handle, int max_values);

 private:
  void add(const DescriptorPtr& op) {
    keep_.push_back(op);
    ops_.push_back(op->get());
  }
  DescriptorPtr operation_graph(cudnnHandle_t handle);
  std::vector<DescriptorPtr> keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  std::int64_t next_virtual_ = kFirstVirtualUid;
};

}  // namespace ulysses::ops::cuda::cudnn
