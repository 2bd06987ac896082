// Model FLOPs (DESIGN §5, stated once in docs/architecture.md):
//   6 * N_matmul + 6 * L * H * d_head * S   per token for a sequence of S tokens in one document
// (causal attention counted at half of dense). With packed documents the attention term is
// computed exactly from the document lengths: 12 * L * H * d_head * sum(len^2) / 2 per sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/model/config.h"

namespace ulysses::model {

// Model FLOPs (forward + backward) of one sequence with the given document boundaries.
double sequence_flops(const ModelConfig& config, const std::vector<std::int32_t>& cu_seqlens);
// Per token for one document of S tokens: 6 N_matmul + 6 L H d S.
double flops_per_token(const ModelConfig& config, std::int64_t sequence_length);

}  // namespace ulysses::model
