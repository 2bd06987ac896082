#!/usr/bin/env bash
# Bad input gets a clear message and a non-zero exit.
source "$(dirname "$0")/lib.bash"
T="$ULYSSES train --quiet --max-steps 1 --max-seq-length 64 --per-device-train-batch-size 1 --output-dir $WORK/out"

expect_fail "unknown flag" "--bogus" $T --bogus 3
expect_fail "malformed integer" "--max-steps" $T --max-steps abc
expect_fail "malformed float" "--learning-rate" $T --learning-rate fast
expect_fail "non-positive max steps" "--max-steps must be a positive integer" $T --max-steps 0
expect_fail "non-positive sequence length" "--max-seq-length" $T --max-seq-length -5
expect_fail "non-positive batch size" "--per-device-train-batch-size" $T --per-device-train-batch-size 0
expect_fail "unknown scheduler" "--lr-scheduler-type" $T --lr-scheduler-type polynomial
expect_fail "zero stage out of range" "--zero-stage" $T --zero-stage 7
expect_fail "bf16 gradient reduction with ZeRO" "--grad-reduce-dtype bfloat16 is implemented for --zero-stage 0" \
  $T --grad-reduce-dtype bfloat16 --zero-stage 1
expect_fail "unknown gradient reduction dtype" "--grad-reduce-dtype must be" $T --grad-reduce-dtype fp8
expect_fail "unknown attention kernel" "--attn-implementation" $T --attn-implementation flash
expect_fail "CUDA attention kernel on the CPU" "--attn-implementation cudnn is a CUDA kernel" \
  $T --device cpu --attn-implementation cudnn
expect_fail "unknown preset / missing dir" "no config.json" $T --model /nonexistent/model
mkdir -p "$WORK/badjson" && echo '{"model_type": "llama", ' > "$WORK/badjson/config.json"
expect_fail "invalid config.json" "$WORK/badjson/config.json" $T --model "$WORK/badjson"
mkdir -p "$WORK/gpt2" && echo '{"model_type": "gpt2", "hidden_size": 8}' > "$WORK/gpt2/config.json"
expect_fail "unsupported model_type" "gpt2" $T --model "$WORK/gpt2"
echo 'max_steps: 2
no_such_option: 1' > "$WORK/run.yaml"
expect_fail "unknown config key" "no_such_option" $T --config "$WORK/run.yaml"
echo 'max_steps: [1' > "$WORK/broken.yaml"
expect_fail "broken yaml" "$WORK/broken.yaml" $T --config "$WORK/broken.yaml"
expect_fail "missing config file" "/nonexistent/run.yaml" $T --config /nonexistent/run.yaml
expect_fail "sp without MPI" "--sp-size" $T --sp-size 2
expect_fail "checkpoint layers without checkpointing" \
  "--checkpoint-layers 1 needs --gradient-checkpointing" $T --checkpoint-layers 1
expect_fail "checkpoint layers with attention recompute" \
  "--checkpoint-layers auto cannot be combined with --recompute-attention" \
  $T --gradient-checkpointing --recompute-attention --checkpoint-layers auto
expect_fail "negative checkpoint layers" "--checkpoint-layers must be >= 0" \
  $T --gradient-checkpointing --checkpoint-layers -4
expect_fail "zero loss tile" "--loss-tile-tokens must be >= 1 or auto" $T --loss-tile-tokens 0
expect_fail "malformed loss tile" "--loss-tile-tokens" $T --loss-tile-tokens big
expect_fail "info on a bad model" "not a preset" $ULYSSES info --model nowhere

# A corrupt safetensors file next to a valid config.json.
mkdir -p "$WORK/corrupt"
$ULYSSES train --quiet --max-steps 1 --max-seq-length 32 --per-device-train-batch-size 1 \
  --output-dir "$WORK/corrupt" >/dev/null 2>&1
printf '\xff\xff\xff\xff\xff\xff\x00\x00{}' > "$WORK/corrupt/model.safetensors"
expect_fail "corrupt safetensors (header length)" "model.safetensors" $T --model "$WORK/corrupt"
head -c 100 "$DATA/golden/llama/model.safetensors" > "$WORK/truncated.safetensors"
mkdir -p "$WORK/truncated" && cp "$DATA/golden/llama/config.json" "$WORK/truncated/" \
  && mv "$WORK/truncated.safetensors" "$WORK/truncated/model.safetensors"
expect_fail "truncated safetensors" "model.safetensors" $T --model "$WORK/truncated"
echo '{"input_ids": [5, 500, 7]}' > "$WORK/big_ids.jsonl"
expect_fail "token id >= vocab_size" "token id 500 is outside the vocabulary (vocab_size 128)" \
  $T --data "$WORK/big_ids.jsonl"
expect_fail "unknown data source" "docs/formats.md" $T --data "$WORK/nothing-here"
expect_fail "infinite learning rate" "--learning-rate must be a finite number" $T --learning-rate inf
expect_fail "NaN learning rate" "--learning-rate must be a finite number" $T --learning-rate nan
expect_fail "infinite max grad norm" "--max-grad-norm must be a finite number" $T --max-grad-norm inf
expect_fail "infinite adam epsilon" "--adam-epsilon must be a finite number" $T --adam-epsilon inf
expect_fail "non-positive max skipped steps" "--max-skipped-steps" $T --max-skipped-steps 0
# A diverging run (lr 1e30, no clipping): its non-finite steps are skipped (no update), three in
# a row stop it (--max-skipped-steps), and no final model is written. (A checkpoint written
# before holds the last finite weights; writing a non-finite one is refused, see checkpoint_test.)
expect_fail "diverging run stops" "consecutive steps had a non-finite loss or gradient norm" \
  $ULYSSES train --quiet --max-steps 4 --save-steps 2 --learning-rate 1e30 --max-grad-norm 0 \
  --copy-min-length 8 --copy-max-length 8 --max-seq-length 32 --per-device-train-batch-size 1 \
  --output-dir "$WORK/diverged"
[ ! -e "$WORK/diverged/model.safetensors" ] \
  && echo "ok: no final model of a diverged run" \
  || { echo "FAIL: a diverged run wrote: $(ls "$WORK/diverged")"; failures=$((failures + 1)); }
# A sequence longer than the model's max_position_embeddings (256) is a warning naming the key.
out=$($ULYSSES train --quiet --max-steps 1 --max-seq-length 512 --per-device-train-batch-size 1 \
  --model "$DATA/golden/llama" --output-dir "$WORK/long" 2>&1)
grep -q "exceeds max_position_embeddings 256" <<<"$out" && echo "ok: max_position_embeddings warning" \
  || { echo "FAIL: no max_position_embeddings warning: $out"; failures=$((failures + 1)); }
finish
