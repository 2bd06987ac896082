#include <gtest/gtest.h>

#include <algorithm>

#include "ulysses/data/packer.h"
#include "ulysses/data/source.h"

namespace ulysses::data {
namespace {

// A fixed list of documents.
class ListSource final : public DocumentSource {
 public:
  explicit ListSource(std::vector<Document> docs) : docs_(std::move(docs)) {}
  std::string describe() const override { return "list"; }
  std::int64_t size() const override { return static_cast<std::int64_t>(docs_.size()); }
  Document get(std::int64_t i) const override { return docs_[static_cast<std::size_t>(i)]; }

 private:
  std::vector<Document> docs_;
};

TEST(Packer, ShiftsLabelsInsideDocumentsAndRestartsPositions) {
  ListSource source({{{10, 11, 12}, {}}, {{20, 21}, {-100, 21}}, {{30, 31, 32, 33}, {}}});
  PackerOptions options;
  options.max_seq_length = 8;
  Packer packer(source, options);
  const PackedSequence s = packer.next();
  // Documents 1 and 2 fit (5 tokens); document 3 (4 tokens) does not: padded to 8.
  EXPECT_EQ(s.input_ids, (std::vector<std::int32_t>{10, 11, 12, 20, 21, 0, 0, 0}));
  EXPECT_EQ(s.position_ids, (std::vector<std::int32_t>{0, 1, 2, 0, 1, 0, 1, 2}));
  EXPECT_EQ(s.shift_labels, (std::vector<std::int32_t>{11, 12, -100, 21, -100, -100, -100, -100}));
  EXPECT_EQ(s.cu_seqlens, (std::vector<std::int32_t>{0, 3, 5, 8}));
  EXPECT_EQ(s.padding_tokens, 3);
  EXPECT_EQ(s.valid_labels(), 3);
  EXPECT_EQ(packer.position(), 2);
  const PackedSequence t = packer.next();
  EXPECT_EQ(t.cu_seqlens, (std::vector<std::int32_t>{0, 4, 8}));
  EXPECT_THROW(packer.next(), Error);  // finite source exhausted
}

TEST(Packer, WithoutPackingPadsToMultipleAndTruncates) {
  ListSource source({{{1, 2, 3, 4, 5}, {}}, {{6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {}}});
  PackerOptions options;
  options.max_seq_length = 8;
  options.packing = false;
  options.pad_multiple = 4;
  Packer packer(source, options);
  const PackedSequence a = packer.next();
  EXPECT_EQ(a.length(), 8);  // 5 tokens padded to a multiple of 4
  EXPECT_EQ(a.padding_tokens, 3);
  const PackedSequence b = packer.next();
  EXPECT_EQ(b.length(), 8);  // truncated to max_seq_length
  EXPECT_EQ(b.padding_tokens, 0);
  EXPECT_EQ(b.shift_labels.back(), -100);
}

TEST(CopyTask, OnlyTheCopyIsLearnedAndDocumentsAreReproducible) {
  CopyTaskOptions options;
  options.vocab_size = 50;
  options.min_length = 3;
  options.max_length = 9;
  options.seed = 4;
  auto source = make_copy_task(options);
  for (std::int64_t i = 0; i < 20; ++i) {
    const Document d = source->get(i);
    const auto n = (d.tokens.size() - 1) / 2;
    ASSERT_GE(n, 3u);
    ASSERT_LE(n, 9u);
    EXPECT_EQ(d.tokens[n], kSeparatorToken);
    for (std::size_t j = 0; j < n; ++j) {
      EXPECT_GE(d.tokens[j], 2);
      EXPECT_LT(d.tokens[j], 50);
      EXPECT_EQ(d.tokens[n + 1 + j], d.tokens[j]);
      EXPECT_EQ(d.labels[j], -100);
      EXPECT_EQ(d.labels[n + 1 + j], d.tokens[j]);
    }
    EXPECT_EQ(source->get(i).tokens, d.tokens);
  }
  EXPECT_NE(source->get(0).tokens, source->get(1).tokens);
}

TEST(RandomTask, EveryTokenIsALabelAndTheSourceIsEndless) {
  DataOptions options;
  options.data = "synthetic-random";
  options.vocab_size = 50;
  options.copy_min_length = 3;
  options.copy_max_length = 9;
  options.seed = 4;
  EXPECT_TRUE(is_synthetic(options.data));
  auto source = open_data(options);
  EXPECT_EQ(source->size(), -1);
  EXPECT_NE(source->describe().find("every token a label"), std::string::npos);
  bool all_copies = true;
  for (std::int64_t i = 0; i < 20; ++i) {
    const Document d = source->get(i);
    ASSERT_EQ(d.tokens.size() % 2, 0u);
    const auto n = (d.tokens.size() - 2) / 2;
    ASSERT_GE(n, 3u);
    ASSERT_LE(n, 9u);
    EXPECT_EQ(d.labels, d.tokens);
    for (const std::int32_t t : d.tokens) {
      EXPECT_GE(t, 2);
      EXPECT_LT(t, 50);
    }
    // Not the copy task: the second half is not the first.
    if (!std::equal(d.tokens.begin(), d.tokens.begin() + n, d.tokens.begin() + n + 1))
      all_copies = false;
    EXPECT_EQ(source->get(i).tokens, d.tokens);
  }
  EXPECT_FALSE(all_copies);
}

TEST(Shard, SlicesEveryPerTokenArrayAndKeepsGlobalBoundaries) {
  ListSource source({{{5, 6, 7, 8, 9, 10}, {}}});
  PackerOptions options;
  options.max_seq_length = 6;
  Packer packer(source, options);
  const PackedSequence s = packer.next();
  const SequenceShard shard = make_shard(s, 2, 4);
  EXPECT_EQ(shard.input_ids.to_floats(), (std::vector<float>{7, 8}));
  EXPECT_EQ(shard.position_ids.to_floats(), (std::vector<float>{2, 3}));
  EXPECT_EQ(shard.shift_labels.to_floats(), (std::vector<float>{8, 9}));
  EXPECT_EQ(shard.cu_seqlens.to_floats(), (std::vector<float>{0, 6}));
  EXPECT_EQ(shard.global_length, 6);
  EXPECT_EQ(shard.shard_begin, 2);
  EXPECT_THROW(make_shard(s, 4, 7), Error);
}

TEST(Shard, ZigzagRunsConcatenatePerTokenArraysAndCountTheirLabels) {
  // Two documents of 3 and 5 tokens, 8 in all; ring of 2: rank 0 holds chunks 0 and 3.
  ListSource source({{{5, 6, 7}, {}}, {{20, 21, 22, 23, 24}, {}}});
  PackerOptions options;
  options.max_seq_length = 8;
  Packer packer(source, options);
  const PackedSequence s = packer.next();
  ASSERT_EQ(s.length(), 8);
  const std::vector<TokenRange> ranges = zigzag_ranges(8, 0, 2, 1);
  ASSERT_EQ(ranges, (std::vector<TokenRange>{{0, 2}, {6, 8}}));
  const SequenceShard shard = make_shard(s, ranges);
  EXPECT_EQ(shard.input_ids.to_floats(), (std::vector<float>{5, 6, 23, 24}));
  EXPECT_EQ(shard.position_ids.to_floats(), (std::vector<float>{0, 1, 3, 4}));
  EXPECT_EQ(shard.shift_labels.to_floats(), (std::vector<float>{6, 7, 24, -100}));
  EXPECT_EQ(shard.cu_seqlens.to_floats(), (std::vector<float>{0, 3, 8}));
  EXPECT_EQ(shard.ranges, ranges);
  EXPECT_EQ(shard.shard_begin, 0);
  // The host copies the CUDA ops read instead of the device's (ops/indices.h).
  EXPECT_EQ(shard.input_ids_host, (std::vector<std::int32_t>{5, 6, 23, 24}));
  EXPECT_EQ(shard.shift_labels_host, (std::vector<std::int32_t>{6, 7, 24, -100}));
  EXPECT_EQ(shard.cu_seqlens_host, (std::vector<std::int32_t>{0, 3, 8}));
  EXPECT_EQ(to_device(shard, Device::cpu()).input_ids_host, shard.input_ids_host);
  EXPECT_EQ(valid_labels(s, ranges), 3);
  // The ranks' label counts add up to the sequence's.
  std::int64_t total = 0;
  for (std::int64_t r = 0; r < 2; ++r) total += valid_labels(s, zigzag_ranges(8, r, 2, 1));
  EXPECT_EQ(total, s.valid_labels());
  EXPECT_THROW(make_shard(s, std::vector<TokenRange>{{6, 9}}), Error);
  // The trainer's choice: contiguous for Ulysses, zigzag with a ring.
  EXPECT_EQ(sp_shard_ranges(8, 1, 2, 1), (std::vector<TokenRange>{{4, 8}}));
  EXPECT_EQ(sp_shard_ranges(8, 1, 2, 2), (std::vector<TokenRange>{{2, 4}, {4, 6}}));
  EXPECT_EQ(sp_shard_ranges(16, 3, 4, 2), zigzag_ranges(16, 3, 2, 2));
  EXPECT_THROW(sp_shard_ranges(8, 0, 4, 3), Error);
}

}  // namespace
}  // namespace ulysses::data
