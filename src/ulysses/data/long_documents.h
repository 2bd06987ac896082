// Documents longer than a training sequence: `--long-documents split` (the default) cuts them
// into consecutive pieces of at most max_seq_length tokens, each its own document; `truncate`
// keeps only the first max_seq_length tokens. A piece's last token predicts nothing (labels
// never cross a document boundary), so splitting loses one label per extra piece.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "ulysses/data/source.h"

namespace ulysses::data {

enum class LongDocuments { split, truncate };

// "split" or "truncate"; Error naming --long-documents otherwise.
LongDocuments parse_long_documents(const std::string& value);

// Wraps a finite source. Reads every document once to find the long ones; describe() says how
// many there were and what became of them (the plan and the log print it). Document i of the
// result is a pure function of i.
std::unique_ptr<DocumentSource> make_long_document_source(std::unique_ptr<DocumentSource> source,
                                                          std::int64_t max_seq_length,
                                                          LongDocuments mode);

}  // namespace ulysses::data
