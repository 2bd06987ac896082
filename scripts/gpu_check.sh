#!/usr/bin/env bash
# One GPU session's checks, in one command (the device machine keeps nothing):
#   1. the CUDA tests (label cuda), 2. the same small model trained 200 steps on the GPU (bf16)
#   and on the CPU (fp32) from the same init and data, losses compared at every logged step,
#   3. the single-GPU benchmark of a preset at several sequence lengths.
# Usage: scripts/gpu_check.sh BUILD_DIR OUT_DIR [bench args...]
set -uo pipefail
BUILD=${1:?build dir}
OUT=${2:?output dir}
shift 2
export NCCL_NVLS_ENABLE=0 OMP_NUM_THREADS=8
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
status=0

echo "== CUDA tests"
for t in "$BUILD"/cuda_*; do
  [ -x "$t" ] || continue
  "$t" --gtest_brief=1 2>&1 | tail -3 | tee -a "$OUT/tests.log" || status=1
done

echo "== GPU vs CPU training (200 steps)"
MODEL="$OUT/small-model"
mkdir -p "$MODEL"
# head_dim 64: the CUDA attention kernel handles head_dim 64 and 128.
cat > "$MODEL/config.json" <<'JSON'
{"model_type": "qwen3", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
 "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64, "vocab_size": 128,
 "rms_norm_eps": 1e-6, "rope_theta": 10000, "tie_word_embeddings": false}
JSON
COMMON=(train --quiet --model "$MODEL" --max-seq-length 256 --per-device-train-batch-size 8
        --learning-rate 3e-3 --lr-scheduler-type cosine --warmup-steps 20 --max-steps 200
        --weight-decay 0.01 --logging-steps 10 --seed 42)
"$BUILD/ulysses" "${COMMON[@]}" --device cuda --output-dir "$OUT/gpu-run" || status=1
"$BUILD/ulysses" "${COMMON[@]}" --device cpu --output-dir "$OUT/cpu-run" || status=1
losses() { grep -o '"loss":[0-9.eE+-]*' "$1" | cut -d: -f2; }
steps() { grep -o '"step":[0-9]*' "$1" | cut -d: -f2; }
paste -d' ' <(steps "$OUT/gpu-run/metrics.jsonl") <(losses "$OUT/gpu-run/metrics.jsonl") \
            <(losses "$OUT/cpu-run/metrics.jsonl") \
  | awk 'NF != 3 || $3 <= 0 {print "unreadable metrics line: " $0; bad = 1; next}
         {d = ($2 - $3) / $3; if (d < 0) d = -d; if (d > m) m = d; n++;
          printf "step %4d  gpu %.6f  cpu %.6f  rel %.5f\n", $1, $2, $3, d}
         END {printf "%d logged steps, max relative difference %.5f (limit 0.02)\n", n, m;
              exit (bad || n == 0 || m > 0.02)}' \
  | tee "$OUT/gpu_vs_cpu.txt" || status=1

echo "== benchmark"
for args in "$@"; do
  # shellcheck disable=SC2086
  "$BUILD/gpu_train_bench" $args 2>&1 | tee -a "$OUT/bench.txt" || status=1
done
exit $status
