// Throughput of io::Tokenizer::encode_batch on a JSON Lines corpus ({"text": ...} per line),
// to compare with Hugging Face tokenizers' encode_batch on the same file and cores:
//   python3 scripts/make_tokenizer_golden.py --bench 20000 --bench-corpus /tmp/c.jsonl
//   build/tokenizer_bench --tokenizer tests/data/tokenizer/llama3 --corpus /tmp/c.jsonl
// Prints the best of 3 runs (each with fresh word caches, as each encode_batch call has).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "ulysses/core/error.h"
#include "ulysses/io/tokenizer.h"

int main(int argc, char** argv) {
  std::string tokenizer_path, corpus_path;
  int threads = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--tokenizer")
      tokenizer_path = argv[i + 1];
    else if (flag == "--corpus")
      corpus_path = argv[i + 1];
    else if (flag == "--threads")
      threads = std::atoi(argv[i + 1]);
  }
  if (tokenizer_path.empty() || corpus_path.empty()) {
    std::fprintf(stderr,
                 "usage: tokenizer_bench --tokenizer DIR --corpus FILE.jsonl [--threads N]\n");
    return 2;
  }
  try {
    const auto tok = ulysses::io::Tokenizer::load(tokenizer_path);
    std::ifstream in(corpus_path);
    if (!in) UL_FAIL(corpus_path, ": cannot open");
    std::vector<std::string> texts;
    std::size_t bytes = 0;
    for (std::string line; std::getline(in, line);) {
      texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
      bytes += texts.back().size();
    }
    double best = 1e30;
    std::size_t tokens = 0;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto ids = tok.encode_batch(texts, true, threads);
      const double dt =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, dt);
      tokens = 0;
      for (const auto& v : ids) tokens += v.size();
    }
    std::printf(
        "ulysses encode_batch: %zu lines, %.2f MB, %zu tokens, %.3f s, %.2f MB/s, %.3f Mtok/s "
        "(threads=%d)\n",
        texts.size(), bytes / 1e6, tokens, best, bytes / best / 1e6, tokens / best / 1e6, threads);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
