// Packer: turns the document stream into training sequences.
//
// With packing, whole documents are placed greedily, in order, into sequences of at most
// max_seq_length tokens; the rest of a sequence is padding (its own "document" in cu_seqlens,
// labels -100). Without packing every sequence holds one document. A document longer than
// max_seq_length is truncated to it. Every sequence is then padded to a multiple of pad_multiple
// (the SP size). Labels are shifted here, on the whole sequence, before any sharding:
// shift_labels[i] = labels[i + 1] inside a document, -100 at each document's last token.
//
// The packer's only state is the index of the next document (position()), so a step's batch
// is a function of (source, position) and resuming needs one integer.
#pragma once

#include <cstdint>
#include <vector>

#include "ulysses/data/sequence.h"
#include "ulysses/data/source.h"

namespace ulysses::data {

struct PackerOptions {
  std::int64_t max_seq_length = 1024;
  bool packing = true;
  std::int64_t pad_multiple = 1;
};

class Packer {
 public:
  Packer(const DocumentSource& source, const PackerOptions& options);

  // The next sequence; Error when a finite source is exhausted (callers wrap around with
  // set_position for epochs).
  PackedSequence next();
  std::int64_t position() const { return position_; }
  void set_position(std::int64_t position) { position_ = position; }

 private:
  Document fetch(std::int64_t index) const;

  const DocumentSource& source_;
  PackerOptions options_;
  std::int64_t position_ = 0;
};

// Appends one document (tokens + unshifted labels) to a sequence under construction.
void append_document(PackedSequence& sequence, const Document& document);
// Pads a sequence with a padding document to `length` tokens.
void pad_sequence(PackedSequence& sequence, std::int64_t length);

}  // namespace ulysses::data
