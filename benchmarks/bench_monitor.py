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
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"


STAGES = ("forward", "spectrum", "filtering", "logging")  # of one recording, in ``monitor.timings``


def _quiet_trainer(max_epochs: int, callbacks: list, root: Path, device: str = "cpu", **kw):
    import lightning.pytorch as L

    return L.Trainer(max_epochs=max_epochs, callbacks=callbacks, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, default_root_dir=root,
                     accelerator="gpu" if device == "cuda" else "cpu", devices=1, **kw)


def find_data_dir() -> Path | None:
    """``$FP_DATA_DIR``, else ``../shared/data`` beside the checkout, else ``benchmarks/data``, when it exists."""
    for candidate in (os.environ.get("FP_DATA_DIR"), DEFAULT_DATA, REPO / "benchmarks" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def images(name: str, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``n`` images in [0, 1], labels and what they are: real CIFAR-10 / MNIST training images when enough exist
    (:func:`find_data_dir`), else random ones of the same shape (timings do not depend on the pixel values)."""
    root = find_data_dir()
    if root is not None:
        from fp_lightning.data import load_cifar10, load_mnist

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # CIFAR: missing data_batch_2..5 are expected in a small copy
                x, y = (load_cifar10 if name == "cifar10" else load_mnist)(root, split="train", download=False)
            if len(x) >= n:
                x = x[:n].float().div_(255)
                return (x if x.ndim == 4 else x.unsqueeze(1)), y[:n].long(), f"real {name} ({root})"
        except (FileNotFoundError, ValueError):
            pass
    g = torch.Generator().manual_seed(seed)
    shape = (3, 32, 32) if name == "cifar10" else (1, 28, 28)
    return torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g), f"random {name}-shaped"


def _dataset(name: str, data_dir: Path):
    from fp_lightning.data import load_cifar10, load_mnist

    images, labels = (load_mnist if name == "mnist" else load_cifar10)(data_dir, split="train", download=False)
    x = images.float().div(255)
    return x.unsqueeze(1) if x.ndim == 3 else x, labels


def _model(name: str, **kwargs):
    from fp_lightning.models import FullyConnectedNet, SmallCNN

    if name == "mnist":
        return FullyConnectedNet(input_shape=(1, 28, 28), num_outputs=10, loss="cross_entropy", lr=1e-3, **kwargs)
    return SmallCNN(input_shape=(3, 32, 32), num_outputs=10, loss="cross_entropy", lr=1e-3, **kwargs)


def monitor_split(name: str, x: torch.Tensor, y: torch.Tensor, size: int, recordings: int, root: Path,
                  device: str = "cpu", batch_size: int = 100, model_kwargs: dict | None = None) -> dict:
    """Run ``recordings`` epochs of one training batch each; the monitor records before and after each."""
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    torch.manual_seed(0)
    monitor = FrequencyPrincipleMonitor(log_images=False, history_file=None, strict=True,
                                        probe_dataloader=(x[:size], y[:size]))
    loader = DataLoader(TensorDataset(x[:1000], y[:1000]), batch_size=batch_size)
    trainer = _quiet_trainer(recordings - 1, [monitor], root, device=device, limit_train_batches=1)
    trainer.fit(_model(name, **(model_kwargs or {})), loader)
    first = {s: monitor.timings[0][s] for s in STAGES}
    steady = {s: statistics.median(t[s] for t in monitor.timings[1:]) for s in STAGES}
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


def one_fit(x: torch.Tensor, y: torch.Tensor, root: Path, epochs: int, monitor=None, *, device: str = "cpu",
            model: str = "mnist", batch_size: int = 100, seeded_loader: bool = False, model_kwargs: dict | None = None,
            **trainer_kw) -> dict:
    """One seeded training run (with ``monitor`` attached, if any): wall time of the fit (device synchronized), the
    seconds inside the monitor's hooks and its ``timings``."""
    from bench_spectrum import synchronize  # benchmarks/ is first on sys.path when a script of it runs
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0) if seeded_loader else None
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=generator)
    spent = _timed_hooks(monitor) if monitor is not None else {}
    trainer = _quiet_trainer(epochs, [monitor] if monitor is not None else [], root, device=device, **trainer_kw)
    network = _model(model, **(model_kwargs or {}))
    synchronize(device)
    start = time.perf_counter()
    trainer.fit(network, loader)
    synchronize(device)
    return {"wall": time.perf_counter() - start, "hooks": sum(spent.values()),
            "timings": list(monitor.timings) if monitor is not None else []}


def training_overhead(x: torch.Tensor, y: torch.Tensor, root: Path, epochs: int, repeats: int = 2,
                      monitor_kwargs: dict | None = None, **fit_kw) -> dict:
    """Training (MNIST FC, batch 100 unless ``fit_kw`` says otherwise) with and without the monitor, interleaved
    ``repeats`` times.

    Two measures: the wall-clock ratio of the fastest monitored run to the fastest plain run (what a user sees,
    but other processes on 2 shared cores move single runs by ±0.5 s), and the fewest seconds spent inside the
    monitor's hooks over the fastest plain run (the hooks' own time is far less noisy than whole runs).
    ``monitor_kwargs``: the monitor's arguments (default: no images, no history file); ``timings``: the last
    monitored run's recordings.
    """
    from fp_lightning import FrequencyPrincipleMonitor

    kwargs = {"log_images": False, "history_file": None} if monitor_kwargs is None else monitor_kwargs
    walls: dict[str, list[float]] = {"plain": [], "monitored": []}
    inside: list[float] = []
    timings: list = []
    for _ in range(repeats):
        for label in walls:
            monitor = FrequencyPrincipleMonitor(**kwargs) if label == "monitored" else None
            run = one_fit(x, y, root, epochs, monitor, **fit_kw)
            walls[label].append(run["wall"])
            if label == "monitored":
                inside.append(run["hooks"])
                timings = run["timings"]
    best = {label: min(times) for label, times in walls.items()}
    hooks = min(inside)
    return {"epochs": epochs, "runs": walls, "plain": best["plain"], "monitored": best["monitored"],
            "overhead_wall": best["monitored"] / best["plain"] - 1, "monitor_hook_seconds": hooks,
            "overhead_hooks": hooks / best["plain"], "hook_runs": inside, "timings": timings}


#: profiler event names counted as host-device copies, synchronizations and dtype/device conversions
COPY_EVENTS = ("Memcpy HtoD", "Memcpy DtoH", "cudaMemcpy", "cudaMemcpyAsync")
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
TO_EVENTS = ("aten::to", "aten::_to_copy", "aten::copy_", "aten::item", "aten::_local_scalar_dense")


def profile_recording(x: torch.Tensor, y: torch.Tensor, root: Path, device: str = "cpu",
                      model_kwargs: dict | None = None) -> dict | None:
    """``torch.profiler`` over the second recording (every cache warm) of a CIFAR CNN run with ``x`` as the probe:
    counts of host-device copies, synchronizations and conversions (``None`` when that recording did not run)."""
    from bench_spectrum import synchronize
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    monitor = FrequencyPrincipleMonitor(log_images=False, history_file=None, strict=True, probe_dataloader=(x, y))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    hook = monitor.on_train_epoch_end
    captured: list = []

    def profiled(trainer, pl_module):
        if trainer.current_epoch == 1:
            with profile(activities=activities) as prof:
                hook(trainer, pl_module)
                synchronize(device)
            captured.append(prof)
        else:
            hook(trainer, pl_module)

    monitor.on_train_epoch_end = profiled
    loader = DataLoader(TensorDataset(x[:512], y[:512]), batch_size=128)
    torch.manual_seed(0)
    trainer = _quiet_trainer(2, [monitor], root, device=device, limit_train_batches=2)
    trainer.fit(_model("cifar10", **(model_kwargs or {})), loader)
    if not captured:
        return None
    counts: dict[str, int] = {}
    for event in captured[0].key_averages():
        if any(event.key.startswith(name) for name in COPY_EVENTS + SYNC_EVENTS + TO_EVENTS):
            counts[event.key] = counts.get(event.key, 0) + int(event.count)

    def total(names: tuple[str, ...]) -> int:
        return sum(c for key, c in counts.items() if any(key.startswith(name) for name in names))

    copies = total(("Memcpy HtoD", "Memcpy DtoH"))
    return {"counts": counts,
            "totals": {"host_device_copies": copies if device == "cuda" else 0, "copy_calls": total(("cudaMemcpy",)),
                       "synchronizations": total(SYNC_EVENTS), "aten_to": total(("aten::to",)),
                       "item_calls": total(("aten::item",))}}


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
            o = training_overhead(x, y, root, epochs)
            o.pop("timings")
            results["overhead"][str(epochs)] = o
            print(f"MNIST FC, 60k images, batch 100, {epochs} epoch(s): fastest plain {o['plain']:.2f}s, monitored "
                  f"{o['monitored']:.2f}s (wall {100 * o['overhead_wall']:+.1f}%); inside the monitor's hooks "
                  f"{o['monitor_hook_seconds']:.2f}s = {100 * o['overhead_hooks']:.1f}% of the plain run",
                  flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
