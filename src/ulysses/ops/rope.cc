#include "ulysses/ops/rope.h"

#include <cmath>
#include <numbers>

#include "ulysses/core/op_profiler.h"
#include "ulysses/ops/check.h"
#include "ulysses/ops/cpu/rope.h"
#ifdef ULYSSES_HAS_CUDA
#include "ulysses/ops/cuda/rope.h"
#endif

namespace ulysses::ops {
namespace {

void check_head_dim(std::int64_t head_dim, const char* where) {
  UL_CHECK(head_dim > 0 && head_dim % 2 == 0, where, ": head_dim is ", head_dim,
           ", expected a positive even number");
}

// x: [T, H, D] (a compute dtype) with D even, and a table of [T, D/2] f32 cos/sin.
void check_rotation_arguments(const Context& ctx, const RopeTable& table, const Tensor& x,
                              const char* where, const char* x_name) {
  check_compute_dtype(ctx, x, x_name);
  UL_CHECK(x.ndim() == 3, x_name, " has shape ", shape_str(x.shape()), ", expected [T, H, D]");
  check_head_dim(x.dim(2), where);
  const Shape table_shape = {x.dim(0), x.dim(2) / 2};
  check_dtype(table.cos, DType::f32, "rope table cos");
  check_shape(table.cos, table_shape, "rope table cos");
  check_dtype(table.sin, DType::f32, "rope table sin");
  check_shape(table.sin, table_shape, "rope table sin");
}

}  // namespace

const char* rope_type_name(RopeType type) {
  switch (type) {
    case RopeType::default_: return "default";
    case RopeType::linear: return "linear";
    case RopeType::llama3: return "llama3";
  }
  UL_FAIL("rope_type_name: unknown rope type ", static_cast<int>(type));
}

RopeType parse_rope_type(const std::string& name, const std::string& where) {
  for (const RopeType type : {RopeType::default_, RopeType::linear, RopeType::llama3})
    if (name == rope_type_name(type)) return type;
  UL_FAIL(where, where.empty() ? "" : ": ", "rope type '", name,
          "' is not supported (supported: default, linear, llama3)");
}

std::vector<double> rope_inv_freq(const RopeConfig& config, std::int64_t head_dim) {
  check_head_dim(head_dim, "rope_inv_freq");
  UL_CHECK(config.theta > 0, "rope theta is ", config.theta, ", expected a positive number");
  // Default: inv_freq[i] = 1 / theta^(2i / D).
  const std::int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<std::size_t>(half));
  for (std::int64_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0 / std::pow(config.theta, static_cast<double>(2 * i) / head_dim);
  if (config.type == RopeType::default_) return inv_freq;

  UL_CHECK(config.factor > 0, "rope factor is ", config.factor, ", expected a positive number");
  if (config.type == RopeType::linear) {
    for (double& f : inv_freq) f /= config.factor;
    return inv_freq;
  }

  // llama3: long wavelengths are slowed down by factor, short ones kept, the band in between
  // interpolated smoothly.
  UL_CHECK(config.low_freq_factor > 0 && config.high_freq_factor > config.low_freq_factor,
           "rope llama3 needs 0 < low_freq_factor < high_freq_factor, got low_freq_factor ",
           config.low_freq_factor, " and high_freq_factor ", config.high_freq_factor);
  UL_CHECK(config.original_max_position_embeddings > 0,
           "rope llama3 original_max_position_embeddings is ",
           config.original_max_position_embeddings, ", expected a positive number");
  const double original_max = static_cast<double>(config.original_max_position_embeddings);
  const double low_freq_wavelen = original_max / config.low_freq_factor;
  const double high_freq_wavelen = original_max / config.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2 * std::numbers::pi / f;
    if (wavelen > low_freq_wavelen) {
      f = f / config.factor;
    } else if (wavelen >= high_freq_wavelen) {
      const double smooth = (original_max / wavelen - config.low_freq_factor) /
                            (config.high_freq_factor - config.low_freq_factor);
      f = (1 - smooth) * f / config.factor + smooth * f;
    }  // else: high frequency, unchanged.
  }
  return inv_freq;
}

RopeTable rope_table(const Context& ctx, const RopeConfig& config, std::int64_t head_dim,
                     const Tensor& positions) {
  check_dtype(positions, DType::i32, "rope_table: positions");
  UL_CHECK(positions.ndim() == 1, "rope_table: positions has shape ", shape_str(positions.shape()),
           ", expected [T]");
  check_on_context_device(ctx, positions, "rope_table: positions");
  const std::vector<double> inv_freq = rope_inv_freq(config, head_dim);  // [D/2]
  const std::int64_t T = positions.dim(0);
  const std::int64_t half = head_dim / 2;
  RopeTable table{Tensor::empty({T, half}, DType::f32, ctx.device),
                  Tensor::empty({T, half}, DType::f32, ctx.device)};
#ifdef ULYSSES_HAS_CUDA
  if (ctx.device.is_cuda()) {
    cuda::rope_table(ctx, inv_freq, positions, table.cos, table.sin);
    return table;
  }
#endif
  UL_CHECK(ctx.device.is_cpu(), "rope_table: no kernel for device ", ctx.device.str());
  const std::int32_t* position = positions.data<std::int32_t>();  // [T]
  float* cos = table.cos.data<float>();                           // [T, D/2]
  float* sin = table.sin.data<float>();                           // [T, D/2]
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(position[t]) * inv_freq[i];
      cos[t * half + i] = static_cast<float>(std::cos(angle));
      sin[t * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

void rope_forward(const Context& ctx, const RopeTable& table, const Tensor& x, Tensor out) {
  ProfileScope scope(ctx, "rope.fwd");
  check_rotation_arguments(ctx, table, x, "rope_forward", "rope_forward: x");
  check_same_dtype(out, x, "rope_forward: out", "x");
  check_shape(out, x.shape(), "rope_forward: out");
  check_on_context_device(ctx, table.cos, "rope_forward: table cos");
  check_on_context_device(ctx, table.sin, "rope_forward: table sin");
  check_on_context_device(ctx, x, "rope_forward: x");
  check_on_context_device(ctx, out, "rope_forward: out");

  if (ctx.device.is_cpu()) {
    cpu::rope_forward(table.cos.data<float>(), table.sin.data<float>(), x.data<float>(),
                      out.data<float>(), x.dim(0), x.dim(1), x.dim(2));
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::rope_forward(ctx, table.cos, table.sin, x, out);
#endif
  } else {
    UL_FAIL("rope_forward: no kernel for device ", ctx.device.str());
  }
}

void rope_backward(const Context& ctx, const RopeTable& table, const Tensor& dout, Tensor dx) {
  ProfileScope scope(ctx, "rope.bwd");
  check_rotation_arguments(ctx, table, dout, "rope_backward", "rope_backward: dout");
  check_same_dtype(dx, dout, "rope_backward: dx", "dout");
  check_shape(dx, dout.shape(), "rope_backward: dx");
  UL_CHECK(dx.raw() != dout.raw(), "rope_backward: dx must not alias dout");
  check_on_context_device(ctx, table.cos, "rope_backward: table cos");
  check_on_context_device(ctx, table.sin, "rope_backward: table sin");
  check_on_context_device(ctx, dout, "rope_backward: dout");
  check_on_context_device(ctx, dx, "rope_backward: dx");

  if (ctx.device.is_cpu()) {
    cpu::rope_backward(table.cos.data<float>(), table.sin.data<float>(), dout.data<float>(),
                       dx.data<float>(), dout.dim(0), dout.dim(1), dout.dim(2));
#ifdef ULYSSES_HAS_CUDA
  } else if (ctx.device.is_cuda()) {
    cuda::rope_backward(ctx, table.cos, table.sin, dout, dx);
#endif
  } else {
    UL_FAIL("rope_backward: no kernel for device ", ctx.device.str());
  }
}

}  // namespace ulysses::ops
