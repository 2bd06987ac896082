// Shared by the tests that train through the Trainer (tests/cuda, tests/dist, tests/cuda_dist):
// one run's losses, grad norms and final parameters.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "ulysses/comm/communicator.h"
#include "ulysses/train/trainer.h"

namespace ulysses::testing {

struct TrainResult {
  std::vector<double> losses, norms;  // every step's
  std::vector<double> params;         // final f32 (master) parameters, every group in order
  std::string backend;                // of the trainer's world ("self", "mpi", "nccl")
};

// world: null for the single-process trainer (a self communicator). Fails the test on a
// skipped (non-finite) step.
inline TrainResult train_run(const train::TrainConfig& config,
                             comm::Communicator* world = nullptr) {
  auto trainer = world ? std::make_unique<train::Trainer>(config, *world)
                       : std::make_unique<train::Trainer>(config);
  TrainResult r;
  r.backend = trainer->mesh().world().backend();
  for (const auto& m : trainer->run()) {
    EXPECT_FALSE(m.skipped) << "step " << m.step;
    r.losses.push_back(m.loss);
    r.norms.push_back(m.grad_norm);
  }
  for (const auto& flat : trainer->params().flat())
    for (const float v : flat.to_floats()) r.params.push_back(v);
  return r;
}

}  // namespace ulysses::testing
