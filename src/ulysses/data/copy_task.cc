#include "ulysses/core/error.h"
#include "ulysses/core/rng.h"
#include "ulysses/data/source.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {

namespace {

class CopyTask final : public DocumentSource {
 public:
  explicit CopyTask(const CopyTaskOptions& o) : options_(o) {
    UL_CHECK(o.vocab_size > 2, "copy task: vocab_size must exceed 2 (got ", o.vocab_size, ")");
    UL_CHECK(1 <= o.min_length && o.min_length <= o.max_length,
             "copy task: need 1 <= min_length <= max_length (got ", o.min_length, ", ",
             o.max_length, ")");
  }

  std::string describe() const override {
    if (options_.learn_all)
      return detail::concat("synthetic random tokens (2n + 2 for n in ", options_.min_length, "..",
                            options_.max_length, ", every token a label)");
    return detail::concat("synthetic copy task (random half of ", options_.min_length, "..",
                          options_.max_length, " tokens, separator, copy)");
  }
  std::int64_t size() const override { return -1; }

  Document get(std::int64_t index) const override {
    Rng rng = Rng::derive(options_.seed, {0xC0B1u, static_cast<std::uint64_t>(index)});
    const auto span = static_cast<std::uint64_t>(options_.max_length - options_.min_length + 1);
    const auto n = options_.min_length + static_cast<std::int64_t>(rng.below(span));
    Document doc;
    doc.tokens.reserve(static_cast<std::size_t>(2 * n + 2));
    for (std::int64_t i = 0; i < n; ++i)
      doc.tokens.push_back(2 + static_cast<std::int32_t>(
                                   rng.below(static_cast<std::uint64_t>(options_.vocab_size - 2))));
    if (options_.learn_all) {
      for (std::int64_t i = 0; i <= n + 1; ++i)
        doc.tokens.push_back(2 + static_cast<std::int32_t>(rng.below(
                                     static_cast<std::uint64_t>(options_.vocab_size - 2))));
      doc.labels = doc.tokens;
      return doc;
    }
    doc.tokens.push_back(kSeparatorToken);
    for (std::int64_t i = 0; i < n; ++i) doc.tokens.push_back(doc.tokens[static_cast<std::size_t>(i)]);
    // Learn only the copy: the random half and the separator are unpredictable.
    doc.labels.assign(doc.tokens.size(), ops::kIgnoreIndex);
    for (std::int64_t i = n + 1; i < 2 * n + 1; ++i)
      doc.labels[static_cast<std::size_t>(i)] = doc.tokens[static_cast<std::size_t>(i)];
    return doc;
  }

 private:
  CopyTaskOptions options_;
};

}  // namespace

std::unique_ptr<DocumentSource> make_copy_task(const CopyTaskOptions& options) {
  return std::make_unique<CopyTask>(options);
}

}  // namespace ulysses::data
