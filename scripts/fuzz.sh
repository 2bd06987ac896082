#!/usr/bin/env bash
# Runs every libFuzzer harness of fuzz/ for a bounded time: scripts/fuzz.sh BUILD_DIR SECONDS.
# Each starts from its committed seed corpus (fuzz/corpus/<name>/, read only) and writes what it
# finds to a scratch corpus; a crash, leak or sanitizer report fails the script and leaves the
# reproducer (crash-*) in the scratch folder, which is printed.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-20}
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
status=0
for harness in fuzz/*_fuzz.cc; do
  name=$(basename "$harness" .cc)
  corpus=fuzz/corpus/${name%_fuzz}
  mkdir -p "$scratch/$name"
  if (cd "$scratch/$name" && "$OLDPWD/$build/$name" -max_total_time="$seconds" -max_len=65536 \
        -rss_limit_mb=2048 -timeout=10 . "$OLDPWD/$corpus" >log.txt 2>&1); then
    echo "ok: $name ($(grep -o 'Done [0-9]* runs' "$scratch/$name/log.txt"))"
  else
    echo "FAIL: $name: see $scratch/$name (log.txt, crash-*)"; tail -30 "$scratch/$name/log.txt"
    status=1
  fi
done
[ $status -eq 0 ] && rm -rf "$scratch"
exit $status
