// Block pair classification (see block_pair.h).
#include "ulysses/ops/block_pair.h"

#include <algorithm>

#include "ulysses/core/error.h"

namespace ulysses::ops {
namespace {

// The document holding token t (cu[j] <= t < cu[j + 1]; t < cu[n]).
std::int64_t document_of(const std::vector<std::int32_t>& cu, std::int64_t t) {
  // The last boundary <= t among cu[0 .. n - 1]: empty documents before it are skipped.
  const auto it = std::upper_bound(cu.begin(), cu.end() - 1, t);
  return (it - cu.begin()) - 1;
}

}  // namespace

BlockPair classify_block_pair(const std::vector<std::int32_t>& cu, std::int64_t q_begin,
                              std::int64_t Tq, std::int64_t k_begin, std::int64_t Tk) {
  UL_CHECK(!cu.empty() && cu.front() == 0, "block pair: cu_seqlens must start at 0");
  for (std::size_t j = 1; j < cu.size(); ++j)
    UL_CHECK(cu[j] >= cu[j - 1], "block pair: cu_seqlens must be non-decreasing (entry ", j, ")");
  const std::int64_t total = cu.back(), q_end = q_begin + Tq, k_end = k_begin + Tk;
  UL_CHECK(Tq >= 0 && Tk >= 0 && q_begin >= 0 && q_end <= total && k_begin >= 0 && k_end <= total,
           "block pair: queries [", q_begin, ", ", q_end, ") or keys [", k_begin, ", ", k_end,
           ") outside the sequence of ", total, " tokens");
  BlockPair pair;
  if (Tq == 0 || Tk == 0 || k_begin >= q_end) {
    pair.kind = BlockPairKind::masked;
    return pair;
  }
  if (q_begin == k_begin && Tq == Tk) {
    pair.kind = BlockPairKind::diagonal;
    pair.first_document = document_of(cu, q_begin);
    const std::int64_t last = document_of(cu, q_end - 1);
    pair.documents = last - pair.first_document + 1;
    for (std::int64_t j = pair.first_document; j <= last; ++j) {
      const std::int64_t lo = std::max<std::int64_t>(cu[j], q_begin);
      const std::int64_t hi = std::min<std::int64_t>(cu[j + 1], q_end);
      pair.longest = std::max(pair.longest, hi - lo);
    }
    pair.query_rows = pair.key_rows = Tq;
    return pair;
  }
  if (k_end <= q_begin) {
    const std::int64_t d = document_of(cu, q_begin);
    if (cu[d] >= k_end) {  // the document of the first query starts after the keys
      pair.kind = BlockPairKind::masked;
      return pair;
    }
    pair.kind = BlockPairKind::before;
    pair.first_document = d;
    pair.documents = 1;
    pair.query_rows = std::min<std::int64_t>(cu[d + 1], q_end) - q_begin;
    pair.key_begin = std::max<std::int64_t>(cu[d], k_begin) - k_begin;
    pair.key_rows = Tk - pair.key_begin;
    pair.longest = std::max(pair.query_rows, pair.key_rows);
    return pair;
  }
  return pair;  // other
}

}  // namespace ulysses::ops
