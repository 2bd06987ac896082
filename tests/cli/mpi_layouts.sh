#!/usr/bin/env bash
# Bad parallel layouts under mpirun: every rank exits non-zero within 30 s and the message
# names the fix (printed once). A good layout trains.
source "$(dirname "$0")/lib.bash"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
MPIRUN="timeout 30 mpirun"
T="$ULYSSES train --quiet --max-steps 1 --max-seq-length 64 --per-device-train-batch-size 1 --output-dir $WORK/out"

expect_fail "product != world size" "make the product equal the number of ranks" \
  $MPIRUN -np 2 $T --sp-size 2 --dp-shard-size 2
expect_fail "heads not divisible by sp" "sp sizes that work: 1, 2, 4" \
  $MPIRUN -np 3 $T --sp-size 3 --max-seq-length 66
mkdir -p "$WORK/kv8"
echo '{"model_type": "llama", "hidden_size": 192, "intermediate_size": 64, "num_hidden_layers": 1,
  "num_attention_heads": 24, "num_key_value_heads": 8, "vocab_size": 64}' > "$WORK/kv8/config.json"
expect_fail "kv heads neither split nor replicated" "num_key_value_heads 8" \
  $MPIRUN -np 3 $T --sp-size 3 --max-seq-length 66 --model "$WORK/kv8"
expect_fail "max-seq-length not a multiple of sp" "use --max-seq-length 64" \
  $MPIRUN -np 2 $T --sp-size 2 --max-seq-length 63
out=$($MPIRUN -np 2 $T --sp-size 2 --max-seq-length 63 2>&1)
n=$(grep -c "error:" <<<"$out")
[ "$n" -eq 1 ] && echo "ok: message printed once" || { echo "FAIL: printed $n times"; failures=$((failures + 1)); }
# The layout is checked before the lengths that depend on it, and the rank is named once.
out=$($MPIRUN -np 4 $T --sp-size 3 --max-seq-length 64 2>&1)
grep -q "world size 4 is not divisible by --sp-size 3" <<<"$out" && ! grep -q -- "--max-seq-length" <<<"$out" \
  && echo "ok: layout checked before lengths" \
  || { echo "FAIL: sp 3 on 4 ranks: $out"; failures=$((failures + 1)); }
# (an error agreed on by a collective, here the output-dir claim of a used folder)
out=$(mkdir -p "$WORK/used/checkpoint-1" && $MPIRUN -np 2 $T --output-dir "$WORK/used" 2>&1)
[ "$(grep -o "(rank 0)" <<<"$out" | wc -l)" -eq 1 ] && grep -q -- "--overwrite-output-dir" <<<"$out" \
  && echo "ok: no doubled rank suffix" \
  || { echo "FAIL: doubled suffix: $out"; failures=$((failures + 1)); }
# --device cuda with more ranks than visible GPUs (none here, or one when CUDA_VISIBLE_DEVICES=0
# on a GPU machine): every rank stops with a message naming --device cuda, nobody hangs.
expect_fail "cuda with more ranks than GPUs" "--device cuda" \
  env CUDA_VISIBLE_DEVICES=0 $MPIRUN -np 2 $T --sp-size 2 --device cuda
expect_ok "sp 2 x dp 2 trains" $MPIRUN -np 4 $T --sp-size 2 --max-steps 2
finish
