#!/usr/bin/env bash
# Run reports: the progress line (elapsed, ETA, epoch), the end-of-run summary and
# train_results.json, loss.svg (train and eval) at the end and from `ulysses plot`, and
# metrics.jsonl cut back to the resume step (no step twice after resuming from an earlier one).
source "$(dirname "$0")/lib.bash"
DOCS=$DATA/tiny_docs.jsonl

check() {  # check "description" condition...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

T="$ULYSSES train --data $DOCS --max-seq-length 64 --per-device-train-batch-size 2 --logging-steps 1"
out=$($T --max-steps 6 --eval-data "$DOCS" --eval-steps 3 --save-steps 2 --output-dir "$WORK/r" 2>&1)
check "run exits 0" test $? -eq 0
check "progress line: elapsed, eta and epoch" \
  grep -qE '^step +3/6 \|.* tok/s \|.*\| epoch [0-9.]+ \| [0-9hms]+ elapsed, eta [0-9hms]+$' <<<"$out"
check "summary line" grep -qE '^done: 6 steps \(to step 6\) in [0-9hms]+ \| 768 tokens, [0-9]+ tok/s mean \| loss [0-9.]+ final, [0-9.]+ mean \| eval_loss [0-9.]+ \(perplexity [0-9.]+\) \| peak memory .* per rank$' <<<"$out"
check "train_results.json" grep -q '"train_tokens": 768' "$WORK/r/train_results.json"
check "train_results.json has eval_loss" grep -qE '"eval_loss": [0-9.]+' "$WORK/r/train_results.json"
check "loss.svg written" test -f "$WORK/r/loss.svg"
check "loss.svg: train line" grep -q 'class="train loss"' "$WORK/r/loss.svg"
check "loss.svg: eval line" grep -q 'class="eval loss"' "$WORK/r/loss.svg"
check "no temporaries" test -z "$(ls "$WORK/r" | grep '\.tmp$')"

# Resume from checkpoint-2 of the finished 6-step run: steps 3-6 again, each once.
expect_ok "resume from an earlier checkpoint" $T --max-steps 6 --eval-data "$DOCS" --eval-steps 3 \
  --output-dir "$WORK/r" --resume-from-checkpoint "$WORK/r/checkpoint-2" --quiet
steps=$(grep -v eval_loss "$WORK/r/metrics.jsonl" | sed -E 's/^\{"step":([0-9]+).*/\1/' | tr '\n' ' ')
check "train steps once each after the resume ($steps)" test "$steps" = "1 2 3 4 5 6 "
evals=$(grep eval_loss "$WORK/r/metrics.jsonl" | sed -E 's/^\{"step":([0-9]+).*/\1/' | tr '\n' ' ')
check "eval steps once each after the resume ($evals)" test "$evals" = "3 6 "

rm "$WORK/r/loss.svg"
out=$($ULYSSES plot --output-dir "$WORK/r" 2>&1)
check "ulysses plot exits 0 and names the file" test "$out" = "$WORK/r/loss.svg"
check "ulysses plot wrote loss.svg" grep -q 'class="eval loss"' "$WORK/r/loss.svg"
expect_fail "plot: no metrics" "--output-dir $WORK/none: no metrics.jsonl" \
  $ULYSSES plot --output-dir "$WORK/none"
mkdir -p "$WORK/bad" && echo 'garbage' > "$WORK/bad/metrics.jsonl"
expect_fail "plot: bad metrics line" "metrics.jsonl:1: not a metrics line" \
  $ULYSSES plot --output-dir "$WORK/bad"
check "plot: nothing written for bad metrics" test ! -e "$WORK/bad/loss.svg"
rc=$($ULYSSES plot > /dev/null 2>&1; echo $?)
check "plot without --output-dir exits 2 (got $rc)" test "$rc" -eq 2
finish
