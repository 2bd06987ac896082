#include "ulysses/data/token_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "ulysses/core/error.h"
#include "ulysses/ops/cross_entropy.h"

namespace ulysses::data {

namespace fs = std::filesystem;

void check_token_id(std::int64_t token, std::int64_t vocab, const std::string& where) {
  if (token < 0 || token >= vocab)
    UL_FAIL(where, ": token id ", token, " is outside the vocabulary (vocab_size ", vocab,
            "); was the data tokenized for this model?");
}

fs::path temporary_sibling(const fs::path& path) {
  auto name = path.filename().string();
  if (name.empty()) name = path.parent_path().filename().string();
  return path.parent_path() / detail::concat(".", name, ".tmp-", ::getpid());
}
namespace {
template <typename T>
void write_array(const fs::path& path, const std::vector<T>& values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(T)));
  if (!out) UL_FAIL(path.string(), ": write failed (disk full?)");
}

// ---- binary token files -------------------------------------------------------------------

// A read-only memory map of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const fs::path& path) : path_(path.string()) {
    fd_ = ::open(path_.c_str(), O_RDONLY);
    if (fd_ < 0) UL_FAIL("--data: cannot open ", path_);
    struct stat st {};
    ::fstat(fd_, &st);
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (data_ == MAP_FAILED) UL_FAIL("--data: cannot map ", path_);
    }
  }
  ~MappedFile() {
    if (data_ && data_ != MAP_FAILED) ::munmap(data_, size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

class TokenFileSource final : public DocumentSource {
 public:
  TokenFileSource(const fs::path& dir, std::int64_t vocab)
      : dir_(dir.string()), tokens_(dir / "tokens.bin"), offsets_(dir / "offsets.bin") {
    if (tokens_.size() % 4 != 0)
      UL_FAIL(tokens_.path(), ": size ", tokens_.size(), " is not a multiple of 4 (uint32 tokens)");
    if (offsets_.size() % 8 != 0 || offsets_.size() < 16)
      UL_FAIL(offsets_.path(), ": needs at least 2 uint64 offsets (size ", offsets_.size(), ")");
    const std::uint64_t num_tokens = tokens_.size() / 4;
    count_ = static_cast<std::int64_t>(offsets_.size() / 8 - 1);
    const std::uint64_t* off = offsets_.as<std::uint64_t>();
    if (off[0] != 0) UL_FAIL(offsets_.path(), ": the first offset must be 0 (got ", off[0], ")");
    for (std::int64_t i = 0; i < count_; ++i)
      if (off[i + 1] < off[i]) UL_FAIL(offsets_.path(), ": offsets decrease at document ", i);
    if (off[count_] != num_tokens)
      UL_FAIL(offsets_.path(), ": the last offset is ", off[count_], " but tokens.bin holds ",
              num_tokens, " tokens");
    const std::uint32_t* tok = tokens_.as<std::uint32_t>();
    for (std::uint64_t i = 0; i < num_tokens; ++i)
      if (tok[i] >= static_cast<std::uint64_t>(vocab))
        check_token_id(tok[i], vocab, detail::concat(tokens_.path(), " (token ", i, ")"));
    if (fs::exists(dir / "loss_mask.bin")) {
      mask_ = std::make_unique<MappedFile>(dir / "loss_mask.bin");
      if (mask_->size() != num_tokens)
        UL_FAIL(mask_->path(), ": ", mask_->size(), " bytes but tokens.bin holds ", num_tokens,
                " tokens (one mask byte per token)");
    }
  }

  std::string describe() const override {
    return detail::concat(dir_, " (token files, ", count_, " documents", mask_ ? ", loss mask" : "",
                          ")");
  }
  std::int64_t size() const override { return count_; }
  Document get(std::int64_t index) const override {
    UL_CHECK(index >= 0 && index < count_, "document ", index, " outside ", dir_);
    const std::uint64_t* off = offsets_.as<std::uint64_t>();
    const std::uint32_t* tok = tokens_.as<std::uint32_t>();
    Document doc;
    doc.tokens.assign(tok + off[index], tok + off[index + 1]);
    if (mask_) {
      const auto* m = mask_->as<std::uint8_t>();
      for (std::uint64_t i = off[index]; i < off[index + 1]; ++i)
        doc.labels.push_back(m[i] ? static_cast<std::int32_t>(tok[i]) : ops::kIgnoreIndex);
    }
    return doc;
  }

 private:
  std::string dir_;
  MappedFile tokens_, offsets_;
  std::unique_ptr<MappedFile> mask_;
  std::int64_t count_ = 0;
};

}  // namespace

std::unique_ptr<DocumentSource> make_token_file_source(const std::string& directory,
                                                       std::int64_t vocab) {
  return std::make_unique<TokenFileSource>(directory, vocab);
}

std::int64_t write_token_files(const std::string& dir, const std::vector<Document>& documents) {
  const fs::path out(dir);
  if (fs::exists(out))
    UL_FAIL("--output ", dir, ": already exists (remove it or choose another directory)");
  std::vector<std::uint32_t> tokens;
  std::vector<std::uint64_t> offsets{0};
  std::vector<std::uint8_t> mask;
  bool any_labels = false;
  std::int64_t skipped = 0;
  for (const Document& d : documents) {
    if (d.tokens.empty()) {
      ++skipped;
      continue;
    }
    any_labels = any_labels || !d.labels.empty();
    for (std::size_t i = 0; i < d.tokens.size(); ++i) {
      tokens.push_back(static_cast<std::uint32_t>(d.tokens[i]));
      mask.push_back(d.labels.empty() || d.labels[i] != ops::kIgnoreIndex ? 1 : 0);
    }
    offsets.push_back(tokens.size());
  }
  const fs::path tmp = temporary_sibling(out);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write_array(tmp / "tokens.bin", tokens);
  write_array(tmp / "offsets.bin", offsets);
  if (any_labels) write_array(tmp / "loss_mask.bin", mask);
  fs::rename(tmp, out);
  return skipped;
}

}  // namespace ulysses::data
