#!/usr/bin/env bash
# Multi-GPU checks in one command (the device machine keeps nothing): the CUDA tests that need
# several GPUs, then the multi-GPU benchmark. One rank per GPU.
#   scripts/gpu_multi_check.sh BUILD_DIR OUT_DIR NP [tests|bench|all] [bench args...]
# bench args: one quoted string per configuration, e.g.
#   "--model qwen3-4b --seq 131072 --sp 4 --zero-stage 3 --gradient-checkpointing --steps 2"
set -uo pipefail
BUILD=${1:?build dir}
OUT=${2:?output dir}
NP=${3:?number of GPUs}
WHAT=${4:-all}
shift 4 || shift $#
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=(mpirun -np "$NP" --allow-run-as-root --bind-to none -x NCCL_NVLS_ENABLE=0 -x OMP_NUM_THREADS=8)
# Process-level settings reach every rank when set here (schedules are bench flags:
# --sp-pipeline, --no-zero-overlap in the bench arguments).
for var in ULYSSES_CUDNN_LIBRARY ULYSSES_LOG ULYSSES_NCCL_TIMEOUT_S; do
  [ -n "${!var:-}" ] && MPI+=(-x "$var")
done
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
status=0
# run SECONDS NAME command...: output to $OUT/NAME.log, a summary line here.
run() {
  local limit=$1 name=$2
  shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc ($(grep -a -c 'OK \]' "$OUT/$name.log") ok, $(grep -a -c 'FAILED  \]' "$OUT/$name.log") failed lines)"
  [ $rc -eq 0 ] || status=1
}
if [ "$WHAT" = tests ] || [ "$WHAT" = all ]; then
  run 120 head_chunks "$BUILD/cuda_head_chunks_test"
  run 300 zero_1gpu "$BUILD/cuda_zero_test"
  run 300 comm "${MPI[@]}" "$BUILD/cuda_dist_comm_test"
  run 300 ulysses "${MPI[@]}" "$BUILD/cuda_dist_ulysses_test"
  run 300 zero "${MPI[@]}" "$BUILD/cuda_dist_zero_test"
  # A rank that never joins a collective: the job must stop with the watchdog's message.
  timeout 120 "${MPI[@]}" -x ULYSSES_TEST_NCCL_HANG=1 -x ULYSSES_NCCL_TIMEOUT_S=5 \
    "$BUILD/cuda_dist_comm_test" --gtest_filter='NcclFailure.*' > "$OUT/timeout.log" 2>&1
  if grep -aq "did not complete within" "$OUT/timeout.log"; then echo "timeout: ok"
  else echo "timeout: FAILED (no watchdog message)"; status=1; fi
  # More ranks than GPUs: a clear error on every rank, no hang.
  timeout 120 "${MPI[@]}" -x CUDA_VISIBLE_DEVICES=0 "$BUILD/ulysses" train --device cuda \
    --sp-size "$NP" --max-steps 1 --output-dir "$OUT/bad" > "$OUT/bad_input.log" 2>&1
  if grep -aq "GPU" "$OUT/bad_input.log" && ! grep -aq "^step" "$OUT/bad_input.log"; then
    echo "bad input: ok ($(grep -a -m1 error "$OUT/bad_input.log"))"
  else echo "bad input: FAILED"; status=1; fi
fi
if [ "$WHAT" = bench ] || [ "$WHAT" = all ]; then
  for args in "$@"; do
    # shellcheck disable=SC2086
    timeout 900 "${MPI[@]}" "$BUILD/gpu_train_bench" $args 2>&1 | tee -a "$OUT/bench.txt" \
      | grep -a '^| \|^{\|error' || status=1
  done
fi
exit $status
