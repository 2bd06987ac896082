#include "ulysses/data/sequence.h"

#include <algorithm>

#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {

std::int64_t PackedSequence::valid_labels(std::int64_t begin, std::int64_t end) const {
  if (end < 0) end = length();
  return std::count_if(shift_labels.begin() + begin, shift_labels.begin() + end,
                       [](std::int32_t l) { return l != ops::kIgnoreIndex; });
}

SequenceShard make_shard(const PackedSequence& sequence, std::int64_t begin, std::int64_t end) {
  const std::int64_t S = sequence.length();
  UL_CHECK(0 <= begin && begin <= end && end <= S, "shard [", begin, ", ", end,
           ") outside a sequence of ", S, " tokens");
  UL_CHECK(sequence.position_ids.size() == static_cast<std::size_t>(S) &&
               sequence.shift_labels.size() == static_cast<std::size_t>(S),
           "packed sequence arrays differ in length");
  auto slice = [&](const std::vector<std::int32_t>& v) {
    return Tensor::from_ints(std::vector<std::int32_t>(v.begin() + begin, v.begin() + end),
                             {end - begin});
  };
  SequenceShard shard;
  shard.input_ids = slice(sequence.input_ids);
  shard.position_ids = slice(sequence.position_ids);
  shard.shift_labels = slice(sequence.shift_labels);
  shard.cu_seqlens = Tensor::from_ints(sequence.cu_seqlens,
                                       {static_cast<std::int64_t>(sequence.cu_seqlens.size())});
  shard.global_length = S;
  shard.shard_begin = begin;
  return shard;
}

SequenceShard to_device(const SequenceShard& shard, Device device) {
  if (device.is_cpu() && shard.input_ids.device().is_cpu()) return shard;
  SequenceShard out = shard;
  out.input_ids = shard.input_ids.to(device);
  out.position_ids = shard.position_ids.to(device);
  out.shift_labels = shard.shift_labels.to(device);
  out.cu_seqlens = shard.cu_seqlens.to(device);
  return out;
}

}  // namespace ulysses::data
