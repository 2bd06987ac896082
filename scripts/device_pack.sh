#!/usr/bin/env bash
# Packs binaries built here for the GPU machine, which keeps nothing and takes at most 64 MiB of
# carried files: each binary xz-compressed (~10x smaller), plus the shared libraries they link
# that the GPU machine's image lacks (the tokenizer's ICU: Debian 12's libicuuc.so.72 and
# libicudata.so.72; without them every binary that links the tokenizer exits 127 there).
#   scripts/device_pack.sh BUILD_DIR DEST binary...     e.g. build .device gpu_train_bench ulysses
# Writes DEST/bin/NAME.xz, DEST/lib/LIB.xz and DEST/unpack.sh. On the GPU machine, from the
# repository root:
#   source DEST/unpack.sh     # unpacks into DEST/b and DEST/libs, exports LD_LIBRARY_PATH and
#                             # BIN (DEST/b), and names every library still not found
# mpirun does not pass LD_LIBRARY_PATH to its ranks by itself: scripts/gpu_multi_check.sh
# forwards it (-x), as any other mpirun line must.
set -euo pipefail
BUILD=${1:?build dir}
DEST=${2:?destination folder}
shift 2
[ $# -gt 0 ] || { echo "device_pack.sh: name at least one binary of $BUILD" >&2; exit 2; }
# Libraries to carry when a binary links them.
CARRY_LIBS=(libicuuc.so.72 libicudata.so.72)
mkdir -p "$DEST/bin" "$DEST/lib"
for name in "$@"; do
  [ -x "$BUILD/$name" ] || { echo "device_pack.sh: no binary $BUILD/$name (build it first)" >&2; exit 1; }
  xz -T0 -6 -c "$BUILD/$name" > "$DEST/bin/$name.xz.tmp" && mv "$DEST/bin/$name.xz.tmp" "$DEST/bin/$name.xz"
  for lib in "${CARRY_LIBS[@]}"; do
    path=$(ldd "$BUILD/$name" | awk -v l="$lib" '$1 == l {print $3}')
    [ -n "$path" ] && [ ! -f "$DEST/lib/$lib.xz" ] && xz -T0 -6 -c "$(readlink -f "$path")" > "$DEST/lib/$lib.xz"
  done
done
cat > "$DEST/unpack.sh" <<'EOF'
# Sourced on the GPU machine (see scripts/device_pack.sh): unpack, set the library path, check.
_dest=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$_dest/b" "$_dest/libs"
for _f in "$_dest"/bin/*.xz; do _n=$(basename "$_f" .xz); xz -dc "$_f" > "$_dest/b/$_n"; chmod +x "$_dest/b/$_n"; done
for _f in "$_dest"/lib/*.xz; do [ -e "$_f" ] && xz -dc "$_f" > "$_dest/libs/$(basename "$_f" .xz)"; done
export LD_LIBRARY_PATH="$_dest/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export BIN="$_dest/b"
for _f in "$_dest"/b/*; do
  ldd "$_f" | grep "not found" | sed "s|^|unpack.sh: $(basename "$_f") needs |"
done
unset _dest _f _n
EOF
du -sh "$DEST" | sed 's/^/device_pack.sh: /'
