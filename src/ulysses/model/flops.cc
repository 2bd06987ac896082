#include "ulysses/model/flops.h"

#include "ulysses/model/params.h"

namespace ulysses::model {

double sequence_flops(const ModelConfig& c, const std::vector<std::int32_t>& cu) {
  double tokens = 0, attention = 0;
  for (std::size_t i = 0; i + 1 < cu.size(); ++i) {
    const double len = cu[i + 1] - cu[i];
    tokens += len;
    attention += len * len / 2;
  }
  const double per_head = static_cast<double>(c.num_hidden_layers * c.num_attention_heads * c.head_dim);
  return 6.0 * static_cast<double>(matmul_parameter_count(c)) * tokens + 12.0 * per_head * attention;
}

double flops_per_token(const ModelConfig& c, std::int64_t S) {
  return 6.0 * static_cast<double>(matmul_parameter_count(c)) +
         6.0 * static_cast<double>(c.num_hidden_layers * c.num_attention_heads * c.head_dim) *
             static_cast<double>(S);
}

}  // namespace ulysses::model
