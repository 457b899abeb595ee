"""Time every available backend of ``nufft_spectrum`` and measure its error against the exact (direct) sum.

Usage::

    python benchmarks/bench_spectrum.py [--repeats 3] [--output benchmarks/results/spectrum.json]

For each size (n points, K frequencies, c channels) it prints the best-of-``repeats`` wall time of every backend,
its relative error ``‖F − F_direct‖ / ‖F_direct‖`` over all k and channels, and the ratio of the direct time to
each fast backend's time; the same numbers go to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from fp_lightning.functional.spectrum import available_backends, nufft_spectrum

DEFAULT_SIZES = ((10_000, 1_000, 1), (100_000, 10_000, 1), (100_000, 10_000, 10))
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "spectrum.json"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_backend(x, v, K, backend, repeats):
    """Best wall time over ``repeats`` runs (after one warm-up run) and the last result."""
    result = nufft_spectrum(x, v, K, backend=backend)  # warm-up: imports, plans, caches
    _sync(x.device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = nufft_spectrum(x, v, K, backend=backend)
        _sync(x.device)
        best = min(best, time.perf_counter() - start)
    return best, result


def run(sizes, repeats, seed, device):
    rows = []
    for n, K, c in sizes:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, generator=g, dtype=torch.float64).to(device)
        v = torch.randn(n, c, generator=g, dtype=torch.float64).to(device)
        backends = [b for b in available_backends(device) if b != "direct"] + ["direct"]
        times, results = {}, {}
        for backend in reversed(backends):  # direct first: it is the reference
            times[backend], results[backend] = time_backend(x, v, K, backend, repeats)
        exact = results["direct"]
        for backend in backends:
            err = float(torch.linalg.vector_norm(results[backend] - exact) / torch.linalg.vector_norm(exact))
            rows.append(
                {
                    "n": n,
                    "K": K,
                    "c": c,
                    "backend": backend,
                    "device": str(device),
                    "time_s": times[backend],
                    "rel_error_vs_direct": err,
                    "speedup_direct_over_backend": times["direct"] / times[backend],
                }
            )
    return rows


def print_table(rows):
    header = f"{'n':>8} {'K':>7} {'c':>3} {'backend':>10} {'time [s]':>10} {'rel. error':>11} {'direct/this':>12}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['n']:>8} {r['K']:>7} {r['c']:>3} {r['backend']:>10} {r['time_s']:>10.4f} "
            f"{r['rel_error_vs_direct']:>11.2e} {r['speedup_direct_over_backend']:>12.1f}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device of the inputs, e.g. cpu or cuda:0")
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=None,
        metavar="N,K,C",
        help="sizes to run, e.g. 10000,1000,1 (default: the three sizes of the design note)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON file to write")
    args = parser.parse_args(argv)

    sizes = DEFAULT_SIZES if args.sizes is None else [tuple(int(s) for s in item.split(",")) for item in args.sizes]
    device = torch.device(args.device)
    rows = run(sizes, args.repeats, args.seed, device)
    print_table(rows)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "repeats": args.repeats,
    }
    try:
        import finufft

        meta["finufft"] = finufft.__version__
    except Exception:  # pragma: no cover
        pass
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    args.output.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
