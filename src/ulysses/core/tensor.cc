#include "ulysses/core/tensor.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "ulysses/core/device_memory.h"

namespace ulysses {

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (const auto d : shape) n *= d;
  return n;
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

Storage::~Storage() {
  if (!data) return;
  if (device.is_cpu()) {
    if (pinned) host_unregister(data);
    std::free(data);
  } else {
    device_free(data, device);
  }
}

namespace {
// Host buffers from 64 MiB up (model states, offloaded shards) are aligned to whole huge pages
// and advised to use them (transparent huge pages where the kernel allows): 512 times fewer
// page faults on first touch and fewer pages to lock when pinned, so setup takes less time.
constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kHugePageMinBytes = std::size_t{64} << 20;

// Alignment and rounded size of a host allocation of `bytes`: a huge page from 64 MiB up,
// else `align` (64 B; a whole 4 KiB page for memory that is pinned, so no two registered
// ranges share a page).
std::size_t host_alignment(std::size_t bytes, std::size_t align) {
  return bytes >= kHugePageMinBytes ? kHugePage : align;
}
std::size_t host_rounded(std::size_t bytes, std::size_t align) {
  const std::size_t a = host_alignment(bytes, align);
  return std::max(a, (bytes + a - 1) / a * a);
}

std::shared_ptr<Storage> allocate(std::size_t bytes, Device device, std::size_t align = 64) {
  auto storage = std::make_shared<Storage>();
  storage->bytes = bytes;
  storage->device = device;
  if (device.is_cpu()) {
    const std::size_t rounded = host_rounded(bytes, align);
    storage->data = std::aligned_alloc(host_alignment(bytes, align), rounded);
    UL_CHECK(storage->data, "out of host memory allocating ", bytes, " bytes");
    if (host_alignment(bytes, align) == kHugePage)
      ::madvise(storage->data, rounded, MADV_HUGEPAGE);  // advisory
  } else {
    storage->data = device_alloc(std::max<std::size_t>(64, (bytes + 63) / 64 * 64), device);
  }
  return storage;
}
}  // namespace

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (const auto d : shape) UL_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = allocate(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros_pinned(const Shape& shape, DType dtype) {
  for (const auto d : shape) UL_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  constexpr std::size_t kPage = 4096;
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = allocate(t.nbytes(), Device::cpu(), kPage);
  t.zero_();  // the first touch, in parallel
  if (t.nbytes() > 0)
    t.storage_->pinned = host_register(t.storage_->data, host_rounded(t.nbytes(), kPage));
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, Device device) {
  Tensor t = empty(shape, DType::f32, Device::cpu());
  t.fill_(value);
  return device.is_cpu() ? t : t.to(device);
}

Tensor Tensor::from_floats(const std::vector<float>& values, const Shape& shape) {
  UL_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape), "from_floats: ",
           values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::f32);
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

Tensor Tensor::from_ints(const std::vector<std::int32_t>& values, const Shape& shape) {
  UL_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape), "from_ints: ",
           values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::i32);
  std::copy(values.begin(), values.end(), t.data<std::int32_t>());
  return t;
}

std::int64_t Tensor::dim(int i) const {
  const int n = ndim();
  if (i < 0) i += n;
  UL_CHECK(i >= 0 && i < n, "dimension ", i, " out of range for shape ", shape_str(shape_));
  return shape_[static_cast<std::size_t>(i)];
}

void* Tensor::raw() {
  UL_CHECK(defined(), "access to an undefined tensor");
  return static_cast<char*>(storage_->data) + offset_bytes_;
}

const void* Tensor::raw() const {
  UL_CHECK(defined(), "access to an undefined tensor");
  return static_cast<const char*>(storage_->data) + offset_bytes_;
}

void Tensor::check_type(DType expected) const {
  UL_CHECK(dtype_ == expected, "tensor has dtype ", dtype_name(dtype_), ", accessed as ",
           dtype_name(expected));
}

Tensor Tensor::view(const Shape& shape) const {
  UL_CHECK(shape_numel(shape) == numel(), "view: cannot view ", shape_str(shape_), " as ",
           shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::rows(std::int64_t begin, std::int64_t end) const {
  UL_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "rows(", begin, ", ",
           end, ") out of range for shape ", shape_str(shape_));
  Tensor t = *this;
  const std::size_t row_bytes = static_cast<std::size_t>(shape_numel(shape_) / std::max<std::int64_t>(shape_[0], 1)) * dtype_size(dtype_);
  t.offset_bytes_ += static_cast<std::size_t>(begin) * (shape_[0] ? row_bytes : 0);
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

namespace {
// Host memset / memcpy of large buffers in parallel chunks: a model's parameters are tens of
// GB, and the first touch of fresh pages (the kernel zeroing them) dominates one thread.
// f(offset, bytes) for consecutive chunks covering [0, bytes).
template <typename F>
void in_host_chunks(std::size_t bytes, F&& f) {
  constexpr std::size_t kParallelBytes = std::size_t{64} << 20, kChunk = std::size_t{16} << 20;
  if (bytes < kParallelBytes) return f(std::size_t{0}, bytes);
  const auto chunks = static_cast<std::int64_t>((bytes + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::size_t begin = static_cast<std::size_t>(c) * kChunk;
    f(begin, std::min(kChunk, bytes - begin));
  }
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  UL_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, "copy_from: ", shape_str(src.shape_),
           " ", dtype_name(src.dtype_), " into ", shape_str(shape_), " ", dtype_name(dtype_));
  if (nbytes() == 0) return;
  if (device().is_cpu() && src.device().is_cpu()) {
    char* dst = static_cast<char*>(raw());
    const char* from = static_cast<const char*>(src.raw());
    in_host_chunks(nbytes(), [&](std::size_t at, std::size_t n) { std::memcpy(dst + at, from + at, n); });
  } else {
    device_copy(raw(), device(), src.raw(), src.device(), nbytes());
  }
}

void Tensor::zero_() {
  if (nbytes() == 0) return;
  if (device().is_cpu()) {
    char* dst = static_cast<char*>(raw());
    in_host_chunks(nbytes(), [&](std::size_t at, std::size_t n) { std::memset(dst + at, 0, n); });
  } else {
    device_memset_zero(raw(), device(), nbytes());
  }
}

void Tensor::fill_(float value) {
  UL_CHECK(device().is_cpu(), "fill_ is CPU-only");
  float* p = data<float>();
  std::fill(p, p + numel(), value);
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  UL_CHECK(device().is_cpu(), "dtype conversion of a device tensor: copy to CPU first");
  Tensor out = empty(shape_, dtype);
  const std::int64_t n = numel();
  if (dtype_ == DType::f32 && dtype == DType::bf16) {
    const float* in = data<float>();
    bf16* o = out.data<bf16>();
    for (std::int64_t i = 0; i < n; ++i) o[i] = float_to_bf16(in[i]);
  } else if (dtype_ == DType::bf16 && dtype == DType::f32) {
    const bf16* in = data<bf16>();
    float* o = out.data<float>();
    for (std::int64_t i = 0; i < n; ++i) o[i] = bf16_to_float(in[i]);
  } else if (dtype_ == DType::i32 && dtype == DType::i64) {
    const std::int32_t* in = data<std::int32_t>();
    std::int64_t* o = out.data<std::int64_t>();
    for (std::int64_t i = 0; i < n; ++i) o[i] = in[i];
  } else {
    UL_FAIL("conversion from ", dtype_name(dtype_), " to ", dtype_name(dtype), " is not supported");
  }
  return out;
}

Tensor Tensor::to(Device device) const {
  Tensor out = empty(shape_, dtype_, device);
  out.copy_from(*this);
  return out;
}

std::vector<float> Tensor::to_floats() const {
  const Tensor host = device().is_cpu() ? *this : to(Device::cpu());
  std::vector<float> out(static_cast<std::size_t>(numel()));
  switch (dtype_) {
    case DType::f32: std::copy_n(host.data<float>(), out.size(), out.begin()); break;
    case DType::bf16:
      for (std::size_t i = 0; i < out.size(); ++i) out[i] = bf16_to_float(host.data<bf16>()[i]);
      break;
    case DType::i32:
      for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<float>(host.data<std::int32_t>()[i]);
      break;
    case DType::i64:
      for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<float>(host.data<std::int64_t>()[i]);
      break;
  }
  return out;
}

void check_shape(const Tensor& t, const Shape& expected, const char* name) {
  UL_CHECK(t.defined(), name, " is undefined");
  UL_CHECK(t.shape() == expected, name, " has shape ", shape_str(t.shape()), ", expected ",
           shape_str(expected));
}

void check_dtype(const Tensor& t, DType expected, const char* name) {
  UL_CHECK(t.defined(), name, " is undefined");
  UL_CHECK(t.dtype() == expected, name, " has dtype ", dtype_name(t.dtype()), ", expected ",
           dtype_name(expected));
}

}  // namespace ulysses
