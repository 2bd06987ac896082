#!/usr/bin/env bash
# Evaluation from the command line: `train --eval-data` logs eval_loss every --eval-steps and at
# the end into metrics.jsonl; `ulysses eval` on the saved model gives the final eval_loss again
# and writes eval_results.json; bad inputs name the option and stop with nothing written.
# (Equality with one rank under SP / ZeRO: tests/dist/eval_test.cc.)
source "$(dirname "$0")/lib.bash"
DOCS=$DATA/tiny_docs.jsonl

check() {  # check "description" condition...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
exit_code() { "$@" > /dev/null 2>&1; echo $?; }
# The value of "key" in a one-line JSON object.
value() { sed -E "s/.*\"$1\": ?([0-9.eE+-]+).*/\1/" <<<"$2"; }
same() {  # same A B [relative tolerance, default 1e-9]
  awk -v a="$1" -v b="$2" -v t="${3:-1e-9}" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t * a) }'
}

T="$ULYSSES train --data $DOCS --max-seq-length 64 --per-device-train-batch-size 2 --logging-steps 1"
out=$($T --max-steps 4 --eval-data "$DOCS" --eval-steps 2 --per-device-eval-batch-size 2 \
  --output-dir "$WORK/t" 2>&1)
check "train with --eval-data exits 0" test $? -eq 0
check "plan names the eval set" grep -q "^eval: .*12 documents in" <<<"$out"
check "eval lines at steps 2 and 4" \
  test "$(grep -cE '^eval  step (2|4) \| eval_loss' <<<"$out")" -eq 2
evals=$(grep '"eval_loss"' "$WORK/t/metrics.jsonl")
check "metrics.jsonl: two eval lines" test "$(wc -l <<<"$evals")" -eq 2
for key in step epoch eval_loss eval_perplexity eval_runtime timestamp; do
  check "eval line has $key" grep -q "\"$key\"" <<<"$evals"
done
final=$(value eval_loss "$(tail -n 1 <<<"$evals")")

out=$($ULYSSES eval --model "$WORK/t" --data "$DOCS" --max-seq-length 64 --output-dir "$WORK/e" 2>&1)
check "ulysses eval exits 0" test $? -eq 0
check "ulysses eval prints eval_loss" grep -q "^eval_loss " <<<"$out"
check "eval_results.json written" test -f "$WORK/e/eval_results.json"
results=$(tr -d '\n' < "$WORK/e/eval_results.json")
standalone=$(value eval_loss "$results")
check "standalone eval of the saved model = the run's final eval ($standalone vs $final)" \
  same "$final" "$standalone"
check "perplexity is exp(loss)" \
  awk -v l="$standalone" -v p="$(value eval_perplexity "$results")" \
  'BEGIN { d = exp(l) - p; if (d < 0) d = -d; exit !(d <= 1e-6 * p) }'
out=$($ULYSSES eval --model "$WORK/t" --data "$DOCS" --max-seq-length 64 --no-packing \
  --per-device-eval-batch-size 3 --quiet 2>&1)
check "--quiet prints only the result" test "$(wc -l <<<"$out")" -eq 1
unpacked=$(sed -E 's/^eval_loss ([0-9.]+).*/\1/' <<<"$out")
check "unpacked, other batch: same loss to f32 rounding ($unpacked)" same "$standalone" "$unpacked" 1e-5

# Under mpirun: sp 2 (and dp 2 with ZeRO-3) give the single-rank loss; a bad file stops every rank.
MPIRUN="env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
  OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 timeout 60 mpirun"
E="$ULYSSES eval --model $WORK/t --data $DOCS --max-seq-length 64 --quiet"
for layout in "--sp-size 2" "--zero-stage 3"; do
  out=$($MPIRUN -np 2 $E $layout 2>&1)
  got=$(sed -E 's/^eval_loss ([0-9.]+).*/\1/' <<<"$out")
  check "mpirun -np 2 eval $layout = one rank ($got)" same "$standalone" "$got" 1e-6
done
expect_fail "mpirun: missing data stops every rank" "--data $WORK/nope.jsonl: no such file" \
  $MPIRUN -np 2 $ULYSSES eval --model tiny --data "$WORK/nope.jsonl" --sp-size 2

# The guide's quick start: text lines with a Hugging Face model directory holding tokenizer.json;
# the saved folder carries the tokenizer, so `ulysses eval` on it reads text too.
mkdir -p "$WORK/hf"
cp "$DATA/tokenizer/llama3/tokenizer.json" "$WORK/hf/"
cat > "$WORK/hf/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
 "intermediate_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
 "num_hidden_layers": 2, "vocab_size": 1024, "max_position_embeddings": 512,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 0, "eos_token_id": 1}
JSON
printf '%s\n' '{"text": "The quick brown fox jumps over the lazy dog."}' \
  '{"prompt": "Question: 2+2?", "completion": " Answer: 4"}' '{"text": "It is a test, we will see."}' \
  > "$WORK/text_train.jsonl"
out=$($ULYSSES train --model "$WORK/hf" --data "$WORK/text_train.jsonl" \
  --eval-data "$WORK/text_train.jsonl" --max-seq-length 32 --per-device-train-batch-size 2 \
  --num-train-epochs 2 --learning-rate 1e-2 --output-dir "$WORK/hf_run" 2>&1)
check "train on text with text eval" test $? -eq 0
check "text eval at the end" grep -q '"eval_loss"' "$WORK/hf_run/metrics.jsonl"
text_final=$(value eval_loss "$(grep '"eval_loss"' "$WORK/hf_run/metrics.jsonl" | tail -n 1)")
out=$($ULYSSES eval --model "$WORK/hf_run" --data "$WORK/text_train.jsonl" --max-seq-length 32 \
  --quiet 2>&1)
check "ulysses eval on the saved folder reads text ($out)" \
  same "$text_final" "$(sed -E 's/^eval_loss ([0-9.]+).*/\1/' <<<"$out")" 1e-6

# Bad inputs: the option named, non-zero exit, nothing written.
expect_fail "eval: missing data file" "--data $WORK/nope.jsonl: no such file" \
  $ULYSSES eval --model tiny --data "$WORK/nope.jsonl" --output-dir "$WORK/x1"
expect_fail "eval: synthetic data" "--data synthetic-copy: evaluation runs over a whole" \
  $ULYSSES eval --model tiny --data synthetic-copy --output-dir "$WORK/x2"
printf '%s\n' '{"text": "no tokenizer for this"}' > "$WORK/text.jsonl"
expect_fail "eval: text without a tokenizer" "--data $WORK/text.jsonl: the lines hold text" \
  $ULYSSES eval --model tiny --data "$WORK/text.jsonl" --output-dir "$WORK/x3"
printf '%s\n' '{"input_ids": [1, 2, 3]}' '{"input_ids": [1, "x"]}' > "$WORK/bad.jsonl"
expect_fail "eval: bad line named" "bad.jsonl:2" \
  $ULYSSES eval --model tiny --data "$WORK/bad.jsonl" --output-dir "$WORK/x4"
expect_fail "eval: missing model directory" "$WORK/nomodel" \
  $ULYSSES eval --model "$WORK/nomodel" --data "$DOCS" --output-dir "$WORK/x5"
touch "$WORK/afile"
expect_fail "eval: --output-dir is a file" "--output-dir $WORK/afile is a file" \
  $ULYSSES eval --model tiny --data "$DOCS" --max-seq-length 64 --output-dir "$WORK/afile"
expect_fail "eval: bad batch size" "--per-device-eval-batch-size must be a positive integer" \
  $ULYSSES eval --model tiny --data "$DOCS" --per-device-eval-batch-size 0 --output-dir "$WORK/x9"
check "nothing written for bad inputs" test -z "$(ls "$WORK" | grep -E '^x[0-9]')"
rc=$(exit_code $ULYSSES eval --data "$DOCS")
check "eval without --model exits 2 (got $rc)" test "$rc" -eq 2
rc=$(exit_code $ULYSSES eval --model tiny)
check "eval without --data exits 2 (got $rc)" test "$rc" -eq 2
expect_fail "eval: did you mean" "did you mean --per-device-eval-batch-size?" \
  $ULYSSES eval --model tiny --data "$DOCS" --per-device-eval-batch-sise 2
expect_fail "eval: snake_case accepted, typo hinted" "did you mean --max-seq-length?" \
  $ULYSSES eval --model tiny --data "$DOCS" --max_seq_lenght 64
expect_ok "eval: snake_case flags" $ULYSSES eval --model tiny --data "$DOCS" --max_seq_length 64 \
  --per_device_eval_batch_size 4 --quiet

# train: eval options checked before anything runs.
expect_fail "train: --eval-steps without --eval-data" "--eval-steps 2 needs --eval-data" \
  $T --max-steps 2 --eval-steps 2 --output-dir "$WORK/x6"
expect_fail "train: missing eval file" "--eval-data $WORK/nope.jsonl: no such file" \
  $T --max-steps 2 --eval-data "$WORK/nope.jsonl" --output-dir "$WORK/x7"
expect_fail "train: --per-device-eval-batch-size 0" "--per-device-eval-batch-size must be" \
  $T --max-steps 2 --eval-data "$DOCS" --per-device-eval-batch-size 0 --output-dir "$WORK/x8"
check "train wrote no output dir for bad eval options" test ! -e "$WORK/x6" -a ! -e "$WORK/x8"
check "train wrote no metrics for a missing eval file" test ! -e "$WORK/x7/metrics.jsonl"
printf 'eval_data: %s\neval_steps: 1\nmax_steps: 1\n' "$DOCS" > "$WORK/eval.yaml"
expect_ok "eval keys in a --config file" $T --config "$WORK/eval.yaml" --quiet --output-dir "$WORK/c"
check "config eval_data evaluated" grep -q '"eval_loss"' "$WORK/c/metrics.jsonl"
finish
