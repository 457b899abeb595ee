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
import statistics
import time
from pathlib import Path

import torch

from fp_lightning.functional.spectrum import available_backends, nufft_spectrum

DEFAULT_SIZES = ((10_000, 1_000, 1), (100_000, 10_000, 1), (100_000, 10_000, 10))
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "spectrum.json"


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so that a wall clock measures it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(action, device, repeats: int, warmup: int = 1):
    """Wall times of ``repeats`` calls of ``action()`` after ``warmup`` untimed ones, the device synchronized around
    each: ``({"median_s", "runs_s", "warmup"}, the last call's result)``."""
    for _ in range(warmup):
        action()
    runs, result = [], None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = action()
        synchronize(device)
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "runs_s": runs, "warmup": warmup}, result


def time_backend(x, v, K, backend, repeats):
    """Best wall time over ``repeats`` runs (after one warm-up run: imports, plans, caches) and the last result."""
    timing, result = timed(lambda: nufft_spectrum(x, v, K, backend=backend), x.device, repeats)
    return min(timing["runs_s"]), result


def against_oracle(n: int, n_freqs: int, plans, repeats: int, seed: int = 0) -> dict:
    """Each ``(backend, device)`` of ``plans`` on n random points and values against the float64 direct sum on the
    CPU: median time of ``repeats`` calls and relative error; ``cufinufft_vs_direct`` when both ran. A backend that
    raises is recorded with its error (``errors`` lists them) and the others still run."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    start = time.perf_counter()
    oracle = nufft_spectrum(x, v, n_freqs, backend="direct")
    result: dict = {"n": n, "n_freqs": n_freqs, "channels": 1, "oracle_cpu_direct_s": time.perf_counter() - start,
                    "backends": {}, "errors": []}
    spectra = {}
    for backend, where in plans:
        xd, vd = x.to(where), v.to(where)
        label = f"{backend} ({where})"
        try:
            timing, spectrum = timed(lambda b=backend, a=xd, c=vd: nufft_spectrum(a, c, n_freqs, backend=b), where,
                                     repeats)
            spectra[backend] = spectrum.cpu()
            rel = float((spectra[backend] - oracle).norm() / oracle.norm())
            result["backends"][label] = {**timing, "rel_error": rel}
        except Exception as error:
            result["backends"][label] = {"error": f"{type(error).__name__}: {error}"}
            result["errors"].append(f"{label}: {type(error).__name__}: {error}")
    if "cufinufft" in spectra and "direct" in spectra:
        direct = spectra["direct"]
        result["cufinufft_vs_direct"] = float((spectra["cufinufft"] - direct).norm() / direct.norm())
        if result["cufinufft_vs_direct"] > 1e-6:
            result["errors"].append(f"cufinufft differs from direct by {result['cufinufft_vs_direct']:.2e} > 1e-6")
    return result


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
