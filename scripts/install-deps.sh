#!/usr/bin/env bash
# Installs the Debian packages ulysses builds and tests with. Idempotent: packages
# already present are left alone and apt is not touched at all when nothing is missing.
# Runs as root on a fresh Debian 12 machine (uses sudo when not root and sudo exists).
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenblas-openmp-dev   # sgemm for the CPU ops (OpenMP-threaded build)
  nlohmann-json3-dev       # config.json, safetensors headers, metrics
  libyaml-cpp-dev          # --config run.yaml
  libcli11-dev             # command line
  libpcre2-dev             # tokenizer: pre-tokenizer regexes (\p{L}, \p{N})
  libicu-dev               # tokenizer: NFC normalization
  libgtest-dev libgmock-dev
  libbenchmark-dev
  libopenmpi-dev openmpi-bin   # MPI communicator (CPU backend, NCCL bootstrap)
  clang                    # make fuzz / make sanitize: libFuzzer, ASan + UBSan
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
