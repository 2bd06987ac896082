#!/usr/bin/env bash
# The commands work end to end: help, info, a short training run, config files and overrides.
source "$(dirname "$0")/lib.bash"

expect_ok "top-level help" $ULYSSES --help
expect_ok "train help" $ULYSSES train --help
expect_ok "info help" $ULYSSES info --help
expect_ok "info tiny" $ULYSSES info --model tiny --max-seq-length 1024
out=$($ULYSSES info --model llama-3-8b --max-seq-length 8192 --precision bf16)
grep -q "parameters 8030261248" <<<"$out" && echo "ok: llama-3-8b parameter count" \
  || { echo "FAIL: llama-3-8b info: $out"; failures=$((failures + 1)); }

# ZeRO memory per rank on 4 ranks, bf16 mixed precision: the docs' formula for llama-3-8b
# (N = 8030261248; stage 3: params 2N/4, master 4N/4, grads 4N/4, optimizer 8N/4, per-group
# padding is invisible here because every group divides by 4).
out=$($ULYSSES info --model llama-3-8b --world-size 4 --precision bf16)
for row in "0   16060522496   32121044992   32121044992   64242089984  144544702464" \
           "1   16060522496    8030261248   32121044992   16060522496   72272351232" \
           "2   16060522496    8030261248    8030261248   16060522496   48181567488" \
           "3    4015130624    8030261248    8030261248   16060522496   36136175616"; do
  grep -qF -- "$row" <<<"$out" && echo "ok: zero row ${row%% *}" \
    || { echo "FAIL: info lacks zero row: $row"; failures=$((failures + 1)); }
done

echo 'max_steps: 3
logging_steps: 1
max_seq_length: 64
per_device_train_batch_size: 2
learning_rate: 0.001' > "$WORK/run.yaml"
expect_ok "train from a YAML config" $ULYSSES train --quiet --config "$WORK/run.yaml" \
  --output-dir "$WORK/a"
n=$(wc -l < "$WORK/a/metrics.jsonl")
[ "$n" -eq 3 ] && echo "ok: 3 logged steps" || { echo "FAIL: $n logged steps"; failures=$((failures + 1)); }
for key in step epoch loss learning_rate grad_norm tokens tokens_per_s tflops_per_device peak_mem_bytes timestamp; do
  grep -q "\"$key\"" "$WORK/a/metrics.jsonl" || { echo "FAIL: metrics lack $key"; failures=$((failures + 1)); }
done
[ -f "$WORK/a/config.json" ] && [ -f "$WORK/a/model.safetensors" ] && echo "ok: HF checkpoint written" \
  || { echo "FAIL: no HF checkpoint"; failures=$((failures + 1)); }

# Flags override the file: --max-steps 2 wins over max_steps: 3.
expect_ok "flag overrides config" $ULYSSES train --quiet --config "$WORK/run.yaml" --max-steps 2 \
  --output-dir "$WORK/b"
n=$(wc -l < "$WORK/b/metrics.jsonl")
[ "$n" -eq 2 ] && echo "ok: override" || { echo "FAIL: override gave $n steps"; failures=$((failures + 1)); }

# JSON config and resuming from the saved HF directory as --model.
echo '{"max_steps": 1, "max_seq_length": 64, "per_device_train_batch_size": 1, "packing": false}' \
  > "$WORK/run.json"
expect_ok "train from a JSON config, model from a saved directory" $ULYSSES train --quiet \
  --config "$WORK/run.json" --model "$WORK/a" --output-dir "$WORK/c"
expect_ok "train on JSON Lines data" $ULYSSES train --quiet --data "$DATA/tiny_docs.jsonl" \
  --max-steps 2 --max-seq-length 64 --per-device-train-batch-size 2 --output-dir "$WORK/d"
# Checkpoints: --save-steps with --save-total-limit, then --resume-from-checkpoint latest.
R="$ULYSSES train --quiet --max-seq-length 64 --per-device-train-batch-size 2 --logging-steps 1 --output-dir $WORK/r"
expect_ok "train with checkpoints" $R --max-steps 4 --save-steps 2 --save-total-limit 1
[ -f "$WORK/r/checkpoint-4/COMPLETE" ] && [ ! -d "$WORK/r/checkpoint-2" ] && echo "ok: rotation keeps the newest" \
  || { echo "FAIL: rotation"; ls "$WORK/r"; failures=$((failures + 1)); }
expect_ok "resume from latest" $R --max-steps 6 --resume-from-checkpoint latest
n=$(wc -l < "$WORK/r/metrics.jsonl")
[ "$n" -eq 6 ] && echo "ok: resumed run appended steps 5-6" || { echo "FAIL: $n metric lines"; failures=$((failures + 1)); }
rm "$WORK/r/checkpoint-4/COMPLETE"
expect_fail "incomplete checkpoint" "COMPLETE" $R --max-steps 6 --resume-from-checkpoint "$WORK/r/checkpoint-4"
finish
