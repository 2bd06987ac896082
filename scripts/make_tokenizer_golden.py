#!/usr/bin/env python3
"""Builds small but real tokenizer.json files with Hugging Face `tokenizers` and the ids it
produces for a multilingual corpus; tests/tokenizer_test.cc compares the C++ tokenizer with them.

    pip install tokenizers
    python3 scripts/make_tokenizer_golden.py            # writes tests/data/tokenizer/
    python3 scripts/make_tokenizer_golden.py --bench N  # also times tokenizers on N generated
                                                        # lines, written to --bench-corpus

Kinds (one directory each under tests/data/tokenizer/<kind>/tokenizer.json):
  llama3  Split(Llama-3 regex, isolated) + ByteLevel(use_regex=False), ignore_merges, BOS by a
          Sequence[ByteLevel, TemplateProcessing] post-processor.
  qwen2   NFC normalizer, Split(Qwen2/Qwen3 regex) + ByteLevel, ByteLevel post-processor (no
          BOS/EOS), special and non-special added tokens.
  gpt2    ByteLevel(add_prefix_space=True, use_regex=True), BOS and EOS by TemplateProcessing,
          an lstrip/rstrip special token and a normalized non-special added token.
Nothing is downloaded: the training text is generated here.
"""
import argparse
import json
import os
import random
import time

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a test; we'll see what they've done, I'm sure you'd agree.",
    "IT'S LOUD. WE'LL SHOUT! They'RE here.",
    "def train(model, data):\n    for step, batch in enumerate(data):\n        loss = model(batch)\n",
    "if (x != 0 && y >= 10) { return x * y / 3.14159; }  // comment",
    "Numbers: 1234567890, 3.5e-7, 2026-12-02, +49 30 1234567, 0xDEADBEEF",
    "Whitespace   runs\t\ttabs\n\n\nnewlines\r\n  trailing   ",
    "Emoji: 😀🎉👍🏽 👨‍👩‍👧‍👦 🇩🇪 ❤️",
    "中文分词测试：我们在北京学习机器学习。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장도 들어갑니다.",
    "العربية: مرحبا بالعالم، كيف حالك؟",
    "Русский текст: Съешь же ещё этих мягких французских булок.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "Combining: e\u0301 vs \u00e9, A\u030a vs \u00c5, \ufb01 ligature, \u2126 ohm",
    "Mixed: naïve café résumé — “quotes” ‘single’ … ¿Qué? ¡Sí!",
    "हिन्दी पाठ और देवनागरी अंक १२३",
    "URLs: https://example.com/path?a=1&b=2#frag and mail@example.org",
]


def training_text(n):
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        k = rng.randint(1, 4)
        lines.append(" ".join(rng.choice(SENTENCES) for _ in range(k)))
    return lines


def test_corpus(specials):
    cases = list(SENTENCES)
    cases += [
        "", " ", "  ", "\n", "\t", "a", "hello", " hello", "hello ", "hello  world",
        "   leading", "trailing   ", "a\n\nb", "x \n y", "\r\n\r\n", "1", "12", "123", "1234",
        "12345678901234567890", "3.14", "x1y22z333", "'s", "'S'", "don't", "DON'T",
        "\u00a0non-breaking\u00a0space", "zero\u200bwidth", "\u3000ideographic space",
        "tab\tand\u000bvtab\u000cff", "\u2028line sep\u2029para", "\x85next line",
        "🤖", "a😀b", "😀😀😀", "🏳️‍🌈", "ﷺ", "\U0001f600 \U0001f601", "\U00010348 gothic",
        "ｆｕｌｌｗｉｄｔｈ １２３", "ℌ𝔢𝔩𝔩𝔬", "A\u0300\u0301\u0302", "\u1100\u1161\u11a8",
    ]
    for s in specials:
        cases += [s, f"{s}", f"text {s} more", f"{s}{s}", f"a{s}b", f" {s} ", f"\n{s}\n",
                  f"{s[:-1]}", f"x{s[1:]}"]
    rng = random.Random(1)
    pieces = SENTENCES + specials + [" ", "  ", "\n", "123", "😀", "中文"]
    for _ in range(60):
        cases.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))))
    # Random code points from many scripts and symbol blocks, mixed with special-token strings,
    # whitespace and contractions.
    ranges = [(0x20, 0x7e), (0x9, 0xd), (0xa0, 0x17f), (0x300, 0x36f), (0x370, 0x3ff),
              (0x400, 0x4ff), (0x600, 0x6ff), (0x900, 0x97f), (0x3000, 0x303f), (0x3040, 0x30ff),
              (0x4e00, 0x4fff), (0xac00, 0xacff), (0x1f300, 0x1f64f), (0x2000, 0x206f),
              (0xff00, 0xffef), (0x1d400, 0x1d4ff), (0x10000, 0x1007f)]
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(0, 12)):
            r = rng.random()
            if r < 0.1:
                parts.append(rng.choice(specials))
            elif r < 0.2:
                parts.append(rng.choice([" ", "  ", "\n", "\t", " \n ", "'s", "'LL", "123456"]))
            else:
                lo, hi = rng.choice(ranges)
                parts.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 6))))
        cases.append("".join(parts).encode("utf-8", "ignore").decode("utf-8"))
    return cases


def byte_level_bpe(vocab_size, specials, text):
    tok = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    return tok, trainer


def make_llama3(text):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                "<|start_header_id|>", "<|end_header_id|>"]
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    return tok, specials


def make_qwen2(text):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text, trainer)
    extra = ["<tool_call>", "</tool_call>", "<think>", "</think>"]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in extra])
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok, specials + extra


def make_gpt2(text):
    specials = ["<s>", "</s>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text, trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, special=True,
                                       normalized=False)])
    tok.add_tokens([AddedToken("newword", special=False, normalized=True),
                    AddedToken("solo", single_word=True, special=False, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    extra = ["<mask>", "newword", "solo", " solo ", "xsolo", "solo!"]
    return tok, specials + extra


def bench(out_dir, lines_n, corpus_path):
    """Times tokenizers' encode_batch on a generated corpus and writes that corpus as JSON Lines
    ({"text": ...}) for the C++ side: build/tokenizer_bench --tokenizer ... --corpus PATH."""
    tok = Tokenizer.from_file(os.path.join(out_dir, "llama3", "tokenizer.json"))
    rng = random.Random(2)
    words = [w for s in SENTENCES for w in s.split(" ")]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(20, 400)))
             for _ in range(lines_n)]
    with open(corpus_path, "w", encoding="utf-8") as f:
        for s in lines:
            f.write(json.dumps({"text": s}, ensure_ascii=False) + "\n")
    n_bytes = sum(len(s.encode()) for s in lines)
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        enc = tok.encode_batch(lines)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    n_tok = sum(len(e.ids) for e in enc)
    print(f"tokenizers {__import__('tokenizers').__version__} encode_batch: {len(lines)} lines, "
          f"{n_bytes / 1e6:.2f} MB, {n_tok} tokens, {best:.3f} s, {n_bytes / best / 1e6:.2f} MB/s, "
          f"{n_tok / best / 1e6:.3f} Mtok/s (RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                  "data", "tokenizer"))
    ap.add_argument("--bench", type=int, default=0, help="lines of the bench corpus")
    ap.add_argument("--bench-corpus", default="/tmp/tokenizer_bench.jsonl")
    args = ap.parse_args()
    text = training_text(3000)
    for kind, make in [("llama3", make_llama3), ("qwen2", make_qwen2), ("gpt2", make_gpt2)]:
        tok, specials = make(text)
        d = os.path.join(args.out, kind)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))  # as the C++ side reads it
        cases = []
        for s in test_corpus(specials):
            ids = tok.encode(s, add_special_tokens=True).ids
            cases.append({"text": s, "ids": ids,
                          "plain_ids": tok.encode(s, add_special_tokens=False).ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False)})
        with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as f:
            json.dump({"tokenizers_version": __import__("tokenizers").__version__,
                       "cases": cases}, f, ensure_ascii=False, indent=0)
        print(kind, "vocab", tok.get_vocab_size(), "cases", len(cases))
    if args.bench:
        bench(args.out, args.bench, args.bench_corpus)


if __name__ == "__main__":
    main()
