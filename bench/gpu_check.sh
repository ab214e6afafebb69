#!/usr/bin/env bash
# Every GPU check and GPU figure in one command (bench/gpu_check.py; README "On a GPU"):
#   bench/gpu_check.sh OUT_DIR             on the GPU machine, from a plain checkout, ~8 min
#   bench/gpu_check.sh --dry-run OUT_DIR   the same steps on the CPU (tiny sizes, fake CuPy)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m bench.gpu_check "$@"
