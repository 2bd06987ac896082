#!/usr/bin/env bash
# Hugging Face habits on the command line: snake_case flags, exit 2 for every command-line error,
# "did you mean" for flags and config keys, --version.
source "$(dirname "$0")/lib.bash"

check() {  # check "description" condition...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}
exit_code() { "$@" > /dev/null 2>&1; echo $?; }

out=$($ULYSSES --version 2>&1)
check "--version exits 0" test $? -eq 0
check "--version prints the version" grep -qE '^ulysses [0-9]+\.[0-9]+' <<<"$out"

expect_ok "snake_case flags (--max_steps, --max_seq_length=, --per_device_train_batch_size)" \
  $ULYSSES train --quiet --max_steps 1 --max_seq_length=32 --per_device_train_batch_size 1 \
  --output_dir "$WORK/a"
check "snake_case run wrote metrics" test -f "$WORK/a/metrics.jsonl"

for cmd in "train --max-step 3" "train --max-steps" "train --max-steps abc" \
           "train --long-documents cut" "info --precision fp8" "tokenize --output x.jsonl" \
           "frobnicate" ""; do
  rc=$(exit_code $ULYSSES $cmd)
  check "exit 2 for: ulysses $cmd (got $rc)" test "$rc" -eq 2
done
rc=$(exit_code $ULYSSES train --help)
check "help exits 0" test "$rc" -eq 0

expect_fail "did you mean a flag" "did you mean --max-steps?" $ULYSSES train --max-step 3
expect_fail "did you mean a snake_case typo" "did you mean --learning-rate?" \
  $ULYSSES train --learnig_rate 1e-3
printf 'max_step: 3\n' > "$WORK/typo.yaml"
expect_fail "did you mean a config key" "did you mean max_steps?" \
  $ULYSSES train --config "$WORK/typo.yaml"
rc=$(exit_code $ULYSSES train --config "$WORK/typo.yaml")
check "bad config key exits 2 (got $rc)" test "$rc" -eq 2
finish
