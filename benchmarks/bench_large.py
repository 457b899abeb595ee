"""Benchmark: the analysis at n = 60,000 (all MNIST training images), where a dense n × n matrix cannot be built.

Runs, on the 60,000 MNIST training images scaled to [0, 1] with one-hot labels and a fixed softmax "output":
``principal_projection``, ``nufft_spectrum`` of targets and outputs (K = 64), ``default_deltas`` (3 δ, the monitor's
default) and one ``low_high_errors`` call at its defaults (float32 tiles, nothing cached), then a
``GaussianFilterBank`` with a 1 GiB ``memory_budget`` for two "epochs". Prints wall times and the process's peak
resident memory (``VmHWM``, reset before each step via /proc/self/clear_refs, minus the resident size before it).

The baseline of the other benchmarks (a dense float64 n × n kernel) is not run: one such matrix is 28.8 GB, more
than this machine's 24 GB; its size is printed instead. The point of this benchmark is that memory is bounded by
the arguments (``chunk_size``, ``memory_budget``), not by n.

Usage: ``python benchmarks/bench_large.py [--n 60000] [--data DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fp_lightning.data import load_mnist  # noqa: E402
from fp_lightning.functional import (  # noqa: E402
    GaussianFilterBank,
    default_deltas,
    low_high_errors,
    nufft_spectrum,
    principal_projection,
)

DEFAULT_DATA = ROOT.parent / "shared" / "data"


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(key)


def step(name: str, fn, results: dict):
    """Run ``fn()``; record its wall time and the peak resident memory above the resident size before it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_mib("VmRSS")
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    results[name] = {"seconds": seconds, "peak_above_start_mib": _status_mib("VmHWM") - before}
    print(f"{name:<44}{seconds:>9.2f} s{results[name]['peak_above_start_mib']:>10.0f} MiB", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "large.json")
    args = parser.parse_args()
    images, labels = load_mnist(args.data, split="train", download=False)
    x = images[: args.n].float().div(255).reshape(args.n, -1)
    y = torch.nn.functional.one_hot(labels[: args.n].long(), 10).double()
    h = torch.softmax(torch.randn(args.n, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64), 1)
    results: dict = {}
    print(f"n = {args.n} MNIST training images (d = {x.shape[1]}), torch threads = {torch.get_num_threads()}; "
          f"inputs {x.numel() * 4 / 2**20:.0f} MiB (float32); resident before: {_status_mib('VmRSS'):.0f} MiB")
    print(f"{'step':<44}{'time':>11}{'peak':>14}")
    proj = step("principal_projection", lambda: principal_projection(x), results)
    coords = proj.coords[:, 0]
    step("nufft_spectrum (y and h, K = 64)", lambda: nufft_spectrum(coords, torch.cat([y, h], 1), 64), results)
    deltas = step("default_deltas (3)", lambda: default_deltas(x, 3), results)
    step("low_high_errors, one call", lambda: low_high_errors(x, y, h, deltas), results)
    bank = step("GaussianFilterBank (1 GiB budget)", lambda: GaussianFilterBank(x, deltas), results)
    step("  first errors() (fills the cache if it fits)", lambda: bank.errors(y, h), results)
    step("  next epoch errors()", lambda: bank.errors(y, h.roll(1, 1)), results)
    dense_gb = args.n * args.n * 8 / 1e9
    print(f"bank caches: kernels={bank.caches_kernels} distances={bank.caches_distances}, tile edge "
          f"{bank.chunk_size}; one dense float64 n × n matrix would take {dense_gb:.1f} GB; "
          f"process peak resident memory {_status_mib('VmHWM'):.0f} MiB")
    summary = {"n": args.n, "d": int(x.shape[1]), "deltas": deltas.tolist(), "steps": results,
               "dense_matrix_gb": dense_gb, "chunk_size": bank.chunk_size, "platform": platform.platform(),
               "torch": torch.__version__, "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
