"""Benchmark: what the monitor at its defaults adds to a real training run, as a median of interleaved pairs.

The MNIST fully connected network (784-200-100-100-10, tanh, Adam 1e-3) trains on the 60,000 MNIST training images
(batch 100) for E epochs, once without and once with ``FrequencyPrincipleMonitor()`` at its defaults (probe 5,000,
history file, PNG panels and ``fp_report.png`` written to the run folder, no logger), the two runs back to back in
one process, ``--pairs`` times. Each pair gives a ratio monitored / plain; the median ratio is the figure (a pair
shares the machine's state, so other processes on shared cores move both of its runs alike). The seconds spent
inside each of the monitor's hooks are summed too: set-up (``on_train_start``: probe, projection, δ, kernel cache
and the first recording), the per-epoch recordings, and the end of the fit (panels and report).

Usage: ``python benchmarks/bench_overhead.py [--data DIR] [--epochs 2 10] [--pairs 5]``; writes
``benchmarks/results/overhead.json``. Targets: at most 1.10× over 2 epochs and 1.05× over 10.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from bench_monitor import DEFAULT_DATA, REPO, _dataset, _model, _quiet_trainer, _timed_hooks


def one_pair(x: torch.Tensor, y: torch.Tensor, epochs: int, root: Path) -> dict:
    """A plain run and a monitored run of the same seeded training, back to back."""
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    out: dict = {}
    for label in ("plain", "monitored"):
        torch.manual_seed(0)
        loader = DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True)
        callbacks, spent = [], {}
        if label == "monitored":
            monitor = FrequencyPrincipleMonitor()
            spent = _timed_hooks(monitor)
            callbacks = [monitor]
        model = _model("mnist")
        start = time.perf_counter()
        _quiet_trainer(epochs, callbacks, root / label).fit(model, loader)
        out[label] = time.perf_counter() - start
        if label == "monitored":
            out["hooks"] = dict(spent)
    out["ratio"] = out["monitored"] / out["plain"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "overhead.json")
    args = parser.parse_args()
    x, y = _dataset("mnist", args.data)
    root = REPO / "benchmarks" / "results" / "runs" / "overhead"
    results: dict = {"machine": platform.platform(), "threads": torch.get_num_threads(), "runs": {}}
    one_pair(x[:2000], y[:2000], 1, root)  # warm-up: imports, allocator, first Trainer
    for epochs in args.epochs:
        pairs = [one_pair(x, y, epochs, root) for _ in range(args.pairs)]
        ratios = [p["ratio"] for p in pairs]
        hooks = {name: statistics.median(p["hooks"].get(name, 0.0) for p in pairs) for name in pairs[0]["hooks"]}
        results["runs"][str(epochs)] = {"pairs": pairs, "median_ratio": statistics.median(ratios),
                                        "median_plain": statistics.median(p["plain"] for p in pairs),
                                        "median_hooks": hooks}
        print(f"{epochs} epoch(s), {args.pairs} pairs: median ratio {statistics.median(ratios):.3f} "
              f"(pairs {', '.join(f'{r:.3f}' for r in ratios)}); median plain run "
              f"{statistics.median(p['plain'] for p in pairs):.2f} s; median seconds inside the hooks: "
              + ", ".join(f"{name} {value:.3f}" for name, value in hooks.items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
