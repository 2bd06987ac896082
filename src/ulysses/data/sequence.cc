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
  return make_shard(sequence, std::vector<TokenRange>{{begin, end}});
}

SequenceShard make_shard(const PackedSequence& sequence, const std::vector<TokenRange>& ranges) {
  const std::int64_t S = sequence.length();
  UL_CHECK(sequence.position_ids.size() == static_cast<std::size_t>(S) &&
               sequence.shift_labels.size() == static_cast<std::size_t>(S),
           "packed sequence arrays differ in length");
  UL_CHECK(!ranges.empty(), "shard with no token range");
  std::int64_t T = 0;
  for (const TokenRange& r : ranges) {
    UL_CHECK(0 <= r.begin && r.begin <= r.end && r.end <= S, "shard [", r.begin, ", ", r.end,
             ") outside a sequence of ", S, " tokens");
    T += r.length();
  }
  auto slice = [&](const std::vector<std::int32_t>& v) {
    std::vector<std::int32_t> local;
    local.reserve(static_cast<std::size_t>(T));
    for (const TokenRange& r : ranges)
      local.insert(local.end(), v.begin() + r.begin, v.begin() + r.end);
    return local;
  };
  SequenceShard shard;
  shard.input_ids_host = slice(sequence.input_ids);
  shard.shift_labels_host = slice(sequence.shift_labels);
  shard.input_ids = Tensor::from_ints(shard.input_ids_host, {T});
  shard.position_ids = Tensor::from_ints(slice(sequence.position_ids), {T});
  shard.shift_labels = Tensor::from_ints(shard.shift_labels_host, {T});
  shard.cu_seqlens = Tensor::from_ints(sequence.cu_seqlens,
                                       {static_cast<std::int64_t>(sequence.cu_seqlens.size())});
  shard.cu_seqlens_host = sequence.cu_seqlens;
  shard.global_length = S;
  shard.shard_begin = ranges.front().begin;
  shard.ranges = ranges;
  return shard;
}

std::int64_t valid_labels(const PackedSequence& sequence, const std::vector<TokenRange>& ranges) {
  std::int64_t n = 0;
  for (const TokenRange& r : ranges) n += sequence.valid_labels(r.begin, r.end);
  return n;
}

std::vector<TokenRange> zigzag_ranges(std::int64_t S, std::int64_t sp_rank, std::int64_t R,
                                      std::int64_t U) {
  UL_CHECK(R >= 1 && U >= 1 && 0 <= sp_rank && sp_rank < R * U, "zigzag: SP rank ", sp_rank,
           " outside a ring of ", R, " x Ulysses ", U);
  UL_CHECK(S % (2 * R) == 0 && (S / R) % U == 0, "zigzag: a sequence of ", S,
           " tokens does not split into ", 2 * R, " chunks of equal length shared by ", U,
           " Ulysses ranks each; pad it to a multiple of ", 2 * R * U);
  const std::int64_t C = S / (2 * R), i = sp_rank / U, u = sp_rank % U, L = 2 * C / U;
  // Ring rank i's tokens, in local order: chunk i then chunk 2R - 1 - i.
  const TokenRange chunks[2] = {{i * C, (i + 1) * C}, {(2 * R - 1 - i) * C, (2 * R - i) * C}};
  // Slice [u L, (u + 1) L) of their concatenation, mapped back to global runs.
  std::vector<TokenRange> out;
  for (std::int64_t c = 0; c < 2; ++c) {
    const std::int64_t lo = std::max(u * L, c * C), hi = std::min((u + 1) * L, (c + 1) * C);
    if (lo < hi) out.push_back({chunks[c].begin + lo - c * C, chunks[c].begin + hi - c * C});
  }
  if (out.empty()) out.push_back({0, 0});  // an empty sequence
  return out;
}

std::vector<TokenRange> sp_shard_ranges(std::int64_t S, std::int64_t sp_rank, std::int64_t sp,
                                        std::int64_t ring_size) {
  UL_CHECK(sp >= 1 && ring_size >= 1 && sp % ring_size == 0, "shard: ring size ", ring_size,
           " does not divide sp ", sp);
  if (ring_size > 1) return zigzag_ranges(S, sp_rank, ring_size, sp / ring_size);
  UL_CHECK(S % sp == 0, "shard: a sequence of ", S, " tokens does not split over sp ", sp,
           "; pad it to a multiple of ", sp);
  const std::int64_t T = S / sp;
  return {{sp_rank * T, (sp_rank + 1) * T}};
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
