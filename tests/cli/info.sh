#!/usr/bin/env bash
# `ulysses info` takes train's options with train's meanings: --max-seq-length is tokens per
# sequence, the layout is sp/dp/ZeRO/offload of the job; its memory block is the one `train`
# prints for the same options; it says whether the run fits --memory-gib and which changes
# would; steps and tokens per epoch, --num-train-epochs.
source "$(dirname "$0")/lib.bash"
DOCS=$DATA/tiny_docs.jsonl

check() {  # check "description" condition...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
memory_block() { sed -n '/^memory per device/,/^  total/p'; }

# The same options give the same memory plan in info and train.
OPTS="--max-seq-length 128 --per-device-train-batch-size 2 --gradient-checkpointing --zero-stage 2"
train_plan=$($ULYSSES train $OPTS --max-steps 1 --output-dir "" 2>&1 | memory_block)
info_plan=$($ULYSSES info $OPTS 2>&1 | memory_block)
check "info's memory block = train's for the same options" test -n "$info_plan" -a "$info_plan" = "$train_plan"
[ "$info_plan" = "$train_plan" ] || diff <(echo "$train_plan") <(echo "$info_plan")
# --checkpoint-layers: the layers past N kept whole, in both plans.
train_plan=$($ULYSSES train $OPTS --checkpoint-layers 1 --max-steps 1 --output-dir "" 2>&1 | memory_block)
info_plan=$($ULYSSES info $OPTS --checkpoint-layers 1 2>&1 | memory_block)
check "--checkpoint-layers: info's memory block = train's" test -n "$info_plan" -a "$info_plan" = "$train_plan"
check "--checkpoint-layers: named in the plan" grep -q "1 of 2 layers checkpointed" <<<"$info_plan"
# --loss-tile-tokens auto (the default) is 1024 on the CPU; a tile given is kept.
check "auto loss tile on the CPU" grep -q "loss in tiles of 1024 tokens (auto)" \
  <<<"$($ULYSSES train $OPTS --max-steps 1 --output-dir "" 2>&1)"
check "a loss tile given" grep -q "loss in tiles of 64 tokens$\|loss in tiles of 64 tokens," \
  <<<"$($ULYSSES train $OPTS --loss-tile-tokens 64 --max-steps 1 --output-dir "" 2>&1)"

# --max-seq-length is tokens per sequence: with --sp-size 4 each device holds a quarter.
H="--model qwen3-4b --max-seq-length 131072 --sp-size 4 --device cuda"
out=$($ULYSSES info $H 2>&1)
check "tokens per sequence and per device" grep -q "^sequence: 131072 tokens, 32768 per device" <<<"$out"
check "bf16 on cuda" grep -q "bf16 + fp32 master, 32768 tokens per micro-step" <<<"$out"
check "ZeRO-0 128K sp 4 does not fit 80 GiB" grep -q "does NOT fit" <<<"$out"
check "and names the change that fits" \
  grep -q "^  fits with --zero-stage 3 --gradient-checkpointing" <<<"$out"
check "and the largest sequence" grep -qE "^  fits with --max-seq-length [0-9]+" <<<"$out"
out=$($ULYSSES info $H --zero-stage 3 --gradient-checkpointing 2>&1)
check "the headline run (qwen3-4b 128K, sp 4, ZeRO-3, checkpointing) fits 80 GiB" \
  grep -qE "^fit: .* of 80.00 GiB: fits" <<<"$out"
check "layout line" grep -q "^layout: world 4 = dp_replicate 1 x dp_shard 1 x sp 4; ZeRO stage 3 over 4 ranks" <<<"$out"
out=$($ULYSSES info $H --zero-stage 3 --gradient-checkpointing --offload-optimizer --offload-params 2>&1)
check "offload: host memory section printed" grep -q "^host memory per rank:" <<<"$out"
check "offload: states off the device" grep -qE "^  optimizer +0.0 KiB" <<<"$out"
out=$($ULYSSES info $H --zero-stage 3 --gradient-checkpointing --offload-optimizer --offload-params --host-memory-gib 120 2>&1)
check "--host-memory-gib: longest sequence per offload choice" grep -q "^  --zero-stage 3 --offload-optimizer --offload-params " <<<"$out"
check "--host-memory-gib: activation offload row" grep -q "^    + --recompute-attention --offload-activations " <<<"$out"
out=$($ULYSSES info $H --zero-stage 3 --gradient-checkpointing --offload-optimizer --offload-params --host-memory-gib 10 2>&1)
check "--host-memory-gib too small: host does not fit" grep -q "^host: .* does NOT fit --host-memory-gib 10" <<<"$out"
out=$($ULYSSES info $H --zero-stage 3 --gradient-checkpointing --world-size 8 --memory-gib 40 2>&1)
check "--world-size 8 with sp 4: dp_shard 2, ZeRO over 8" \
  grep -q "dp_shard 2 x sp 4; ZeRO stage 3 over 8 ranks" <<<"$out"
check "--memory-gib 40 is the budget" grep -q "of 40.00 GiB" <<<"$out"

# Epochs: steps and tokens per epoch from the data, --num-train-epochs sets the steps.
out=$($ULYSSES info --data "$DOCS" --max-seq-length 64 --per-device-train-batch-size 2 \
  --num-train-epochs 4 --memory-gib 0 2>&1)
check "epoch line" grep -q "^epoch: 12 documents in 5 sequences (320 tokens) = 2.5 steps per epoch; --max-steps 10 = 4 epochs" <<<"$out"
printf 'max_seq_length: 64\nper_device_train_batch_size: 2\nnum_train_epochs: 2\ndata: %s\n' \
  "$DOCS" > "$WORK/run.yaml"
out=$($ULYSSES info --config "$WORK/run.yaml" --memory-gib 0 2>&1)
check "info reads --config like train" grep -q -- "--max-steps 5 = 2 epochs" <<<"$out"
expect_ok "train --num-train-epochs 2" $ULYSSES train --config "$WORK/run.yaml" --logging-steps 1 \
  --quiet --output-dir "$WORK/e"
check "2 epochs = 5 steps" test "$(grep -c '"loss"' "$WORK/e/metrics.jsonl")" -eq 5

# Bad input, as train refuses it.
expect_fail "info: sp not dividing the heads" "--sp-size 3" $ULYSSES info --sp-size 3 --max-seq-length 96
expect_fail "info: world size not a multiple" "world size 6 is not divisible by --sp-size 4" \
  $ULYSSES info --sp-size 4 --world-size 6
expect_fail "info: offload without ZeRO" "--offload-params" $ULYSSES info --offload-params
expect_fail "epochs of endless data" "--num-train-epochs needs a finite data set" \
  $ULYSSES train --num-train-epochs 1 --output-dir "$WORK/x1"
expect_fail "negative epochs" "--num-train-epochs must be >= 0" \
  $ULYSSES train --num-train-epochs -1 --output-dir "$WORK/x2"
check "nothing written for bad epochs" test ! -e "$WORK/x1" -a ! -e "$WORK/x2"
finish
