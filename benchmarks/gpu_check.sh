#!/usr/bin/env bash
# The prepared GPU check: install missing packages from benchmarks/wheels/ (no network), run the gpu-marked tests,
# then the GPU benchmarks; writes OUT_DIR/gpu_check.json, gpu_check.txt (the table) and gpu_check.log.
# Exits non-zero naming every failed step. The steps share a budget of 8 minutes under --device cuda (a step that
# runs past its share is killed and reported); --device cpu runs the same steps at small sizes.
#
# Usage: bash benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu]     (from anywhere; default --device cuda)
#   PYTHON=...            the interpreter to use (default: python3)
#   FP_DATA_DIR=...       folder with MNIST/raw/ and cifar-10-batches-py/ (default: ../shared/data beside the
#                         checkout, else benchmarks/data/, else random data of the same shapes; the JSON says which)
#   FP_CHECK_FAIL=STEP    self-test: make STEP fail on purpose (install, environment, cufinufft, tests, bench:NAME)
set -euo pipefail
usage="usage: bash benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu]"
[[ $# -ge 1 && $1 != -* ]] || { echo "$usage" >&2; exit 2; }
out_dir=$1
shift
device=cuda
while [[ $# -gt 0 ]]; do
  case $1 in
    --device) [[ $# -ge 2 ]] || { echo "$usage" >&2; exit 2; }; device=$2; shift 2 ;;
    --device=*) device=${1#--device=}; shift ;;
    *) echo "unknown argument: $1" >&2; echo "$usage" >&2; exit 2 ;;
  esac
done
[[ $device == cuda || $device == cpu ]] || { echo "--device must be cuda or cpu, got '$device'" >&2; exit 2; }
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py run "$out_dir" --device "$device"
