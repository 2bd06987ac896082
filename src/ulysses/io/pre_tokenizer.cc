#define PCRE2_CODE_UNIT_WIDTH 8
#include "ulysses/io/pre_tokenizer.h"

#include <pcre2.h>

#include "ulysses/core/error.h"

namespace ulysses::io {

namespace {

// The pattern of ByteLevel(use_regex=true), GPT-2's.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& where) {
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &error_offset, nullptr);
  if (code == nullptr)
    UL_FAIL(where, ": regex /", pattern, "/ does not compile at offset ", error_offset, ": ",
            pcre2_message(error));
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if unavailable
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void* Regex::new_match_data() const {
  return pcre2_match_data_create_from_pattern(static_cast<pcre2_code*>(code_), nullptr);
}

void Regex::free_match_data(void* match_data) {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data));
}

bool Regex::match(std::string_view text, std::size_t offset, void* match_data, std::size_t& begin,
                  std::size_t& end) const {
  auto* md = static_cast<pcre2_match_data*>(match_data);
  const int rc =
      pcre2_match(static_cast<pcre2_code*>(code_), reinterpret_cast<PCRE2_SPTR>(text.data()),
                  text.size(), offset, PCRE2_NO_UTF_CHECK, md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) UL_FAIL("tokenizer: regex match failed: ", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  begin = ov[0];
  end = ov[1];
  return true;
}

struct PreTokenizer::Step {
  enum class Kind { split_isolated, split_removed, byte_level } kind;
  std::unique_ptr<Regex> regex;  // split (regex) or byte_level with use_regex
  std::string literal;           // split with a String pattern
  bool add_prefix_space = false;
};

PreTokenizer::PreTokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return;
  // Flatten nested Sequences in order.
  std::vector<const nlohmann::json*> flat;
  auto visit = [&](auto&& self, const nlohmann::json& node) -> void {
    const std::string type = node.value("type", std::string());
    if (type == "Sequence") {
      for (const auto& child : node.at("pretokenizers")) self(self, child);
    } else {
      flat.push_back(&node);
    }
  };
  visit(visit, j);
  for (const auto* node : flat) {
    const nlohmann::json& p = *node;
    const std::string type = p.value("type", std::string());
    auto step = std::make_unique<Step>();
    if (type == "Split") {
      if (p.value("invert", false))
        UL_FAIL(where, ": pre_tokenizer Split with invert=true is not supported");
      const std::string behavior = p.value("behavior", std::string("Isolated"));
      if (behavior == "Isolated")
        step->kind = Step::Kind::split_isolated;
      else if (behavior == "Removed")
        step->kind = Step::Kind::split_removed;
      else
        UL_FAIL(where, ": pre_tokenizer Split behavior \"", behavior,
                "\" is not supported (Isolated, Removed)");
      const auto& pattern = p.at("pattern");
      if (pattern.contains("Regex")) {
        step->regex = std::make_unique<Regex>(pattern.at("Regex").get<std::string>(), where);
      } else if (pattern.contains("String")) {
        step->literal = pattern.at("String").get<std::string>();
        if (step->literal.empty()) UL_FAIL(where, ": pre_tokenizer Split has an empty String");
      } else {
        UL_FAIL(where, ": pre_tokenizer Split pattern is neither Regex nor String");
      }
    } else if (type == "ByteLevel") {
      step->kind = Step::Kind::byte_level;
      step->add_prefix_space = p.value("add_prefix_space", true);
      if (p.value("use_regex", true)) step->regex = std::make_unique<Regex>(kGpt2Pattern, where);
    } else {
      UL_FAIL(where, ": pre_tokenizer type \"", type,
              "\" is not supported (Split, ByteLevel, Sequence)");
    }
    steps_.push_back(std::move(step));
  }
}

PreTokenizer::~PreTokenizer() = default;

namespace {

// Cuts `text` at the matches of `step` into `out` (the matches kept unless `removed`).
template <typename ForEach>
void split_by(std::string_view text, bool removed, ForEach&& for_each,
              std::vector<std::string>& out) {
  std::size_t last = 0;
  for_each([&](std::size_t begin, std::size_t end) {
    if (begin > last) out.emplace_back(text.substr(last, begin - last));
    if (!removed) out.emplace_back(text.substr(begin, end - begin));
    last = end;
  });
  if (last < text.size()) out.emplace_back(text.substr(last));
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::vector<std::string>& words) const {
  if (text.empty()) return;
  std::vector<std::string> pieces{std::string(text)}, next;
  for (const auto& step : steps_) {
    next.clear();
    for (const std::string& piece : pieces) {
      std::string_view s = piece;
      std::string prefixed;
      if (step->kind == Step::Kind::byte_level && step->add_prefix_space &&
          (s.empty() || s.front() != ' ')) {
        prefixed = " " + piece;
        s = prefixed;
      }
      const bool removed = step->kind == Step::Kind::split_removed;
      const std::size_t first = next.size();
      if (step->regex) {
        split_by(
            s, removed, [&](auto&& f) { step->regex->for_each_match(s, f); }, next);
      } else if (!step->literal.empty()) {
        split_by(
            s, removed,
            [&](auto&& f) {
              for (std::size_t at = s.find(step->literal); at != std::string_view::npos;
                   at = s.find(step->literal, at + step->literal.size()))
                f(at, at + step->literal.size());
            },
            next);
      } else {
        next.emplace_back(s);
      }
      if (step->kind == Step::Kind::byte_level) {
        for (std::size_t k = first; k < next.size(); ++k) {
          std::string mapped;
          alphabet_.encode(next[k], mapped);
          next[k] = std::move(mapped);
        }
      }
    }
    pieces.swap(next);
  }
  for (auto& p : pieces) words.push_back(std::move(p));
}

}  // namespace ulysses::io
