#!/usr/bin/env bash
# CPU benchmarks: prints Google Benchmark's table and writes one JSON file (bench/out/).
set -euo pipefail
BUILD_DIR=${1:-build}
mkdir -p bench/out
"$BUILD_DIR/train_step_bench" --benchmark_out=bench/out/train_step_cpu.json \
  --benchmark_out_format=json --benchmark_counters_tabular=true
echo "JSON: bench/out/train_step_cpu.json"
