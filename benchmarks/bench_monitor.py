"""Benchmark: the per-epoch cost of FrequencyPrincipleMonitor, next to the authors' way, in one process.

Three parts, all printed as tables and written to ``benchmarks/results/monitor.json``:

1. **Per-epoch split** for the MNIST fully connected network (784-200-100-100-10, tanh) and the CIFAR-10 CNN, at
   probe sizes 1k, 5k, 10k (and 60k for MNIST with ``--large``): the monitor's own timings (``monitor.timings``)
   of forward pass, projection + spectrum, filtering and logging, for the first recording (which fits the
   projection, δ and caches the distances) and the median of the later ones (the steady state).
2. **Baseline in the same run**: what the authors' scripts do each recording, on the same probe and outputs:
   numpy float64 PCA, a direct DFT (an n × K complex matrix), and per δ the dense n × n float64 kernel. Skipped
   above ``--baseline-max`` samples (10k: one 10k × 10k float64 matrix is 800 MB; the scripts keep several).
3. **Training overhead**: the MNIST FC network trained on the 60,000 training images (batch 100) for 1 and for 3
   epochs (``--overhead-epochs``), with and without the monitor at its defaults, interleaved twice: the wall-clock
   ratio of the fastest runs, and the seconds spent inside the monitor's hooks over the rest of the same run.
   A run of E epochs has E + 1 recordings and one set-up (probe sampling, projection, δ, the kernel cache), so
   the fixed cost weighs most on one epoch.

Usage: ``python benchmarks/bench_monitor.py [--data DIR] [--sizes 1000 5000 10000] [--large] [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


def _quiet_trainer(max_epochs: int, callbacks: list, root: Path, **kw):
    import lightning.pytorch as L

    return L.Trainer(max_epochs=max_epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, default_root_dir=root,
                     accelerator="cpu", **kw)


def _dataset(name: str, data_dir: Path):
    from fp_lightning.data import load_cifar10, load_mnist

    images, labels = (load_mnist if name == "mnist" else load_cifar10)(data_dir, split="train", download=False)
    x = images.float().div(255)
    return x.unsqueeze(1) if x.ndim == 3 else x, labels


def _model(name: str):
    from fp_lightning.models import FullyConnectedNet, SmallCNN

    if name == "mnist":
        return FullyConnectedNet(input_shape=(1, 28, 28), num_outputs=10, loss="cross_entropy", lr=1e-3)
    return SmallCNN(input_shape=(3, 32, 32), num_outputs=10, loss="cross_entropy", lr=1e-3)


def monitor_split(name: str, x: torch.Tensor, y: torch.Tensor, size: int, recordings: int, root: Path) -> dict:
    """Run ``recordings`` epochs of one training batch each; the monitor records before and after each."""
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    torch.manual_seed(0)
    monitor = FrequencyPrincipleMonitor(probe_inputs=x[:size], probe_targets=y[:size], log_images=False,
                                        history_file=None, strict=True)
    loader = DataLoader(TensorDataset(x[:1000], y[:1000]), batch_size=100)
    _quiet_trainer(recordings - 1, [monitor], root, limit_train_batches=1).fit(_model(name), loader)
    stages = ("forward", "spectrum", "filtering", "logging")
    first = {s: monitor.timings[0][s] for s in stages}
    steady = {s: statistics.median(t[s] for t in monitor.timings[1:]) for s in stages}
    return {"first": first, "steady": steady, "monitor": monitor}


def authors_baseline(x: np.ndarray, y: np.ndarray, h: np.ndarray, deltas: np.ndarray, n_freqs: int) -> dict:
    """One recording the authors' way: numpy PCA, direct DFT, one dense float64 kernel per δ."""
    times = {}
    start = time.perf_counter()
    flat = x.reshape(len(x), -1).astype(np.float64)
    _, vectors = np.linalg.eigh(np.cov(flat, rowvar=False))
    raw = flat @ vectors[:, -1]
    coords = (raw - raw.min()) / (raw.max() - raw.min())
    basis = np.exp(-2j * np.pi * np.outer(np.arange(n_freqs), coords))
    _ = np.abs(basis @ y - basis @ h) / np.abs(basis @ y)
    times["spectrum"] = time.perf_counter() - start
    start = time.perf_counter()
    sq = (flat**2).sum(1)
    dist = sq[:, None] + sq[None, :] - 2 * flat @ flat.T
    for delta in deltas:
        kernel = np.exp(-dist / (2 * delta))
        kernel /= kernel.sum(1, keepdims=True)
        y_low, h_low = kernel @ y, kernel @ h
        _ = np.linalg.norm(h_low - y_low) / np.linalg.norm(y_low)
        _ = np.linalg.norm((h - h_low) - (y - y_low)) / np.linalg.norm(y - y_low)
    times["filtering"] = time.perf_counter() - start
    return times


def _timed_hooks(monitor) -> dict:
    """Wrap every Lightning hook the monitor defines so that the seconds spent inside each are summed."""
    spent: dict[str, float] = {}
    for name in [n for n in type(monitor).__dict__ if n.startswith("on_")]:
        hook = getattr(monitor, name)

        def timed(*args, _hook=hook, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _hook(*args, **kwargs)
            finally:
                spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - start

        setattr(monitor, name, timed)
    return spent


def training_overhead(x: torch.Tensor, y: torch.Tensor, root: Path, epochs: int, repeats: int = 2) -> dict:
    """MNIST FC training (batch 100) with and without the default monitor, interleaved ``repeats`` times.

    Two measures: the wall-clock ratio of the fastest monitored run to the fastest plain run (what a user sees,
    but other processes on 2 shared cores move single runs by ±0.5 s), and the fewest seconds spent inside the
    monitor's hooks over the fastest plain run (the hooks' own time is far less noisy than whole runs).
    """
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    walls: dict[str, list[float]] = {"plain": [], "monitored": []}
    inside: list[float] = []
    for _ in range(repeats):
        for label in walls:
            torch.manual_seed(0)
            loader = DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True)
            callbacks, spent = [], {}
            if label == "monitored":
                monitor = FrequencyPrincipleMonitor(log_images=False, history_file=None)
                spent = _timed_hooks(monitor)
                callbacks = [monitor]
            start = time.perf_counter()
            _quiet_trainer(epochs, callbacks, root).fit(_model("mnist"), loader)
            walls[label].append(time.perf_counter() - start)
            if label == "monitored":
                inside.append(sum(spent.values()))
    best = {label: min(times) for label, times in walls.items()}
    hooks = min(inside)
    return {"epochs": epochs, "runs": walls, "plain": best["plain"], "monitored": best["monitored"],
            "overhead_wall": best["monitored"] / best["plain"] - 1, "monitor_hook_seconds": hooks,
            "overhead_hooks": hooks / best["plain"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--large", action="store_true", help="also MNIST at 60,000 probe samples")
    parser.add_argument("--recordings", type=int, default=4)
    parser.add_argument("--baseline-max", type=int, default=10000)
    parser.add_argument("--overhead-epochs", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--quick", action="store_true", help="sizes 1000 and 2000, no overhead run")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "monitor.json")
    args = parser.parse_args()
    sizes = [1000, 2000] if args.quick else args.sizes
    root = REPO / "benchmarks" / "results" / "runs"
    rows, results = [], {"machine": platform.platform(), "threads": torch.get_num_threads(), "split": []}
    for name in ("mnist", "cifar10"):
        x, y = _dataset(name, args.data)
        name_sizes = sizes + ([60000] if args.large and name == "mnist" else [])
        for size in [s for s in name_sizes if s <= len(x)]:
            run = monitor_split(name, x, y, size, args.recordings, root)
            monitor = run.pop("monitor")
            entry = {"dataset": name, "probe": size, **run}
            if size <= args.baseline_max:
                yy = np.eye(10)[y[:size].numpy()]
                logits = np.random.default_rng(0).normal(size=yy.shape)  # timing does not depend on the values
                h = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
                deltas = np.asarray(monitor.history.deltas)
                entry["baseline"] = authors_baseline(x[:size].numpy(), yy, h, deltas, 64)
            results["split"].append(entry)
            rows.append(entry)
            steady = entry["steady"]
            base = entry.get("baseline", {})
            analysis = steady["spectrum"] + steady["filtering"]
            base_total = base.get("spectrum", float("nan")) + base.get("filtering", float("nan"))
            print(f"{name:8s} probe {size:6d} | forward {steady['forward']:.3f}s spectrum {steady['spectrum']:.3f}s "
                  f"filtering {steady['filtering']:.3f}s logging {steady['logging']:.3f}s | first recording "
                  f"{sum(entry['first'].values()):.2f}s | authors' way {base_total:.2f}s "
                  f"(×{base_total / analysis:.1f}) | analysis/forward {analysis / steady['forward']:.2f}", flush=True)
    if not args.quick:
        x, y = _dataset("mnist", args.data)
        results["overhead"] = {}
        for epochs in args.overhead_epochs:
            o = results["overhead"][str(epochs)] = training_overhead(x, y, root, epochs)
            print(f"MNIST FC, 60k images, batch 100, {epochs} epoch(s): fastest plain {o['plain']:.2f}s, monitored "
                  f"{o['monitored']:.2f}s (wall {100 * o['overhead_wall']:+.1f}%); inside the monitor's hooks "
                  f"{o['monitor_hook_seconds']:.2f}s = {100 * o['overhead_hooks']:.1f}% of the plain run",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
