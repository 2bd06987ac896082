#!/usr/bin/env bash
# Output-dir ownership: one run at a time per folder, and no silent reuse of an earlier run's.
source "$(dirname "$0")/lib.bash"
T="$ULYSSES train --quiet --max-seq-length 32 --per-device-train-batch-size 1 --logging-steps 1000"

# A used folder (an earlier run's checkpoints and model) needs --overwrite-output-dir or a resume.
expect_ok "first run" $T --max-steps 2 --save-steps 1 --output-dir "$WORK/used"
expect_fail "used dir refused" "--overwrite-output-dir" $T --max-steps 1 --output-dir "$WORK/used"
expect_ok "used dir with --overwrite-output-dir" $T --max-steps 1 --output-dir "$WORK/used" \
  --overwrite-output-dir
expect_ok "used dir with a resume" $T --max-steps 3 --output-dir "$WORK/used" \
  --resume-from-checkpoint latest
# `latest` skips checkpoints of an incompatible run (another model).
out=$($T --max-steps 3 --output-dir "$WORK/used" --resume-from-checkpoint latest \
  --model "$DATA/golden/llama" 2>&1)
grep -q "skipping .*checkpoint-2 (of another run)" <<<"$out" \
  && grep -q "no complete checkpoint-<step> folder of a compatible run" <<<"$out" \
  && echo "ok: latest skips an incompatible run's checkpoints" \
  || { echo "FAIL: latest with another model: $out"; failures=$((failures + 1)); }

# Rotation in a reused folder removes only the new run's checkpoints.
expect_ok "new run with rotation" $T --max-steps 12 --save-steps 3 --save-total-limit 2 \
  --seed 7 --output-dir "$WORK/used" --overwrite-output-dir
for kept in checkpoint-1 checkpoint-2 checkpoint-9 checkpoint-12; do
  [ -f "$WORK/used/$kept/COMPLETE" ] && echo "ok: $kept kept" \
    || { echo "FAIL: $kept missing after rotation: $(ls "$WORK/used")"; failures=$((failures + 1)); }
done
[ ! -e "$WORK/used/checkpoint-3" ] && [ ! -e "$WORK/used/checkpoint-6" ] \
  && echo "ok: the new run's older checkpoints rotated away" \
  || { echo "FAIL: rotation kept: $(ls "$WORK/used")"; failures=$((failures + 1)); }

# Two concurrent runs on one folder: the second is refused naming the holder of the lock.
$T --max-steps 1000000 --output-dir "$WORK/busy" >"$WORK/first.log" 2>&1 &
first=$!
for _ in $(seq 100); do grep -q "pid=$first" "$WORK/busy/.lock" 2>/dev/null && break; sleep 0.1; done
expect_fail "second run on a locked dir" "is in use by another run (pid=$first host=" \
  $T --max-steps 1 --output-dir "$WORK/busy"
kill $first && wait $first 2>/dev/null
[ ! -e "$WORK/busy/checkpoint-1" ] && echo "ok: the refused run wrote nothing" \
  || { echo "FAIL: the refused run wrote into the busy dir"; failures=$((failures + 1)); }
# After the holder ends the lock is free again (the folder is not used: no checkpoint, no model).
expect_ok "dir free once the holder ended" $T --max-steps 1 --output-dir "$WORK/busy"
finish
