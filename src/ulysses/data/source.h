// Document sources: where training documents come from.
//
// A Document is a list of token ids plus, optionally, which of them are learned: Hugging Face's
// `labels` convention, unshifted (label[i] == -100 marks token i as not to be predicted). A
// source is indexed: document i is a pure function of i (and the source's seed), so every rank
// can read any document without communication and a data position is one integer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ulysses::data {

struct Document {
  std::vector<std::int32_t> tokens;
  std::vector<std::int32_t> labels;  // same length as tokens, or empty (= tokens, all learned)
};

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  virtual std::string describe() const = 0;
  // Number of documents; -1 for an endless (generated) source.
  virtual std::int64_t size() const = 0;
  // Document `index` (0 <= index < size(), any index >= 0 for endless sources).
  virtual Document get(std::int64_t index) const = 0;
  // Documents in one epoch: size() for a finite source, the underlying file's count for epoch
  // shuffling over one, -1 for a generated source (no epochs).
  virtual std::int64_t documents_per_epoch() const { return size(); }
};

// Synthetic long-range copy task. Document: n random tokens, a separator, then the same n
// tokens again. Only the copy is learnable (the random half gets label -100), so the logged loss
// can only fall if each position attends n + 1 tokens back; a model that cannot see that far
// stays at ln(vocab - 2). Token 0 is padding, token 1 the separator, the rest are drawn
// uniformly from [2, vocab_size).
// With learn_all ("synthetic-random") the document is 2n + 2 uniformly random tokens, every one
// a label: nothing is learnable, but the loss covers every position as in plain pre-training
// (the throughput workload of gpu_train_bench, like the PyTorch anchor's: with n = (S - 2) / 2
// one document fills a sequence of S tokens, no padding).
struct CopyTaskOptions {
  std::int64_t vocab_size = 128;
  std::int64_t min_length = 63;  // n, the length of the random half
  std::int64_t max_length = 63;
  std::uint64_t seed = 0;
  bool learn_all = false;
};
std::unique_ptr<DocumentSource> make_copy_task(const CopyTaskOptions& options);

// JSON Lines in the Hugging Face datasets convention: one document per line,
// {"input_ids": [...]} and optionally "labels" of the same length, unshifted, -100 on tokens
// that must not be learned. The file is indexed (and every line validated: JSON, lengths, token
// ids < vocab_size) when opened; errors name the file and line.
std::unique_ptr<DocumentSource> make_jsonl_source(const std::string& path, std::int64_t vocab_size);

// Pre-tokenized binary documents in a directory (docs/formats.md):
//   tokens.bin     uint32 little-endian token ids of all documents, back to back
//   offsets.bin    uint64 little-endian, n + 1 offsets into tokens.bin (in tokens), 0 first
//   loss_mask.bin  optional, one byte per token: 1 = learn this token, 0 = label -100
// Validated when opened (sizes, monotone offsets, token ids < vocab_size); errors name the file.
std::unique_ptr<DocumentSource> make_token_file_source(const std::string& directory,
                                                       std::int64_t vocab_size);

// Endless epochs over a finite source: epoch e visits every document once, in an order drawn
// from (seed, e). Document i of the result is a pure function of i.
std::unique_ptr<DocumentSource> make_epoch_shuffled(std::unique_ptr<DocumentSource> source,
                                                    std::uint64_t seed);

// Resolves --data: "synthetic-copy", "synthetic-random", a .jsonl file (token ids, or text when
// `tokenizer` names a directory or file with a tokenizer.json: data/text_data.h), or a directory
// with tokens.bin. With max_seq_length > 0, documents of finite sources longer than it are split or
// truncated (data/long_documents.h).
struct DataOptions {
  std::string data = "synthetic-copy";
  std::string tokenizer;  // "" = none; e.g. the HF model directory
  std::int64_t max_seq_length = 0;
  std::string long_documents = "split";
  // Tokenization cache of text .jsonl (data/token_cache.h): "" = .ulysses_cache next to the
  // data file, "none" = no cache.
  std::string data_cache_dir;
  std::int64_t vocab_size = 0;
  std::uint64_t seed = 0;
  std::int64_t copy_min_length = 63;
  std::int64_t copy_max_length = 63;
  // true: endless epochs in a shuffled order (training); false: the finite source once, in
  // file order (evaluation; synthetic-copy stays endless).
  bool shuffle = true;
};
std::unique_ptr<DocumentSource> open_data(const DataOptions& options);

// Whether --data names one of the endless generated sources (synthetic-copy, synthetic-random).
inline bool is_synthetic(const std::string& data) {
  return data == "synthetic-copy" || data == "synthetic-random";
}

inline constexpr std::int32_t kPadToken = 0;
inline constexpr std::int32_t kSeparatorToken = 1;

}  // namespace ulysses::data
