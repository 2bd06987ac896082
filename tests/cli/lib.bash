# Helpers for the CLI tests: each test script gets the ulysses binary ($1) and tests/data ($2).
set -u
ULYSSES=$1
DATA=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0

# expect_fail "description" "expected message fragment" command...
expect_fail() {
  local what=$1 fragment=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "FAIL: $what: exit 0 (expected failure)"; failures=$((failures + 1))
  elif ! grep -qF -- "$fragment" <<<"$out"; then
    echo "FAIL: $what: message lacks '$fragment':"; echo "$out" | head -5; failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}

# expect_ok "description" command...
expect_ok() {
  local what=$1
  shift
  local out
  if out=$("$@" 2>&1); then echo "ok: $what"; else
    echo "FAIL: $what:"; echo "$out" | tail -5; failures=$((failures + 1)); fi
}

finish() {
  [ $failures -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
}
