#!/usr/bin/env bash
# Ring and hybrid layouts under mpirun, from the command line and a config file: good layouts
# train; bad ones (ring size not dividing sp, heads not divisible by the Ulysses degree, a
# sequence length that is not a multiple of 2 x sp) stop every rank with a message naming the
# option, within 30 s.
source "$(dirname "$0")/lib.bash"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1
MPIRUN="timeout 30 mpirun"
T="$ULYSSES train --max-steps 2 --max-seq-length 64 --per-device-train-batch-size 1 --copy-min-length 5 --copy-max-length 20 --output-dir $WORK/out --overwrite-output-dir"
losses() { grep "^step " <<<"$1" | grep -o "| loss [0-9.]*"; }  # the progress lines' losses

# A model with 3 attention heads: Ulysses cannot go past sp 3, the ring can.
mkdir -p "$WORK/heads3"
echo '{"model_type": "llama", "hidden_size": 24, "intermediate_size": 32, "num_hidden_layers": 1,
  "num_attention_heads": 3, "num_key_value_heads": 1, "vocab_size": 64}' > "$WORK/heads3/config.json"

# The same printed losses as Ulysses (and as one rank).
reference=$(losses "$($T 2>&1)")
out=$($MPIRUN -np 4 $T --sp-size 4 --sp-backend ring 2>&1)
if [ $? -eq 0 ] && grep -q "attention ring (ring 4, zigzag)" <<<"$out" \
  && [ "$(losses "$out" | wc -l)" -eq 2 ] && [ "$(losses "$out")" = "$reference" ]; then
  echo "ok: ring 4 trains, the plan names it, losses as one rank"
else
  echo "FAIL: ring 4 (one rank: $reference):"; echo "$out" | tail -5; failures=$((failures + 1))
fi
out=$($MPIRUN -np 4 $T --sp-size 4 --sp-backend hybrid --ring-size 2 2>&1)
if [ $? -eq 0 ] && grep -q "sp layout: hybrid = Ulysses 2 x ring 2" <<<"$out" \
  && [ "$(losses "$out")" = "$reference" ]; then
  echo "ok: hybrid 2 x 2 trains, the mesh prints its grid, losses as one rank"
else
  echo "FAIL: hybrid 2 x 2 (one rank: $reference):"; echo "$out" | tail -5; failures=$((failures + 1))
fi
expect_ok "ring past the head count (sp 4, 3 heads)" \
  $MPIRUN -np 4 $T --sp-size 4 --sp-backend ring --model "$WORK/heads3"
cat > "$WORK/run.yaml" <<YAML
sp_size: 4
sp_backend: hybrid
ring_size: 2
max_seq_length: 64
YAML
expect_ok "hybrid from a config file" $MPIRUN -np 4 $T --config "$WORK/run.yaml"

expect_fail "ring size not dividing sp" "--ring-size 3 does not divide --sp-size 4" \
  $MPIRUN -np 4 $T --sp-size 4 --sp-backend hybrid --ring-size 3
out=$($MPIRUN -np 4 $T --sp-size 4 --sp-backend hybrid --ring-size 3 2>&1)
n=$(grep -c "error:" <<<"$out")
[ "$n" -eq 1 ] && echo "ok: message printed once" || { echo "FAIL: printed $n times"; failures=$((failures + 1)); }
expect_fail "heads not divisible by the Ulysses degree" \
  "the Ulysses degree 2 (--sp-size 4 / --ring-size 2) does not divide num_attention_heads 3" \
  $MPIRUN -np 4 $T --sp-size 4 --sp-backend hybrid --ring-size 2 --model "$WORK/heads3"
expect_fail "hybrid without a ring size" "--sp-backend hybrid needs --ring-size" \
  $MPIRUN -np 2 $T --sp-size 2 --sp-backend hybrid
expect_fail "ring size with ulysses" "--ring-size 2 needs --sp-backend hybrid" \
  $MPIRUN -np 2 $T --sp-size 2 --ring-size 2
expect_fail "sequence length not a multiple of 2 x sp" "use --max-seq-length 64" \
  $MPIRUN -np 4 $T --sp-size 4 --sp-backend ring --max-seq-length 60
expect_fail "unknown backend" "available: ulysses, ring, hybrid" \
  $MPIRUN -np 2 $T --sp-size 2 --sp-backend zigzag
finish
