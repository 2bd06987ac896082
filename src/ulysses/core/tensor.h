// Tensor: a dtype, a device, a shape and contiguous storage (row-major).
//
// Ownership: storage is reference counted; copying a Tensor shares it (like torch.Tensor).
// Views made by view() and rows() share the storage of their parent. clone() copies.
// A default-constructed Tensor is "undefined" (defined() == false) and may be passed where an
// optional tensor is expected (for example a linear layer without bias).
// Thread-safety: none beyond that of the underlying memory; ops write only their outputs.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "ulysses/core/dtype.h"
#include "ulysses/core/error.h"

namespace ulysses {

using Shape = std::vector<std::int64_t>;
std::string shape_str(const Shape& shape);
std::int64_t shape_numel(const Shape& shape);

struct Device {
  enum class Kind : std::uint8_t { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int index = 0) { return {Kind::cuda, index}; }
  bool is_cpu() const { return kind == Kind::cpu; }
  bool is_cuda() const { return kind == Kind::cuda; }
  bool operator==(const Device& other) const { return kind == other.kind && index == other.index; }
  std::string str() const;
};

// Raw memory owned by one allocation. Backends provide the allocate/free pair.
struct Storage {
  void* data = nullptr;
  std::size_t bytes = 0;
  Device device;
  // Host memory page-locked for the GPU's copy engines (Tensor::zeros_pinned), unregistered
  // before it is freed.
  bool pinned = false;
  ~Storage();
};

class Tensor {
 public:
  Tensor() = default;

  // Uninitialized memory (CPU: 64-byte aligned; huge-page aligned from 64 MiB up).
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor full(const Shape& shape, float value, Device device = Device::cpu());  // f32
  // Zeroed host memory, page-locked (pinned) when a GPU can register it (CUDA builds with a
  // driver; pinned() says whether it is), so device copies from and into it are asynchronous
  // and run at the copy engines' rate. The pages are touched in parallel before they are
  // registered. Without a GPU it is ordinary host memory (pinned() false). Whole pages (huge
  // pages from 64 MiB up, like every host buffer of that size), so no two share a page.
  static Tensor zeros_pinned(const Shape& shape, DType dtype);
  static Tensor from_floats(const std::vector<float>& values, const Shape& shape);
  static Tensor from_ints(const std::vector<std::int32_t>& values, const Shape& shape);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // Size of dimension i; negative i counts from the end.
  std::int64_t dim(int i) const;
  std::int64_t numel() const { return shape_numel(shape_); }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::cpu(); }
  // Page-locked host memory (see zeros_pinned).
  bool pinned() const { return storage_ && storage_->pinned; }

  // Typed element pointer; checks that T matches dtype().
  template <typename T>
  T* data() {
    check_type(dtype_of<T>::value);
    return reinterpret_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    check_type(dtype_of<T>::value);
    return reinterpret_cast<const T*>(raw());
  }
  void* raw();
  const void* raw() const;

  // Same storage, new shape with the same number of elements.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dimension 0, sharing storage.
  Tensor rows(std::int64_t begin, std::int64_t end) const;

  Tensor clone() const;
  // Copies src into this tensor (same shape and dtype; any devices).
  void copy_from(const Tensor& src);
  void zero_();
  void fill_(float value);  // f32 only
  // Converted copy (f32 <-> bf16 on CPU).
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // CPU f32 copy of the contents as a vector (tests, logging).
  std::vector<float> to_floats() const;

 private:
  void check_type(DType expected) const;

  std::shared_ptr<Storage> storage_;
  std::size_t offset_bytes_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Checks used by ops to validate their arguments, with messages naming the argument.
void check_shape(const Tensor& t, const Shape& expected, const char* name);
void check_dtype(const Tensor& t, DType expected, const char* name);

}  // namespace ulysses
