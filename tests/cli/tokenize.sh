#!/usr/bin/env bash
# `ulysses tokenize` and `train --data text.jsonl`: outputs in input order, token files, loss on
# completions only, bad inputs named by file:line with nothing written, long documents split or
# truncated and counted. (Ids equal to HF tokenizers: tests/tokenizer_test.cc.)
source "$(dirname "$0")/lib.bash"
TOK=$DATA/tokenizer/llama3

check() {  # check "description" condition...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

printf '%s\n' '{"text": "The quick brown fox jumps over the lazy dog."}' > "$WORK/a.jsonl"
printf '%s\n' '{"text": "中文分词测试 😀 12345"}' '' \
  '{"prompt": "Question: 2+2?", "completion": " Answer: 4"}' > "$WORK/b.jsonl"

expect_ok "tokenize a.jsonl" $ULYSSES tokenize --tokenizer $TOK --input "$WORK/a.jsonl" \
  --output "$WORK/a.out.jsonl"
expect_ok "tokenize b.jsonl" $ULYSSES tokenize --tokenizer $TOK --input "$WORK/b.jsonl" \
  --output "$WORK/b.out.jsonl"
expect_ok "tokenize a b (2 threads)" $ULYSSES tokenize --tokenizer $TOK/tokenizer.json \
  --input "$WORK/a.jsonl" "$WORK/b.jsonl" --output "$WORK/ab.out.jsonl" --num-threads 2
check "one line per non-blank input line, in input order" \
  cmp -s "$WORK/ab.out.jsonl" <(cat "$WORK/a.out.jsonl" "$WORK/b.out.jsonl")
check "3 output lines" test "$(wc -l < "$WORK/ab.out.jsonl")" -eq 3
check "text lines have no labels" test "$(grep -c '"labels"' "$WORK/ab.out.jsonl")" -eq 1
check "prompt tokens are -100, completion tokens learned" \
  grep -qE '"labels":\[-100,(-100,)*[0-9]' "$WORK/b.out.jsonl"
check "BOS (id 0) first, as the TemplateProcessing post-processor adds it" \
  test "$(grep -c '^{"input_ids":\[0,' "$WORK/ab.out.jsonl")" -eq 3

expect_ok "tokenize to token files" $ULYSSES tokenize --tokenizer $TOK \
  --input "$WORK/a.jsonl" "$WORK/b.jsonl" --output "$WORK/toks"
ntok=$(grep -o '[0-9-]*' <(sed 's/"labels".*//' "$WORK/ab.out.jsonl") | wc -l)
check "tokens.bin holds every token" test "$(stat -c %s "$WORK/toks/tokens.bin")" -eq $((4 * ntok))
check "offsets.bin: 3 documents" test "$(stat -c %s "$WORK/toks/offsets.bin")" -eq 32
check "loss_mask.bin: one byte per token" \
  test "$(stat -c %s "$WORK/toks/loss_mask.bin")" -eq "$ntok"
check "no temporary left behind" test -z "$(ls -A "$WORK" | grep tmp)"

# Bad inputs: a message naming file:line, non-zero exit, nothing written.
printf '%s\n' '{"text": "fine"}' '{"txt": "typo"}' > "$WORK/missing.jsonl"
printf '%s\n' '{"text": "fine"}' '' '{"text": "unterminated' > "$WORK/badjson.jsonl"
printf '%s\n' '{"prompt": "no completion"}' > "$WORK/half.jsonl"
printf '%s\n' '{"text": 42}' > "$WORK/number.jsonl"
printf '{"text": "bad \xff byte"}\n' > "$WORK/utf8.jsonl"
expect_fail "missing text field" "missing.jsonl:2: no \"text\" field" \
  $ULYSSES tokenize --tokenizer $TOK --input "$WORK/missing.jsonl" --output "$WORK/o1.jsonl"
expect_fail "bad JSON line" "badjson.jsonl:3: invalid JSON" \
  $ULYSSES tokenize --tokenizer $TOK --input "$WORK/a.jsonl" "$WORK/badjson.jsonl" \
  --output "$WORK/o2"
expect_fail "prompt without completion" "half.jsonl:1: \"prompt\" and \"completion\" go together" \
  $ULYSSES tokenize --tokenizer $TOK --input "$WORK/half.jsonl" --output "$WORK/o3.jsonl"
expect_fail "text not a string" "number.jsonl:1: \"text\" must be a string" \
  $ULYSSES tokenize --tokenizer $TOK --input "$WORK/number.jsonl" --output "$WORK/o4.jsonl"
expect_fail "invalid UTF-8" "utf8.jsonl:1:" \
  $ULYSSES tokenize --tokenizer $TOK --input "$WORK/utf8.jsonl" --output "$WORK/o5.jsonl"
check "nothing written for bad inputs" test -z "$(ls "$WORK" | grep -E '^o[0-9]')"
expect_fail "missing input file" "nope.jsonl: cannot open" \
  $ULYSSES tokenize --tokenizer $TOK --input "$WORK/nope.jsonl" --output "$WORK/o6.jsonl"
expect_fail "no tokenizer.json" "cannot open" \
  $ULYSSES tokenize --tokenizer "$WORK" --input "$WORK/a.jsonl" --output "$WORK/o7.jsonl"
expect_fail "output directory exists" "already exists" \
  $ULYSSES tokenize --tokenizer $TOK --input "$WORK/a.jsonl" --output "$WORK/toks"
expect_fail "--input is required" "--input is required" \
  $ULYSSES tokenize --tokenizer $TOK --output "$WORK/o8.jsonl"

# train --data text.jsonl with a model directory holding tokenizer.json.
mkdir -p "$WORK/model"
cp $TOK/tokenizer.json "$WORK/model/"
cat > "$WORK/model/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
 "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
 "num_hidden_layers": 2, "vocab_size": 1024, "max_position_embeddings": 512,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
for i in 1 2 3; do
  echo '{"text": "The quick brown fox jumps over the lazy dog. It'"'"'s a test; we'"'"'ll see what they'"'"'ve done, I'"'"'m sure you'"'"'d agree. 中文分词测试：我们在北京学习机器学习。"}'
done > "$WORK/text.jsonl"
out=$($ULYSSES train --model "$WORK/model" --data "$WORK/text.jsonl" --max-seq-length 16 \
  --max-steps 2 --per-device-train-batch-size 2 --logging-steps 1 --output-dir "$WORK/r1" 2>&1)
check "train on text: runs" test $? -eq 0
check "train on text: long documents split and counted" \
  grep -q "3 documents longer than 16 tokens split into pieces" <<<"$out"
out=$($ULYSSES train --model "$WORK/model" --data "$WORK/text.jsonl" --max-seq-length 16 \
  --max-steps 1 --long-documents truncate --output-dir "$WORK/r2" 2>&1)
check "train on text: --long-documents truncate counted" \
  grep -q "3 documents longer than 16 tokens truncated" <<<"$out"
expect_fail "--long-documents bad value" "--long-documents" \
  $ULYSSES train --model "$WORK/model" --data "$WORK/text.jsonl" --long-documents cut
expect_fail "text data without a tokenizer" "has no tokenizer.json" \
  $ULYSSES train --model tiny --data "$WORK/text.jsonl" --max-steps 1 --output-dir "$WORK/r3"
finish
