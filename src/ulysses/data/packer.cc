#include "ulysses/data/packer.h"

#include "ulysses/core/error.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {

void append_document(PackedSequence& s, const Document& doc) {
  const auto n = static_cast<std::int64_t>(doc.tokens.size());
  if (n == 0) return;
  UL_CHECK(doc.labels.empty() || doc.labels.size() == doc.tokens.size(),
           "document labels must be empty or as long as its tokens");
  if (s.cu_seqlens.empty()) s.cu_seqlens.push_back(0);
  for (std::int64_t i = 0; i < n; ++i) {
    s.input_ids.push_back(doc.tokens[static_cast<std::size_t>(i)]);
    s.position_ids.push_back(static_cast<std::int32_t>(i));
    std::int32_t label = ops::kIgnoreIndex;
    if (i + 1 < n) {
      const auto next = static_cast<std::size_t>(i + 1);
      label = doc.labels.empty() ? doc.tokens[next] : doc.labels[next];
    }
    s.shift_labels.push_back(label);
  }
  s.cu_seqlens.push_back(static_cast<std::int32_t>(s.input_ids.size()));
}

void pad_sequence(PackedSequence& s, std::int64_t length) {
  const std::int64_t missing = length - s.length();
  UL_CHECK(missing >= 0, "cannot pad a sequence of ", s.length(), " tokens to ", length);
  if (missing == 0) return;
  Document padding;
  padding.tokens.assign(static_cast<std::size_t>(missing), kPadToken);
  padding.labels.assign(static_cast<std::size_t>(missing), ops::kIgnoreIndex);
  append_document(s, padding);
  s.padding_tokens += missing;
}

Packer::Packer(const DocumentSource& source, const PackerOptions& options)
    : source_(source), options_(options) {
  UL_CHECK(options.max_seq_length > 0, "--max-seq-length must be positive (got ",
           options.max_seq_length, ")");
  UL_CHECK(options.pad_multiple > 0, "pad multiple must be positive");
}

Document Packer::fetch(std::int64_t index) const {
  Document doc = source_.get(index);
  const auto max = static_cast<std::size_t>(options_.max_seq_length);
  if (doc.tokens.size() > max) {
    doc.tokens.resize(max);
    if (!doc.labels.empty()) doc.labels.resize(max);
  }
  return doc;
}

PackedSequence Packer::next() {
  const std::int64_t size = source_.size();
  auto exhausted = [&] { return size >= 0 && position_ >= size; };
  UL_CHECK(!exhausted(), "data source exhausted at document ", position_, " (",
           source_.describe(), ")");
  PackedSequence s;
  s.cu_seqlens.push_back(0);
  append_document(s, fetch(position_++));
  if (options_.packing) {
    while (!exhausted()) {
      Document doc = fetch(position_);
      if (s.length() + static_cast<std::int64_t>(doc.tokens.size()) > options_.max_seq_length)
        break;
      append_document(s, doc);
      ++position_;
    }
  }
  const std::int64_t m = options_.pad_multiple;
  const std::int64_t target =
      options_.packing ? options_.max_seq_length : (s.length() + m - 1) / m * m;
  pad_sequence(s, (target + m - 1) / m * m);
  return s;
}

}  // namespace ulysses::data
