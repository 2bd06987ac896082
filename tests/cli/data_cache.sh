#!/usr/bin/env bash
# The tokenization cache of `train --data text.jsonl` (data/token_cache.h): the first run
# tokenizes and caches, the second reads the cache and prints the same losses; a changed input
# is tokenized again; --data-cache-dir none writes nothing; an unwritable cache directory warns
# and still trains.
source "$(dirname "$0")/lib.bash"
TOK=$DATA/tokenizer/llama3

check() {  # check "description" condition...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

mkdir -p "$WORK/model" "$WORK/data"
cp $TOK/tokenizer.json "$WORK/model/"
cat > "$WORK/model/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
 "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
 "num_hidden_layers": 2, "vocab_size": 1024, "max_position_embeddings": 512,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
D=$WORK/data/text.jsonl
for i in 1 2 3 4; do
  echo '{"text": "The quick brown fox jumps over the lazy dog, number '$i'. 中文分词测试。"}'
  echo '{"prompt": "Question '$i': 2+2?", "completion": " Answer: 4."}'
done > "$D"

train() {  # train OUTPUT_DIR [options...]
  local out=$1; shift
  $ULYSSES train --model "$WORK/model" --data "$D" --max-seq-length 32 --max-steps 3 \
    --per-device-train-batch-size 2 --logging-steps 1 --seed 3 --output-dir "$out" "$@" 2>&1
}
losses() { grep -oE 'loss [0-9.]+ \| lr [^|]+\| grad-norm [0-9.]+' <<<"$1"; }

out1=$(train "$WORK/r1"); rc1=$?
check "first run trains" test $rc1 -eq 0
check "first run tokenizes and caches next to the data" \
  grep -qE "tokenized 8 documents, [0-9]+ tokens in [0-9.]+ s; cached in $WORK/data/.ulysses_cache/" <<<"$out1"
entry=$(ls -d "$WORK"/data/.ulysses_cache/text.jsonl-* 2>/dev/null)
check "one cache entry with a manifest" test -f "$entry/manifest.json"
check "the entry holds token files" test -f "$entry/tokens.bin" -a -f "$entry/loss_mask.bin"
out2=$(train "$WORK/r2"); rc2=$?
check "second run trains" test $rc2 -eq 0
check "second run reads the cache" \
  grep -qE "read the tokenized cache $entry \(8 documents, [0-9]+ tokens\)" <<<"$out2"
check "second run does not tokenize" test "$(grep -c 'tokenized [0-9]* documents' <<<"$out2")" -eq 0
check "losses were printed" test "$(losses "$out1" | wc -l)" -ge 3
check "second run prints the same losses" test "$(losses "$out1")" = "$(losses "$out2")"

# A changed input (content and modification time) is tokenized again.
echo '{"text": "One more line."}' >> "$D"
out3=$(train "$WORK/r3")
check "changed input is tokenized again" grep -q "tokenized 9 documents" <<<"$out3"
check "... and cached as a second entry" test "$(ls -d "$WORK"/data/.ulysses_cache/text.jsonl-* | wc -l)" -eq 2

# --data-cache-dir DIR and none; the config key.
out4=$(train "$WORK/r4" --data-cache-dir "$WORK/c2")
check "--data-cache-dir DIR is used" grep -q "cached in $WORK/c2/text.jsonl-" <<<"$out4"
printf 'data_cache_dir: %s\n' "$WORK/c3" > "$WORK/cfg.yaml"
out5=$(train "$WORK/r5" --config "$WORK/cfg.yaml")
check "data_cache_dir config key is used" grep -q "cached in $WORK/c3/text.jsonl-" <<<"$out5"
rm -rf "$WORK/data/.ulysses_cache"
out6=$(train "$WORK/r6" --data-cache-dir none); rc6=$?
check "--data-cache-dir none trains" test $rc6 -eq 0
check "--data-cache-dir none writes nothing" test ! -e "$WORK/data/.ulysses_cache"
check "--data-cache-dir none does not say cached" test "$(grep -c 'cached in' <<<"$out6")" -eq 0

# An unwritable cache directory: a warning, and training goes on.
echo x > "$WORK/blocker"
out7=$(train "$WORK/r7" --data-cache-dir "$WORK/blocker/cache"); rc7=$?
check "unwritable cache directory still trains" test $rc7 -eq 0
check "... with a warning naming --data-cache-dir" \
  grep -q "warning: --data-cache-dir $WORK/blocker/cache: cannot write" <<<"$out7"

# ulysses eval reads the same cache.
out8=$($ULYSSES eval --model "$WORK/r1" --data "$D" --max-seq-length 32 --data-cache-dir "$WORK/c2" 2>&1)
check "eval reads the cache" grep -q "read the tokenized cache $WORK/c2/text.jsonl-" <<<"$out8"
# Two ranks racing on an empty cache: one valid entry, no temporaries, and a later one-rank
# run reads it.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
out9=$(timeout 60 mpirun -np 2 $ULYSSES train --model "$WORK/model" --data "$D" \
  --max-seq-length 32 --max-steps 2 --per-device-train-batch-size 2 --sp-size 2 \
  --data-cache-dir "$WORK/c4" --output-dir "$WORK/r9" 2>&1); rc9=$?
check "two ranks train with a fresh cache" test $rc9 -eq 0
check "two ranks leave one entry and no temporary" \
  test "$(ls -A "$WORK/c4" | wc -l)" -eq 1 -a -f "$(ls -d "$WORK"/c4/text.jsonl-*)/manifest.json"
out10=$(train "$WORK/r10" --data-cache-dir "$WORK/c4")
check "... which a later run reads" grep -q "read the tokenized cache $WORK/c4/text.jsonl-" <<<"$out10"
finish
