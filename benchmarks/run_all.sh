#!/usr/bin/env bash
# All performance benchmarks, one after the other; each prints its table and writes JSON to benchmarks/results/.
# About 10 minutes on a 2-core CPU. Usage: bash benchmarks/run_all.sh [--large]   (--large: MNIST probe of 60,000)
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/bench_spectrum.py
python benchmarks/bench_filtering.py --n 5000 --n-deltas 20
python benchmarks/bench_monitor.py "$@"
