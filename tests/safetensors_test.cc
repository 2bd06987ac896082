#include "ulysses/io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "test_util.h"
#include "ulysses/core/rng.h"

namespace ulysses::io {
namespace {

namespace fs = std::filesystem;
using Bytes = std::string;

// Little-endian encodings written by hand, independent of the code under test.
Bytes le_u64(std::uint64_t v) {
  Bytes out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}
Bytes le_u16(std::uint16_t v) { return {static_cast<char>(v & 0xff), static_cast<char>(v >> 8)}; }
Bytes le_f32(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  Bytes out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  return out;
}
Bytes le_i64(std::int64_t v) { return le_u64(static_cast<std::uint64_t>(v)); }

// A safetensors file as the spec describes it: u64 header length, header, data.
Bytes safetensors_bytes(const std::string& header, const Bytes& data) {
  return le_u64(header.size()) + header + data;
}

class Safetensors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ulysses_safetensors_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write_bytes(const std::string& name, const Bytes& bytes) {
    const fs::path path = dir_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  // Expects opening (and reading every tensor of) `path` to throw an Error naming the file and
  // containing `fragment`.
  void expect_corrupt(const fs::path& path, const std::string& fragment) {
    SCOPED_TRACE(path.filename().string());
    try {
      SafetensorsReader reader(path);
      for (const auto& name : reader.names()) reader.read(name);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find(path.string()), std::string::npos) << message;
      EXPECT_NE(message.find(fragment), std::string::npos)
          << "want '" << fragment << "' in " << message;
    }
  }

  bool any_tmp_file() const {
    for (const auto& entry : fs::directory_iterator(dir_))
      if (entry.path().extension() == ".tmp") return true;
    return false;
  }

  fs::path dir_;
};

void expect_same_bytes(const Tensor& a, const Tensor& b) {
  ASSERT_EQ(a.dtype(), b.dtype());
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
}

TEST_F(Safetensors, RoundTripF32AndBf16WithMetadata) {
  Rng rng(1);
  const Tensor weight = testing::random_tensor({3, 5}, rng);             // f32 [3, 5]
  const Tensor half = testing::random_tensor({7}, rng).to(DType::bf16);  // bf16 [7]
  const Tensor scalar = Tensor::from_floats({2.5f}, {});                 // f32 []
  const Tensor empty = Tensor::empty({0, 4}, DType::f32);                // f32 [0, 4]
  const Tensor ids = Tensor::from_ints({1, -2, 3}, {3});                 // i32 [3]
  const fs::path path = dir_ / "model.safetensors";
  write_safetensors(
      path,
      {{"z.weight", weight}, {"a.half", half}, {"scalar", scalar}, {"empty", empty}, {"ids", ids}},
      {{"step", "42"}});
  EXPECT_FALSE(fs::exists(path.string() + ".tmp"));
  EXPECT_FALSE(any_tmp_file());

  // Header length is a multiple of 8 (read by hand from the first 8 bytes).
  std::ifstream in(path, std::ios::binary);
  unsigned char length[8];
  in.read(reinterpret_cast<char*>(length), 8);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | length[i];
  EXPECT_EQ(n % 8, 0u);

  SafetensorsReader reader(path);
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"z.weight", "a.half", "scalar", "empty",
                                                      "ids"}));  // given order
  EXPECT_EQ(reader.metadata().at("step"), "42");
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  EXPECT_EQ(reader.entry("a.half").dtype, "BF16");
  expect_same_bytes(reader.read("z.weight"), weight);
  expect_same_bytes(reader.read("a.half"), half);
  expect_same_bytes(reader.read("scalar"), scalar);
  expect_same_bytes(reader.read("empty"), empty);
  expect_same_bytes(reader.read("ids"), ids);
  // Conversions on read.
  expect_same_bytes(reader.read("z.weight", DType::bf16), weight.to(DType::bf16));
  expect_same_bytes(reader.read("a.half", DType::f32), half.to(DType::f32));
  const Tensor ids64 = reader.read("ids", DType::i64);
  EXPECT_EQ(ids64.data<std::int64_t>()[1], -2);
  EXPECT_THROW(reader.read("ids", DType::f32), Error);
  EXPECT_THROW(reader.read("z.weight", DType::i32), Error);
  EXPECT_THROW(reader.read("missing"), Error);
}

// Element ranges (a ZeRO rank's shard) of F32, BF16 and F16 tensors, read alone and converted
// to f32: equal to the slices of the whole tensor; ranges outside the tensor and integer
// tensors are refused naming the tensor.
TEST_F(Safetensors, ReadsElementRangesAsF32) {
  Rng rng(3);
  const Tensor weight = testing::random_tensor({4, 5}, rng);  // f32 [4, 5]
  const Tensor half = testing::random_tensor({9}, rng).to(DType::bf16);
  const fs::path path = dir_ / "ranges.safetensors";
  write_safetensors(path, {{"w", weight}, {"h", half}, {"ids", Tensor::from_ints({1, 2}, {2})}});
  const SafetensorsReader reader(path);
  const std::vector<float> w = weight.to_floats(), h = half.to_floats();
  for (const auto& [begin, end] :
       std::vector<std::pair<int, int>>{{0, 20}, {3, 11}, {19, 20}, {7, 7}}) {
    EXPECT_EQ(reader.read_elements("w", begin, end).to_floats(),
              std::vector<float>(w.begin() + begin, w.begin() + end));
  }
  EXPECT_EQ(reader.read_elements("h", 2, 9).to_floats(),
            std::vector<float>(h.begin() + 2, h.end()));
  for (const auto& [begin, end] : std::vector<std::pair<int, int>>{{-1, 3}, {5, 21}, {4, 3}}) {
    try {
      reader.read_elements("w", begin, end);
      ADD_FAILURE() << "range [" << begin << ", " << end << ") accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("tensor 'w'"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(reader.read_elements("ids", 0, 1), Error);
  // F16 (hand-built, as ReadsHandBuiltF16): elements 1..3 of 1.0, -2.0, 65504, 2^-24.
  const Bytes data = le_u16(0x3c00) + le_u16(0xc000) + le_u16(0x7bff) + le_u16(0x0001);
  const fs::path f16 = write_bytes(
      "f16r.safetensors",
      safetensors_bytes(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", data));
  EXPECT_EQ(SafetensorsReader(f16).read_elements("h", 1, 4).to_floats(),
            (std::vector<float>{-2.0f, 65504.0f, std::ldexp(1.0f, -24)}));
}

TEST_F(Safetensors, ReadsHandBuiltF16) {
  // 1.0, -2.0, 65504 (largest half), 2^-24 (smallest subnormal), +inf, 0.333251953125.
  const Bytes data = le_u16(0x3c00) + le_u16(0xc000) + le_u16(0x7bff) + le_u16(0x0001) +
                     le_u16(0x7c00) + le_u16(0x3555);
  const fs::path path = write_bytes(
      "f16.safetensors",
      safetensors_bytes(R"({"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})", data));
  SafetensorsReader reader(path);
  const Tensor h = reader.read("h");
  ASSERT_EQ(h.dtype(), DType::f32);
  ASSERT_EQ(h.shape(), (Shape{2, 3}));
  const float* p = h.data<float>();
  EXPECT_EQ(p[0], 1.0f);
  EXPECT_EQ(p[1], -2.0f);
  EXPECT_EQ(p[2], 65504.0f);
  EXPECT_EQ(p[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(p[4]) && p[4] > 0);
  EXPECT_EQ(p[5], 0.333251953125f);
  EXPECT_EQ(reader.read("h", DType::bf16).dtype(), DType::bf16);
}

TEST_F(Safetensors, ReadsFileLaidOutLikePythonSafetensors) {
  // What safetensors.torch.save_file writes: metadata first, header padded with spaces to a
  // multiple of 8, tensors in an order of its own choosing (here the data order differs from
  // the header order).
  std::string header =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[24,32]},)"
      R"("ids":{"dtype":"I64","shape":[3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[32,36]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const Bytes data = le_i64(7) + le_i64(-1) + le_i64(1LL << 40) + le_f32(0.5f) + le_f32(-3.0f) +
                     le_u16(0x3f80) /* 1.0 */ + le_u16(0xc040) /* -3.0 */;
  const fs::path path = write_bytes("python.safetensors", safetensors_bytes(header, data));
  SafetensorsReader reader(path);
  EXPECT_EQ(reader.names(), (std::vector<std::string>{"ids", "w", "b"}));  // data order
  EXPECT_EQ(reader.metadata().at("format"), "pt");
  EXPECT_EQ(reader.read("w").to_floats(), (std::vector<float>{0.5f, -3.0f}));
  EXPECT_EQ(reader.read("b").to_floats(), (std::vector<float>{1.0f, -3.0f}));
  const Tensor ids = reader.read("ids");
  ASSERT_EQ(ids.dtype(), DType::i64);
  EXPECT_EQ(ids.data<std::int64_t>()[0], 7);
  EXPECT_EQ(ids.data<std::int64_t>()[1], -1);
  EXPECT_EQ(ids.data<std::int64_t>()[2], 1LL << 40);
  EXPECT_THROW(reader.read("ids", DType::i32), Error);  // 2^40 does not fit
}

TEST_F(Safetensors, WrittenBytesFollowTheSpec) {
  // Parse our own output by hand (not with the reader) to check the layout.
  write_safetensors(dir_ / "x.safetensors", {{"a", Tensor::from_floats({1.0f, -2.0f}, {2})},
                                             {"b", Tensor::from_floats({4.0f}, {1, 1})}});
  std::ifstream in(dir_ / "x.safetensors", std::ios::binary);
  const Bytes bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(bytes[i]);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["a"]["dtype"], "F32");
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::json::parse("[0, 8]"));
  EXPECT_EQ(header["b"]["shape"], nlohmann::json::parse("[1, 1]"));
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json::parse("[8, 12]"));
  EXPECT_EQ(bytes.substr(8 + n), le_f32(1.0f) + le_f32(-2.0f) + le_f32(4.0f));
}

TEST_F(Safetensors, CorruptFilesThrowNamingTheFile) {
  const std::string good_header = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const Bytes good_data = le_f32(1.0f) + le_f32(2.0f);
  const Bytes good = safetensors_bytes(good_header, good_data);
  SafetensorsReader(write_bytes("good.safetensors", good));  // the baseline opens fine

  expect_corrupt(write_bytes("short.safetensors", good.substr(0, 5)), "too short");
  expect_corrupt(write_bytes("truncated.safetensors", good.substr(0, good.size() - 3)),
                 "outside the data buffer");
  expect_corrupt(write_bytes("cut_header.safetensors", good.substr(0, 20)), "exceeds");
  expect_corrupt(write_bytes("absurd.safetensors", le_u64(1ULL << 40) + good.substr(8)), "absurd");
  expect_corrupt(write_bytes("long.safetensors", le_u64(good.size()) + good.substr(8)),
                 "exceeds the file size");
  expect_corrupt(write_bytes("garbage.safetensors", safetensors_bytes("{not json", good_data)),
                 "not valid JSON");
  expect_corrupt(write_bytes("array.safetensors", safetensors_bytes("[1, 2]", "")), "JSON object");
  expect_corrupt(
      write_bytes("outside.safetensors",
                  safetensors_bytes(R"({"t":{"dtype":"F32","shape":[25],"data_offsets":[0,100]}})",
                                    good_data)),
      "outside the data buffer");
  expect_corrupt(
      write_bytes("dtype.safetensors",
                  safetensors_bytes(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})",
                                    good_data)),
      "unknown dtype 'F33'");
  expect_corrupt(
      write_bytes("size.safetensors",
                  safetensors_bytes(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                    good_data)),
      "tensor 't'");
  expect_corrupt(
      write_bytes("huge_shape.safetensors",
                  safetensors_bytes(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],)"
                                    R"("data_offsets":[0,8]}})",
                                    good_data)),
      "needs more");
  expect_corrupt(
      write_bytes("negative.safetensors",
                  safetensors_bytes(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                                    good_data)),
      "negative dimension");
  expect_corrupt(
      write_bytes("reversed.safetensors",
                  safetensors_bytes(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                                    good_data)),
      "reversed");
  expect_corrupt(
      write_bytes("overlap.safetensors",
                  safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    good_data)),
      "overlaps");
  expect_corrupt(
      write_bytes("hole.safetensors",
                  safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    good_data)),
      "hole");
  expect_corrupt(
      write_bytes("trailing.safetensors", safetensors_bytes(good_header, good_data + le_f32(3.0f))),
      "no tensor covers");
  expect_corrupt(
      write_bytes(
          "offsets.safetensors",
          safetensors_bytes(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", good_data)),
      "data_offsets");
  expect_corrupt(
      write_bytes("meta.safetensors",
                  safetensors_bytes(R"({"__metadata__":{"k":1},)"
                                    R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                    good_data)),
      "__metadata__");
  expect_corrupt(
      write_bytes(
          "u8.safetensors",
          safetensors_bytes(R"({"t":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", good_data)),
      "cannot be read");
  expect_corrupt(dir_ / "absent.safetensors", "cannot open");
}

TEST_F(Safetensors, FailedWriteLeavesNoFile) {
  const Tensor t = Tensor::from_floats({1.0f}, {1});
  const fs::path path = dir_ / "dup.safetensors";
  EXPECT_THROW(write_safetensors(path, {{"a", t}, {"a", t}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"__metadata__", t}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"u", Tensor()}}), Error);
  EXPECT_THROW(write_safetensors(dir_ / "no_such_dir" / "x.safetensors", {{"a", t}}), Error);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(any_tmp_file());
  // Overwriting an existing file replaces it whole.
  write_safetensors(path, {{"a", t}});
  write_safetensors(path, {{"b", Tensor::from_floats({5.0f, 6.0f}, {2})}});
  SafetensorsReader reader(path);
  EXPECT_EQ(reader.names(), std::vector<std::string>{"b"});
  EXPECT_FALSE(any_tmp_file());
}

TEST_F(Safetensors, ShardedRoundTrip) {
  Rng rng(5);
  std::vector<std::pair<std::string, Tensor>> tensors;
  // 40, 40, 80, 24, 200 (larger than a shard: alone), 8 bytes.
  tensors.emplace_back("model.embed_tokens.weight", testing::random_tensor({10}, rng));
  tensors.emplace_back("model.layers.0.w", testing::random_tensor({2, 5}, rng));
  tensors.emplace_back("model.layers.1.w", testing::random_tensor({40}, rng).to(DType::bf16));
  tensors.emplace_back("model.layers.2.w", testing::random_tensor({6}, rng));
  tensors.emplace_back("lm_head.weight", testing::random_tensor({50}, rng));
  tensors.emplace_back("model.norm.weight", testing::random_tensor({2}, rng));
  const fs::path out = dir_ / "ckpt";
  // A stale single file from an earlier save must not shadow the shards.
  write_sharded_safetensors(out, {{"old", Tensor::from_floats({1.0f}, {1})}}, 1 << 20);
  ASSERT_TRUE(fs::exists(out / "model.safetensors"));

  const auto files = write_sharded_safetensors(out, tensors, 100);
  // Greedy in order with limit 100: [40, 40] [80] [24] [200] [8].
  const std::vector<std::string> expected_files = {
      "model-00001-of-00005.safetensors", "model-00002-of-00005.safetensors",
      "model-00003-of-00005.safetensors", "model-00004-of-00005.safetensors",
      "model-00005-of-00005.safetensors", "model.safetensors.index.json"};
  EXPECT_EQ(files, expected_files);
  EXPECT_FALSE(fs::exists(out / "model.safetensors"));
  for (const auto& entry : fs::directory_iterator(out))
    EXPECT_NE(entry.path().extension(), ".tmp") << entry.path();

  std::ifstream index_file(out / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(index_file);
  EXPECT_EQ(index["metadata"]["total_size"], 40 + 40 + 80 + 24 + 200 + 8);
  EXPECT_EQ(index["weight_map"]["model.layers.0.w"], "model-00001-of-00005.safetensors");
  EXPECT_EQ(index["weight_map"]["lm_head.weight"], "model-00004-of-00005.safetensors");

  CheckpointReader reader(out);
  EXPECT_TRUE(reader.sharded());
  EXPECT_EQ(reader.names().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) expect_same_bytes(reader.read(name), tensor);
  EXPECT_EQ(reader.entry("model.layers.1.w").dtype, "BF16");
  EXPECT_THROW(reader.read("old"), Error);

  // Everything fits: one file, and the stale index goes away.
  EXPECT_EQ(write_sharded_safetensors(out, tensors, 1 << 20),
            std::vector<std::string>{"model.safetensors"});
  EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
  CheckpointReader single(out);
  EXPECT_FALSE(single.sharded());
  for (const auto& [name, tensor] : tensors) expect_same_bytes(single.read(name), tensor);
}

TEST_F(Safetensors, CheckpointReaderErrors) {
  auto expect_error = [](const fs::path& dir, const std::string& fragment) {
    try {
      CheckpointReader reader(dir);
      ADD_FAILURE() << "no error for " << dir;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  expect_error(dir_, "no model.safetensors");
  expect_error(dir_ / "absent", "not a directory");
  write_safetensors(dir_ / "shard.safetensors", {{"a", Tensor::from_floats({1.0f}, {1})}});
  const fs::path index = dir_ / "model.safetensors.index.json";
  std::ofstream(index) << R"({"weight_map": {"a": "shard.safetensors", "b": "shard.safetensors"}})";
  expect_error(dir_, "'b'");
  std::ofstream(index) << R"({"weight_map": {"a": "../shard.safetensors"}})";
  expect_error(dir_, "plain file name");
  std::ofstream(index) << R"({"weight_map": {"a": "missing.safetensors"}})";
  expect_error(dir_, "missing.safetensors");
  std::ofstream(index) << "{weight_map";
  expect_error(dir_, index.string());
  std::ofstream(index) << R"({"weight_map": {"a": "shard.safetensors"}})";
  CheckpointReader reader(dir_);
  EXPECT_EQ(reader.read("a").to_floats(), std::vector<float>{1.0f});
}

}  // namespace
}  // namespace ulysses::io
