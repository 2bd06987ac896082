#include "ulysses/data/long_documents.h"

#include <vector>

#include "ulysses/core/error.h"

namespace ulysses::data {

LongDocuments parse_long_documents(const std::string& value) {
  if (value == "split") return LongDocuments::split;
  if (value == "truncate") return LongDocuments::truncate;
  UL_FAIL("--long-documents ", value, ": use split (consecutive pieces) or truncate");
}

namespace {

class LongDocumentSource final : public DocumentSource {
 public:
  LongDocumentSource(std::unique_ptr<DocumentSource> source, std::int64_t max_len,
                     LongDocuments mode)
      : source_(std::move(source)), max_(max_len), mode_(mode) {
    UL_CHECK(source_->size() >= 0, "long-document handling needs a finite source");
    UL_CHECK(max_ > 0, "--max-seq-length must be positive (got ", max_, ")");
    for (std::int64_t i = 0; i < source_->size(); ++i) {
      const auto n = static_cast<std::int64_t>(source_->get(i).tokens.size());
      std::int64_t pieces = 1;
      if (n > max_) {
        ++long_;
        if (mode_ == LongDocuments::split)
          pieces = (n + max_ - 1) / max_;
        else
          dropped_ += n - max_;
      }
      for (std::int64_t p = 0; p < pieces; ++p) pieces_.push_back({i, p * max_});
    }
  }

  std::string describe() const override {
    if (long_ == 0) return source_->describe();
    if (mode_ == LongDocuments::split)
      return detail::concat(source_->describe(), "; ", long_, " documents longer than ", max_,
                            " tokens split into pieces (", size(), " documents now)");
    return detail::concat(source_->describe(), "; ", long_, " documents longer than ", max_,
                          " tokens truncated (", dropped_, " tokens dropped)");
  }
  std::int64_t size() const override { return static_cast<std::int64_t>(pieces_.size()); }
  Document get(std::int64_t index) const override {
    const Piece& piece = pieces_.at(static_cast<std::size_t>(index));
    Document doc = source_->get(piece.document);
    const auto n = static_cast<std::int64_t>(doc.tokens.size());
    if (n <= max_) return doc;
    const std::int64_t end = std::min(n, piece.begin + max_);
    Document out;
    out.tokens.assign(doc.tokens.begin() + piece.begin, doc.tokens.begin() + end);
    if (!doc.labels.empty())
      out.labels.assign(doc.labels.begin() + piece.begin, doc.labels.begin() + end);
    return out;
  }

 private:
  struct Piece {
    std::int64_t document;
    std::int64_t begin;  // first token of the piece
  };
  std::unique_ptr<DocumentSource> source_;
  std::int64_t max_;
  LongDocuments mode_;
  std::vector<Piece> pieces_;
  std::int64_t long_ = 0, dropped_ = 0;
};

}  // namespace

std::unique_ptr<DocumentSource> make_long_document_source(std::unique_ptr<DocumentSource> source,
                                                          std::int64_t max_seq_length,
                                                          LongDocuments mode) {
  return std::make_unique<LongDocumentSource>(std::move(source), max_seq_length, mode);
}

}  // namespace ulysses::data
