"""Benchmark: what the monitor at its defaults adds to a real training run, as a median of interleaved pairs.

The MNIST fully connected network (784-200-100-100-10, tanh, Adam 1e-3) trains on the 60,000 MNIST training images
(batch 100) for E epochs, once without and once with ``FrequencyPrincipleMonitor()`` at its defaults (probe 5,000,
history file and ``fp_report.png`` written to the run folder), the two runs back to back in one process, ``--pairs``
times, the order alternating (plain first in even pairs, monitored first in odd ones, so that an order effect shows
as a spread rather than a bias). Each pair gives a ratio monitored / plain; the median ratio is the figure: a pair
shares the machine's state, so other processes on shared cores move both of its runs alike.

Two logger settings (``--loggers``): ``none`` (``logger=False``: the panels go to PNG files at the end of the fit)
and ``tensorboard`` (a ``TensorBoardLogger``: the panels go to TensorBoard as images at every recording, the plain
run logs to TensorBoard too). For each monitored run the seconds spent inside each of the monitor's hooks are summed
(set-up and first recording in ``on_train_start``, later recordings, end of the fit), as are the seconds of the
recordings' logging step (scalars and images), and the images in the TensorBoard event file and the report files
are counted.

Usage: ``python benchmarks/bench_overhead.py [--data DIR] [--epochs 2 10] [--pairs 3] [--loggers none tensorboard]``;
writes ``benchmarks/results/overhead.json``. ``--one plain`` or ``--one monitored`` runs a single fit and exits, so
that whole processes can be timed from outside (``/usr/bin/time -v python benchmarks/bench_overhead.py --one
monitored --epochs 2 --loggers none``). Targets: at most 1.10× over 2 epochs and 1.05× over 10.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
import torch
from bench_monitor import DEFAULT_DATA, REPO, _dataset, _model, _timed_hooks


def _trainer(epochs: int, callbacks: list, root: Path, logger: str):
    import lightning.pytorch as L
    from lightning.pytorch.loggers import TensorBoardLogger

    log = TensorBoardLogger(root, name="tb") if logger == "tensorboard" else False
    return L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=log, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=False, default_root_dir=root,
                     accelerator="cpu", devices=1)


def _count_outputs(root: Path) -> dict:
    """Images in the TensorBoard event files and report/panel files written under ``root``."""
    counts = {"tensorboard_images": 0, "png_files": len(list(root.rglob("*.png")))}
    events = list(root.rglob("events.out.tfevents.*"))
    if events:
        from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

        for path in events:
            accumulator = EventAccumulator(str(path), size_guidance={IMAGES: 0})
            accumulator.Reload()
            counts["tensorboard_images"] += sum(len(accumulator.Images(tag)) for tag in accumulator.Tags()["images"])
    return counts


def one_run(x: torch.Tensor, y: torch.Tensor, epochs: int, root: Path, logger: str, monitored: bool) -> dict:
    """One seeded training run; with the monitor, also the seconds inside its hooks and what it wrote."""
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    shutil.rmtree(root, ignore_errors=True)
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(x, y), batch_size=100, shuffle=True)
    monitor = FrequencyPrincipleMonitor() if monitored else None
    spent = _timed_hooks(monitor) if monitor is not None else {}
    model = _model("mnist")
    start = time.perf_counter()
    _trainer(epochs, [monitor] if monitor is not None else [], root, logger).fit(model, loader)
    out: dict = {"seconds": time.perf_counter() - start}
    if monitor is not None:
        out["hooks"] = dict(spent)
        out["logging"] = sum(t.get("logging", 0.0) for t in monitor.timings)
        out["recordings"] = len(monitor.timings)
        out.update(_count_outputs(root))
    return out


def one_pair(x: torch.Tensor, y: torch.Tensor, epochs: int, root: Path, logger: str, plain_first: bool) -> dict:
    """A plain run and a monitored run of the same seeded training, back to back, in the given order."""
    out: dict = {"plain_first": plain_first}
    for monitored in ((False, True) if plain_first else (True, False)):
        run = one_run(x, y, epochs, root / ("monitored" if monitored else "plain"), logger, monitored)
        if monitored:
            out["monitored"] = run.pop("seconds")
            out.update(run)
        else:
            out["plain"] = run["seconds"]
    out["ratio"] = out["monitored"] / out["plain"]
    return out


def summarize(pairs: list[dict]) -> dict:
    """Medians over the pairs: the ratio, both runs, the seconds in each hook and in the recordings' logging."""
    hooks = {name: statistics.median(p["hooks"].get(name, 0.0) for p in pairs) for name in pairs[0]["hooks"]}
    return {"pairs": pairs, "median_ratio": statistics.median(p["ratio"] for p in pairs),
            "median_plain": statistics.median(p["plain"] for p in pairs),
            "median_monitored": statistics.median(p["monitored"] for p in pairs),
            "median_hooks": hooks, "median_logging": statistics.median(p["logging"] for p in pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--loggers", nargs="+", choices=["none", "tensorboard"], default=["none", "tensorboard"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "overhead.json")
    parser.add_argument("--one", choices=["plain", "monitored"],
                        help="run a single fit (the first --epochs and --loggers) and exit, for timing whole "
                             "processes from outside, e.g. /usr/bin/time -v")
    args = parser.parse_args()
    x, y = _dataset("mnist", args.data)
    root = REPO / "benchmarks" / "results" / "runs" / "overhead"
    if args.one is not None:
        run = one_run(x, y, args.epochs[0], root / f"one_{args.one}", args.loggers[0], args.one == "monitored")
        print(json.dumps(run))
        return
    results: dict = {"machine": platform.platform(), "threads": torch.get_num_threads(), "runs": {}}
    for logger in args.loggers:  # warm-up: imports, allocator, first Trainer, first figures
        one_pair(x[:2000], y[:2000], 1, root, logger, True)
    for logger in args.loggers:
        for epochs in args.epochs:
            pairs = [one_pair(x, y, epochs, root, logger, plain_first=i % 2 == 0) for i in range(args.pairs)]
            summary = summarize(pairs)
            results["runs"][f"{logger}/{epochs}"] = summary
            ratios = ", ".join(f"{p['ratio']:.3f}" for p in pairs)
            print(f"logger={logger}, {epochs} epoch(s), {args.pairs} pairs: median ratio {summary['median_ratio']:.3f} "
                  f"(pairs {ratios}); median plain "
                  f"{summary['median_plain']:.2f} s, monitored {summary['median_monitored']:.2f} s; median seconds "
                  "inside the hooks: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["median_hooks"].items())
                  + f"; logging {summary['median_logging']:.3f} s; TensorBoard images "
                  f"{pairs[0]['tensorboard_images']}, PNG files {pairs[0]['png_files']}", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))  # after each setting: a stopped run keeps its part
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
