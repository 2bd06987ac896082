// A training sequence as the model sees it.
//
// PackedSequence is one whole sequence of packed documents, identical on every rank of an SP
// group. SequenceShard is the slice one rank computes on: tokens [shard_begin, shard_begin + T)
// of every per-token array, plus the *global* cu_seqlens (attention needs document boundaries
// of the whole sequence once heads are exchanged for tokens).
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/core/tensor.h"

namespace ulysses::data {

struct PackedSequence {
  std::vector<std::int32_t> input_ids;     // [S]
  std::vector<std::int32_t> position_ids;  // [S], restart at 0 in every document
  std::vector<std::int32_t> shift_labels;  // [S], label[i] = input[i+1] in a document, else -100
  std::vector<std::int32_t> cu_seqlens;    // [n + 1], document boundaries (padding is a document)
  std::int64_t padding_tokens = 0;

  std::int64_t length() const { return static_cast<std::int64_t>(input_ids.size()); }
  // Labels != -100 among tokens [begin, end) (the whole sequence by default).
  std::int64_t valid_labels(std::int64_t begin = 0, std::int64_t end = -1) const;
};

// A run of global token positions [begin, end) of a sequence.
struct TokenRange {
  std::int64_t begin = 0;
  std::int64_t end = 0;
  std::int64_t length() const { return end - begin; }
  bool operator==(const TokenRange&) const = default;
};

struct SequenceShard {
  Tensor input_ids;     // [T] i32
  Tensor position_ids;  // [T] i32
  Tensor shift_labels;  // [T] i32
  Tensor cu_seqlens;    // [n + 1] i32, global boundaries
  // The same boundaries, ids and labels on the host (make_shard fills them, to_device keeps
  // them): the CUDA ops that check them or plan by them (attention, the embedding, the loss,
  // ring attention's cuDNN blocks) read them here (ops/indices.h), so a step never waits to read
  // the device's copies. Empty in a hand-made shard; the ops then read the tensors back.
  std::vector<std::int32_t> cu_seqlens_host;
  std::vector<std::int32_t> input_ids_host;
  std::vector<std::int32_t> shift_labels_host;
  std::int64_t global_length = 0;
  std::int64_t shard_begin = 0;  // global position of the first local token
  // Global positions of the local tokens, in local order: the shard is the concatenation of
  // these runs (one run [shard_begin, shard_begin + T) for a contiguous shard; two or more for
  // the zigzag placement of ring attention).
  std::vector<TokenRange> ranges;

  std::int64_t local_length() const { return input_ids.defined() ? input_ids.dim(0) : 0; }
};

// Tokens [begin, end) of every per-token array of `sequence`, with the global cu_seqlens.
SequenceShard make_shard(const PackedSequence& sequence, std::int64_t begin, std::int64_t end);
// The tokens of the runs `ranges` (in that order) of every per-token array, with the global
// cu_seqlens; runs must lie inside the sequence.
SequenceShard make_shard(const PackedSequence& sequence, const std::vector<TokenRange>& ranges);
// Valid labels (!= -100) among the tokens of `ranges`.
std::int64_t valid_labels(const PackedSequence& sequence, const std::vector<TokenRange>& ranges);

// Zigzag placement for ring attention (docs/parallelism.md). The sequence of S tokens is cut
// into 2R chunks of C = S / (2R) tokens, R = ring_size; ring rank i holds chunks i and
// 2R - 1 - i, so every ring rank has the same share of causal attention work. With Ulysses
// inside the ring (hybrid, U = ulysses_size consecutive SP ranks per ring rank), SP rank
// sp_rank = i * U + u holds the u-th of U equal slices of the concatenation of ring rank i's
// two chunks (a slice may span both). Needs S % (2R) == 0 and (S / R) % U == 0 (padding the
// sequence to a multiple of 2 * R * U gives both); Error otherwise.
std::vector<TokenRange> zigzag_ranges(std::int64_t sequence_length, std::int64_t sp_rank,
                                      std::int64_t ring_size, std::int64_t ulysses_size);

// The runs SP rank sp_rank of an SP group of sp ranks holds: its contiguous 1/sp of the
// sequence (ring_size 1: Ulysses), or its zigzag slice (ring and hybrid: ring_size > 1, Ulysses
// degree sp / ring_size). Every code path that shards a sequence for training or evaluation
// uses this, so the placement matches the attention strategy.
std::vector<TokenRange> sp_shard_ranges(std::int64_t sequence_length, std::int64_t sp_rank,
                                        std::int64_t sp, std::int64_t ring_size);

// The same shard with every tensor copied to `device` (no-op copy avoided on the CPU).
SequenceShard to_device(const SequenceShard& shard, Device device);

// The whole sequence as one shard (single rank).
inline SequenceShard make_full_shard(const PackedSequence& sequence) {
  return make_shard(sequence, 0, sequence.length());
}

}  // namespace ulysses::data
