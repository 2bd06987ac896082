#!/usr/bin/env bash
# Multi-GPU checks in one command (the device machine keeps nothing): the CUDA tests that need
# several GPUs, then the multi-GPU benchmark. One rank per GPU. Binaries from another machine:
# pack them with scripts/device_pack.sh and source its unpack.sh first (BUILD_DIR = $BIN).
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
# LD_LIBRARY_PATH: the carried libraries of scripts/device_pack.sh (mpirun does not pass it on).
for var in LD_LIBRARY_PATH ULYSSES_CUDNN_LIBRARY ULYSSES_LOG ULYSSES_NCCL_TIMEOUT_S; do
  [ -n "${!var:-}" ] && MPI+=(-x "$var")
done
if [ "$NP" -lt 2 ] && [ "$WHAT" != bench ]; then
  echo "gpu_multi_check.sh: the multi-GPU tests need NP >= 2 (got $NP); one GPU: scripts/gpu_check.sh, or WHAT=bench" >&2
  exit 2
fi
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
  # Ring attention (sp = NP) and, with 4 ranks or more, hybrid 2 x 2 with ZeRO-3, against one GPU.
  run 600 ring "${MPI[@]}" "$BUILD/cuda_dist_ring_test"
  run 300 eval "${MPI[@]}" "$BUILD/cuda_dist_eval_test"
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
