// The CUDA activation offload store (see activation_offload.h for the protocol).
#include <cuda_runtime.h>

#include <iterator>
#include <map>
#include <vector>

#include "ulysses/core/cuda_resources.h"
#include "ulysses/parallel/activation_offload.h"

namespace ulysses::parallel {
namespace {

// A pinned host buffer, grown on demand: Tensor::zeros_pinned's memory (whole huge pages where
// the kernel gives them, first touched by every thread, then page-locked by cudaHostRegister),
// which pins several times faster than cudaHostAlloc's 4 KiB pages touched by one thread.
class PinnedBuffer {
 public:
  // Growing frees the old buffer: `stream` (the copy stream that reads and writes it) is drained
  // first.
  void* reserve(std::size_t bytes, cudaStream_t stream) {
    if (bytes > capacity()) {
      UL_CUDA_CHECK(cudaStreamSynchronize(stream));
      host_ = Tensor();
      Tensor t = Tensor::zeros_pinned({static_cast<std::int64_t>((bytes + 3) / 4)}, DType::i32);
      if (!t.pinned())
        UL_FAIL("--offload-activations: cannot pin ", bytes >> 20,
                " MiB of host memory (cudaHostRegister failed); offload fewer layers "
                "(--offload-activation-layers) or turn the offload off");
      host_ = std::move(t);
    }
    return host_.raw();
  }
  std::size_t capacity() const { return host_.defined() ? host_.nbytes() : 0; }

 private:
  Tensor host_;
};

class Event {
 public:
  Event() { UL_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { cudaEventDestroy(event_); }
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// One offloaded tensor of a layer (x or att).
struct Moved {
  PinnedBuffer host;
  Shape shape;
  DType dtype = DType::bf16;
  bool present = false;  // this step's stash moved one
  Tensor pending;        // the device tensor while its copy to the host runs
  Tensor back;           // the device tensor its copy back fills
};

struct Slot {
  Moved x, att;
  Event copied, fetched;
  bool stashed = false, fetch_started = false;
};

class CudaActivationOffload final : public ActivationOffload {
 public:
  CudaActivationOffload(const Context& ctx, std::int64_t offload_layers)
      : device_(ctx.device), offload_layers_(offload_layers) {
    UL_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  }
  ~CudaActivationOffload() override {
    if (copy_stream_) {
      cudaStreamSynchronize(copy_stream_);
      cudaStreamDestroy(copy_stream_);
    }
  }

  void stash(const Context& ctx, std::int64_t layer, model::LayerActivations& kept) override {
    UL_CUDA_CHECK(cudaSetDevice(device_.index));
    if (layer == 0) begin_step();
    cudaStream_t compute = cuda_resources(ctx).stream;
    release_pending(compute);  // the previous offloaded layer's device copy goes as soon as it can
    if (layer >= offload_layers_) return;
    Slot& s = slots_[layer];
    UL_CHECK(!s.stashed, "activation offload: layer ", layer, " stashed twice in one step");
    UL_CUDA_CHECK(cudaEventRecord(ready_.get(), compute));
    UL_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, ready_.get(), 0));
    to_host(kept.x, s.x);
    to_host(kept.att, s.att);
    UL_CUDA_CHECK(cudaEventRecord(s.copied.get(), copy_stream_));
    s.stashed = true;
    s.fetch_started = false;
    ++stats_.layers_offloaded;
  }

  void fetch(const Context& ctx, std::int64_t layer, model::LayerActivations& kept) override {
    UL_CUDA_CHECK(cudaSetDevice(device_.index));
    cudaStream_t compute = cuda_resources(ctx).stream;
    release_pending(compute);
    auto it = slots_.find(layer);
    if (it != slots_.end() && it->second.stashed) {
      Slot& s = it->second;
      if (!s.fetch_started) start_fetch(compute, s);
      UL_CUDA_CHECK(cudaStreamWaitEvent(compute, s.fetched.get(), 0));
      kept.x = std::move(s.x.back);
      kept.att = std::move(s.att.back);
      s.x.back = s.att.back = Tensor();
      s.stashed = false;
    }
    // Prefetch the next offloaded layer the backward will ask for (also from a layer that stayed
    // on the device, so the first offloaded one comes back ahead of its use too).
    for (auto next = std::make_reverse_iterator(slots_.lower_bound(layer)); next != slots_.rend();
         ++next) {
      if (!next->second.stashed) continue;
      if (!next->second.fetch_started) start_fetch(compute, next->second);
      break;
    }
  }

  void reserve(std::int64_t layer, std::int64_t x_bytes, std::int64_t att_bytes) override {
    if (layer < 0 || layer >= offload_layers_) return;
    UL_CUDA_CHECK(cudaSetDevice(device_.index));
    Slot& s = slots_[layer];
    if (x_bytes > 0) s.x.host.reserve(static_cast<std::size_t>(x_bytes), copy_stream_);
    if (att_bytes > 0) s.att.host.reserve(static_cast<std::size_t>(att_bytes), copy_stream_);
  }

  ActivationOffloadStats stats() const override {
    ActivationOffloadStats out = stats_;
    out.pinned_bytes = 0;
    for (const auto& [layer, s] : slots_)
      out.pinned_bytes += static_cast<std::int64_t>(s.x.host.capacity() + s.att.host.capacity());
    return out;
  }

 private:
  // A step that did not finish (an error between stash and fetch) leaves nothing behind: its
  // copies are drained and its slots emptied.
  void begin_step() {
    bool leftovers = false;
    for (const auto& [layer, s] : slots_) leftovers |= s.stashed;
    if (leftovers) {
      UL_CUDA_CHECK(cudaStreamSynchronize(copy_stream_));
      for (auto& [layer, s] : slots_) {
        s.stashed = s.fetch_started = false;
        s.x.pending = s.att.pending = s.x.back = s.att.back = Tensor();
      }
    }
    stats_.bytes_to_host = 0;
    stats_.layers_offloaded = 0;
  }

  void to_host(Tensor& t, Moved& m) {
    m.present = t.defined();
    if (!m.present) return;
    UL_CHECK(t.device() == device_, "activation offload: a kept tensor is on ",
             t.device().str(), ", the store on ", device_.str());
    m.shape = t.shape();
    m.dtype = t.dtype();
    void* host = m.host.reserve(t.nbytes(), copy_stream_);
    UL_CUDA_CHECK(
        cudaMemcpyAsync(host, t.raw(), t.nbytes(), cudaMemcpyDeviceToHost, copy_stream_));
    stats_.bytes_to_host += static_cast<std::int64_t>(t.nbytes());
    m.pending = std::move(t);
    t = Tensor();
  }

  // The compute stream waits for every finished-or-running copy to the host, then the device
  // tensors go back to the caching allocator (reuse is ordered after the wait).
  void release_pending(cudaStream_t compute) {
    for (auto& [layer, s] : slots_) {
      if (!s.x.pending.defined() && !s.att.pending.defined()) continue;
      UL_CUDA_CHECK(cudaStreamWaitEvent(compute, s.copied.get(), 0));
      s.x.pending = s.att.pending = Tensor();
    }
  }

  void start_fetch(cudaStream_t compute, Slot& s) {
    for (Moved* m : {&s.x, &s.att})
      if (m->present) m->back = Tensor::empty(m->shape, m->dtype, device_);
    // The new tensors' memory may have been in use by queued compute work: order after it.
    UL_CUDA_CHECK(cudaEventRecord(ready_.get(), compute));
    UL_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, ready_.get(), 0));
    for (Moved* m : {&s.x, &s.att}) {
      if (!m->present) continue;
      UL_CUDA_CHECK(cudaMemcpyAsync(m->back.raw(), m->host.reserve(m->back.nbytes(), copy_stream_),
                                    m->back.nbytes(), cudaMemcpyHostToDevice, copy_stream_));
    }
    UL_CUDA_CHECK(cudaEventRecord(s.fetched.get(), copy_stream_));
    s.fetch_started = true;
  }

  Device device_;
  std::int64_t offload_layers_;
  cudaStream_t copy_stream_ = nullptr;
  Event ready_;
  std::map<std::int64_t, Slot> slots_;
  ActivationOffloadStats stats_;
};

}  // namespace

std::unique_ptr<ActivationOffload> make_cuda_activation_offload(const Context& ctx,
                                                                std::int64_t offload_layers) {
  UL_CHECK(!ctx.device.is_cpu() && ctx.cuda, "activation offload: not a CUDA context");
  UL_CUDA_CHECK(cudaSetDevice(cuda_resources(ctx).device_index));
  return std::make_unique<CudaActivationOffload>(ctx, offload_layers);
}

}  // namespace ulysses::parallel
