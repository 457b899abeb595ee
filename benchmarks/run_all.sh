#!/usr/bin/env bash
# All performance benchmarks, one after the other; each prints its table and writes JSON to benchmarks/results/.
# About 15 minutes on a 2-core CPU; bench_overhead.py (training overhead) runs on its own, see README.md.
# Usage: bash benchmarks/run_all.sh [--large]
#   --large: also a monitor probe of 60,000 MNIST images and bench_large.py (n = 60,000 analysis, ~2 more minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_spectrum.py
python benchmarks/bench_filtering.py --n 5000 --n-deltas 20
python benchmarks/bench_monitor.py "$@"
python benchmarks/bench_analysis.py
if [[ " $* " == *" --large "* ]]; then
  python benchmarks/bench_large.py
fi
