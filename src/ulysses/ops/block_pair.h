// Which mask a block pair of ring attention has (ops/block_attention.h), decided on the host from
// the document boundaries, and the per-document pieces a fused kernel needs for it.
//
// A block pair is q's global tokens [q_begin, q_begin + Tq) against keys [k_begin, k_begin + Tk)
// of one packed sequence (documents [cu[j], cu[j + 1])). The zigzag ring produces only three
// kinds, each of which cuDNN's fused attention runs as ragged batch entries:
//   diagonal: the same range (q_begin == k_begin, Tq == Tk): causal inside every document; the
//             documents that meet the range are the batch entries (equal query and key segments,
//             top-left causal).
//   before:   every key before every query (k_begin + Tk <= q_begin): only the document holding
//             token q_begin can see keys (a document meeting both ranges contains the gap
//             between them, and at most one does); its queries [q_begin, min(end, q_end)) see
//             its keys [max(start, k_begin), k_end) without a causal mask: one batch entry.
//   masked:   no query sees any key (keys after the queries, or no document meets both ranges).
// Anything else (overlapping, partly causal ranges) is `other`: only the reference kernel runs it.
#pragma once

#include <cstdint>
#include <vector>

namespace ulysses::ops {

enum class BlockPairKind { diagonal, before, masked, other };

struct BlockPair {
  BlockPairKind kind = BlockPairKind::other;
  // diagonal: documents [first_document, first_document + documents) meet the range; the longest
  // of their segments inside it has `longest` tokens.
  std::int64_t first_document = 0, documents = 0, longest = 0;
  // before: queries [0, query_rows) of the block see keys [key_begin, key_begin + key_rows) of
  // theirs (block-local rows); diagonal: query_rows == key_rows == Tq, key_begin 0.
  std::int64_t query_rows = 0, key_begin = 0, key_rows = 0;
};

// cu: the sequence's boundaries ([n + 1], cu[0] == 0, non-decreasing; both ranges inside
// [0, cu[n]]; Error otherwise). Tq, Tk >= 0; an empty range gives masked.
BlockPair classify_block_pair(const std::vector<std::int32_t>& cu, std::int64_t q_begin,
                              std::int64_t Tq, std::int64_t k_begin, std::int64_t Tk);

}  // namespace ulysses::ops
