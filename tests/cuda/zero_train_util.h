// Shared by the ZeRO-on-CUDA tests (tests/cuda/zero_test.cc on one GPU, tests/cuda_dist/zero_test.cc
// under mpirun): a small qwen3-like model written as a config.json the trainer can load, a
// training config, and a run that collects losses, grad norms and the final f32 parameters.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"
#include "train_util.h"
#include "ulysses/model/config.h"
#include "ulysses/train/trainer.h"

namespace ulysses::testing {

// qwen3-like (q/k norm, no biases), head_dim 64 (the CUDA attention kernel takes 64 or 128).
inline model::ModelConfig zero_test_model(bool tied) {
  model::ModelConfig c = model::preset_config("qwen3-0.6b");
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 256;
  c.tie_word_embeddings = tied;
  return c;
}

// The model as a config.json file (a --model path) private to this process.
inline std::string write_model_json(const model::ModelConfig& c, const std::string& tag) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("ulysses_zero_test_" + tag + "_" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << model::model_config_to_json(c).dump(2);
  return path.string();
}

// 5 steps of 2 packed 256-token sequences per data-parallel group (so every ZeRO stage
// accumulates two backwards), with weight decay and clipping.
inline train::TrainConfig zero_train_config(const std::string& model_path) {
  train::TrainConfig t;
  t.model = model_path;
  t.device = "cuda";
  t.max_seq_length = 256;
  t.per_device_train_batch_size = 2;
  t.max_steps = 5;
  t.learning_rate = 1e-3;
  t.warmup_steps = 1;
  t.weight_decay = 0.1;
  t.max_grad_norm = 1.0;
  t.copy_min_length = 20;
  t.copy_max_length = 60;
  t.seed = 5;
  t.output_dir = "";
  t.quiet = true;
  return t;
}

// The largest |a - b| / |b| over the steps.
inline double max_step_relative(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    worst = std::max(worst, std::abs(a[i] - b[i]) / std::max(std::abs(b[i]), 1e-30));
  }
  return worst;
}

// Checks `got` against `expected` (losses and grad norms per step, parameters as a whole) and
// prints the differences, so the measured agreement can be reported.
inline void expect_same_training(const TrainResult& got, const TrainResult& expected,
                                 double loss_tolerance, double param_tolerance,
                                 const std::string& what, bool print) {
  const double loss = max_step_relative(got.losses, expected.losses);
  const double norm = max_step_relative(got.norms, expected.norms);
  const double params = relative_error(got.params, expected.params);
  if (print)
    std::printf("[ zero    ] %-40s loss %.3g  grad-norm %.3g  params %.3g (relative)\n",
                what.c_str(), loss, norm, params);
  EXPECT_LE(loss, loss_tolerance) << what << ": losses differ";
  EXPECT_LE(norm, loss_tolerance) << what << ": grad norms differ";
  EXPECT_LE(params, param_tolerance) << what << ": parameters differ";
}

}  // namespace ulysses::testing
