"""Early stopping without validation data: stopping rules compared on recorded test curves (1-D task, MNIST, CIFAR).

For every task and seed the script trains twice:

- run **A** on all the training data, with a ``FrequencyPrincipleMonitor`` and a ``FrequencyEarlyStopping`` in
  ``dry_run`` mode attached, recording after every epoch the clean test loss (and accuracy), the monitor's logged
  ``fp/...`` values as ``trainer.callback_metrics`` holds them when the stopper reads them, and the network's raw
  outputs on the whole training set (plus its penultimate features at ``FEATURE_EPOCHS``) into an ``.npz`` beside
  the JSON, so the denoised score can be recomputed for any δ, smoothing space, soft/hard labels and loss;
- run **B** on 90% of the training data (the same noisy labels), recording the loss on the held-out 10% (the
  validation loss) and the test loss: what a user of ``EarlyStopping(monitor="val_loss")`` gets.

Then every stopping rule is evaluated on the recorded curves:

- ``dn_stop``: ``EarlyStopping(monitor="fp/denoised_loss", mode="min")`` semantics on run A's denoised score
  (``DENOISED`` settings; patience 10% of the budget, at least 2), the weights of the stopping epoch;
- ``dn_best``: the same stop, restoring the best-scored epoch (``ModelCheckpoint`` on the score);
- ``both_best``: ``FrequencyEarlyStopping``'s criteria (a)-(c) and that stop together, restoring the best-scored
  epoch up to the first stop;
- ``freq``: ``FrequencyEarlyStopping`` with its defaults (or ``--fes key=value`` overrides), replayed through
  ``FrequencyEarlyStopping.evaluate`` on run A's logged values (the live dry run's decision is recorded as a check);
- ``lw``: Label Wave (Yuan, Feng, Liu, "Early Stopping Against Label Noise Without Validation Data", ICLR 2025):
  the share of the monitor's probe samples (its own draw) whose predicted class changed since the previous epoch,
  its moving average over ``RECOMMENDED["label_wave_window"]`` epochs, the weights of the last epoch of its first
  minimal window (``FrequencyEarlyStopping(label_wave_window=...)`` replayed on the recorded outputs); ``lw_all``: the
  same on the whole training set (the paper's count); classifiers only;
- ``default``: ``FrequencyEarlyStopping.recommended()`` replayed on the values the monitor logged in run A
  (``fp/prediction_changes`` and ``fp/denoised_agreement`` recomputed on the same probe for runs recorded before
  the monitor logged them): the denoised minimum where the denoised labels agree with the labels, Label Wave
  otherwise, with the chosen epoch's weights;
- ``last``: no stopping, run A's last epoch;
- ``val``: ``EarlyStopping`` semantics on run B's validation loss, patience = 10% of the epoch budget (at least 2),
  min_delta 0; the weights of the stopping epoch (Lightning's ``EarlyStopping`` does not restore weights);
- ``val_best``: the same stop, restoring the best validation epoch (``EarlyStopping`` + ``ModelCheckpoint``);
- ``val_min``: run B's lowest validation loss over the whole budget, restored (no stop: the most favourable
  patience for the validation baseline);
- ``oracle``: run A's best test-loss epoch (the reference of the ratios).

Seeds 0 and 1 of every task chose the settings ("tuning"); the others are "held-out".

Outputs: ``benchmarks/results/early_stopping.json`` (settings, recorded curves, per-rule results, summary; about
2 MB, not kept in git), its summary ``benchmarks/results/early_stopping_summary.json`` (everything but the recorded
curves, kept in git), ``docs/early_stopping.png`` (test curves with the stopping epochs) and a table on stdout.
``--replay FILE[,FILE]`` re-evaluates the rules on saved JSON files without training (with the ``.npz`` files
present it recomputes the denoised score for the current ``DENOISED`` settings); ``--tune-denoised OUT.json`` tries
every ``DENOISED_GRID`` setting on them, prints a ranking on the tuning seeds with the held-out numbers and writes
the rows to OUT.json (about 2 MB, not kept in git) and the tables of docs/early_stopping.md to OUT_summary.md.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python examples/experiments/early_stopping.py   # full (hours on 2 shared cores)
    nice -n 10 python examples/experiments/early_stopping.py --quick   # a few minutes: fig6 and MNIST-20%, 1 seed
    python examples/experiments/early_stopping.py --replay benchmarks/results/early_stopping.json --markdown
    python examples/experiments/early_stopping.py --replay benchmarks/results/early_stopping.json \
        --tune-denoised benchmarks/results/early_stopping_denoised_grid.json        # needs the .npz files
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import lightning.pytorch as L  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

from fp_lightning.callbacks.early_stopping import RECOMMENDED, FrequencyEarlyStopping  # noqa: E402
from fp_lightning.callbacks.monitor import FrequencyPrincipleMonitor  # noqa: E402

DATA_DIR = os.environ.get("FP_DATA_DIR", str(REPO.parent / "shared" / "data"))

# Task settings. lr and budgets are raised / cut from the paper's to fit 2 shared CPU cores (see README notes in the
# JSON): fig6 uses the paper's network, init and full-batch Adam but lr 1e-3 instead of 2e-5.
TASKS: dict[str, dict[str, Any]] = {
    "fig6": {"kind": "fig6", "lr": 1e-3, "epochs": 400, "seeds": [0, 1, 2, 3, 4]},
    "mnist-20": {"kind": "mnist", "noise": 0.2, "n": 3000, "lr": 1e-3, "batch": 100, "epochs": 40,
                 "seeds": [0, 1, 2, 3, 4]},
    "mnist-40": {"kind": "mnist", "noise": 0.4, "n": 3000, "lr": 1e-3, "batch": 100, "epochs": 40,
                 "seeds": [0, 1, 2, 3, 4]},
    "cifar-20": {"kind": "cifar", "noise": 0.2, "n": 2000, "lr": 2e-3, "batch": 128, "epochs": 35,
                 "seeds": [0, 1, 2, 3, 4], "n_test": 2000},
    "cifar-40": {"kind": "cifar", "noise": 0.4, "n": 2000, "lr": 2e-3, "batch": 128, "epochs": 35,
                 "seeds": [0, 1, 2, 3, 4], "n_test": 2000},
    # the whole of data_batch_1 (10,000 images)
    "cifar10k-20": {"kind": "cifar", "noise": 0.2, "n": 10000, "lr": 2e-3, "batch": 128, "epochs": 20,
                    "seeds": [0, 1, 2, 3, 4], "n_test": 2000},
    "cifar10k-40": {"kind": "cifar", "noise": 0.4, "n": 10000, "lr": 2e-3, "batch": 128, "epochs": 20,
                    "seeds": [0, 1, 2, 3, 4], "n_test": 2000},
}
QUICK: dict[str, dict[str, Any]] = {
    "fig6": {**TASKS["fig6"], "epochs": 250, "seeds": [1]},
    "mnist-20": {**TASKS["mnist-20"], "n": 2000, "epochs": 20, "seeds": [1]},
}
#: Seeds whose runs chose the defaults ("tuning"); every other seed is "held-out".
TUNING_SEEDS = (0, 1)
#: Epochs at which run A records the penultimate features of the whole training set (feature-space smoothing);
#: every epoch with the environment variable FP_FEATURES_EVERY_EPOCH=1.
FEATURE_EPOCHS = (0, 1, 2, 3, 5, 8, 12, 20, 50, 100, 200)
N_TEST_IMAGES = 4000  # clean test images evaluated after every epoch (a fixed random subset of the other split)
# (CIFAR: 2000, "n_test" in its settings, to keep the CNN's per-epoch evaluation cheap)
MONITOR_KW = {"probe_size": 2000, "log_images": False, "history_file": None}
RULES = ("dn_stop", "dn_best", "both_best", "freq", "lw", "lw_all", "default", "last", "val", "val_best", "val_min",
         "oracle")
#: Rules that exist for classifiers only (Label Wave needs predicted classes): absent for the 1-D regression.
CLASSIFIER_RULES = ("lw", "lw_all")
#: Label Wave's moving-average windows compared on the tuning seeds (the recommended rule uses RECOMMENDED's).
LW_WINDOWS = (1, 3, 5, 7)
#: The denoised score's settings (see docs/early_stopping.md for how they were chosen on the tuning seeds): where to
#: smooth ("input", or "features@e": the penultimate features of the model after epoch e, frozen), δ / m, soft or
#: hard denoised labels, and the patience of the stop on it (EarlyStopping(mode="min") semantics): an int is a
#: number of checks, a float < 1 a fraction of the epoch budget (at least 2), as for the validation baseline.
DENOISED: dict[str, Any] = {"space": "input", "delta_fraction": 0.001, "hard": False, "patience": 0.1}


# ---------------------------------------------------------------------------------------------- data and models
def _task_data(task: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Training (noisy) and clean test tensors of one task and seed."""
    if task["kind"] == "fig6":
        from fp_lightning.data import Staircase1DDataModule

        dm = Staircase1DDataModule(preset="fig6", seed=seed)  # noise sd 0.1 before rounding, train and test
        return {"x": dm.x_train, "y": dm.y_train, "x_test": dm.x_test, "y_test": dm.y_test}
    from fp_lightning.data import CIFAR10DataModule, MNISTDataModule

    cls = MNISTDataModule if task["kind"] == "mnist" else CIFAR10DataModule
    dm = cls(data_dir=DATA_DIR, train_split="train", subset_size=task["n"], label_noise=task["noise"], seed=seed,
             download=False)
    dm.setup("fit")
    dm.setup("test")
    x, y = dm.train_dataset.tensors
    x_test, y_test = dm.test_dataset.tensors
    n_test = task.get("n_test", N_TEST_IMAGES)
    pick = torch.randperm(len(x_test), generator=torch.Generator().manual_seed(1000 + seed))[:n_test]
    return {"x": x, "y": y, "x_test": x_test[pick], "y_test": y_test[pick], "y_clean": dm.clean_train_labels}


def _input_digest(x: torch.Tensor) -> str:
    """SHA-1 of the training inputs: the replay reloads them from the data directory and checks this."""
    return hashlib.sha1(np.ascontiguousarray(x.numpy())).hexdigest()


def _save_probe(path: Path, run: dict[str, Any], data: dict[str, torch.Tensor]) -> None:
    """Move run A's probe outputs and features out of the JSON record into ``path`` (.npz, compressed)."""
    arrays: dict[str, np.ndarray] = {"outputs": run.pop("probe_outputs"), "targets": data["y"].numpy(),
                                     "input_sha1": np.array(_input_digest(data["x"]))}
    if data.get("y_clean") is not None:
        arrays["clean_targets"] = data["y_clean"].numpy()
    for epoch, feats in run.pop("probe_features").items():
        arrays[f"features_epoch_{epoch}"] = feats
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def _model(task: dict[str, Any], seed: int) -> L.LightningModule:
    from fp_lightning.models import FullyConnectedNet, SmallCNN, TanhMLP1D

    if task["kind"] == "fig6":  # the paper's 1-200-200-200-100-1 tanh net, N(0, 0.1²) weights and biases, MSE
        return TanhMLP1D(lr=task["lr"], init_seed=seed)
    if task["kind"] == "mnist":  # the paper's 200-100-100 tanh FC net; cross-entropy, PyTorch's default init
        return FullyConnectedNet(lr=task["lr"], loss="cross_entropy", init_std=None, init_seed=seed)
    return SmallCNN(input_shape=(3, 32, 32), lr=task["lr"], loss="cross_entropy", init_std=None, init_seed=seed)


def _last_linear(module: torch.nn.Module) -> torch.nn.Module:
    """The network's output layer (its last ``nn.Linear``): its input is the penultimate feature vector."""
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1]


class _Recorder(Callback):
    """After every epoch (and before training): loss / accuracy on the given sets, and the fp/ callback metrics.

    With ``probe=(x, y)`` (run A: the whole noisy training set) it also keeps the network's raw outputs on it every
    epoch and its penultimate features at ``FEATURE_EPOCHS``, so that the denoised score can be recomputed later
    for any δ, smoothing space and loss without retraining.
    """

    def __init__(self, sets: dict[str, tuple[torch.Tensor, torch.Tensor]], classify: bool, fp: bool,
                 probe: torch.Tensor | None = None) -> None:
        self.sets, self.classify, self.fp, self.probe = sets, classify, fp, probe
        self.curves: dict[str, list[float]] = {"epoch": []}
        self.fp_metrics: list[dict[str, float]] = []
        self.probe_outputs: list[np.ndarray] = []
        self.probe_features: dict[int, np.ndarray] = {}

    def _probe_pass(self, module: Any, epoch: int) -> None:
        assert self.probe is not None
        captured: list[torch.Tensor] = []
        hook = _last_linear(module).register_forward_hook(lambda m, args, out: captured.append(args[0].detach()))
        try:
            out = torch.cat([module(self.probe[i:i + 2000]) for i in range(0, len(self.probe), 2000)])
        finally:
            hook.remove()
        self.probe_outputs.append(out.float().numpy())
        if epoch in FEATURE_EPOCHS or os.environ.get("FP_FEATURES_EVERY_EPOCH") == "1":
            self.probe_features[epoch] = torch.cat(captured).flatten(1).to(torch.float16).numpy()

    def _record(self, trainer: Any, module: Any, epoch: int) -> None:
        self.curves["epoch"].append(epoch)
        training = module.training
        module.eval()
        with torch.no_grad():
            for name, (x, y) in self.sets.items():
                out = torch.cat([module(x[i:i + 2000]) for i in range(0, len(x), 2000)])
                if self.classify:
                    self.curves.setdefault(f"{name}_loss", []).append(F.cross_entropy(out, y).item())
                    self.curves.setdefault(f"{name}_acc", []).append((out.argmax(1) == y).float().mean().item())
                else:
                    self.curves.setdefault(f"{name}_loss", []).append(F.mse_loss(out, y).item())
            if self.probe is not None:
                self._probe_pass(module, epoch)
        module.train(training)
        if self.fp:
            self.fp_metrics.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("fp/")})

    def on_train_start(self, trainer: Any, module: Any) -> None:
        self._record(trainer, module, 0)

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        self._record(trainer, module, trainer.current_epoch + 1)


def _train(task: dict[str, Any], seed: int, data: dict[str, torch.Tensor], with_val: bool) -> dict[str, Any]:
    L.seed_everything(seed, verbose=False)
    x, y = data["x"], data["y"]
    sets = {"test": (data["x_test"], data["y_test"])}
    if with_val:  # hold out 10% of the (noisy) training data
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(2000 + seed))
        n_val = round(0.1 * len(x))
        val, keep = perm[:n_val].sort().values, perm[n_val:].sort().values
        sets["val"] = (x[val], y[val])
        x, y = x[keep], y[keep]
    batch = task.get("batch")
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x) if batch is None else batch, shuffle=batch is not None,
                        generator=torch.Generator().manual_seed(seed))
    classify = task["kind"] != "fig6"
    recorder = _Recorder(sets, classify, fp=not with_val, probe=None if with_val else x)
    callbacks: list[Any] = [recorder]
    stopper = None
    if not with_val:
        stopper = FrequencyEarlyStopping(dry_run=True)
        callbacks = [FrequencyPrincipleMonitor(**MONITOR_KW), recorder, stopper]
    trainer = L.Trainer(max_epochs=task["epochs"], callbacks=callbacks, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        accelerator="cpu", deterministic=False)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(_model(task, seed), loader)
    out = {"seconds": time.perf_counter() - start, "curves": recorder.curves}
    if stopper is not None:
        out["fp_metrics"] = recorder.fp_metrics
        out["dry_run_stop"] = stopper.rule.stopped_after
        out["dry_run_criterion"] = stopper.rule.criterion
        out["probe_outputs"] = np.stack(recorder.probe_outputs)  # (E + 1, n, c), float32; moved to the .npz
        out["probe_features"] = recorder.probe_features
    return out


# ---------------------------------------------------------------------------------------------- the denoised score
def _probe_arrays(rec: dict[str, Any], settings: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """Run A's recorded probe outputs, features and targets, the inputs reloaded (checked by SHA-1), the probe subset.

    The probe is what the monitor would take: ``probe_size`` training samples (a seeded random subset when the
    training set is larger).
    """
    task = settings["tasks"][rec["task"]]
    saved = np.load(results_dir / rec["probe_file"])
    data = _task_data(task, rec["seed"])
    if _input_digest(data["x"]) != str(saved["input_sha1"]):
        raise RuntimeError(f"{rec['task']} seed {rec['seed']}: the reloaded inputs differ from the recorded ones.")
    n = len(data["x"])
    size = min(n, MONITOR_KW["probe_size"])
    pick = np.sort(torch.randperm(n, generator=torch.Generator().manual_seed(3000 + rec["seed"]))[:size].numpy())
    features = {int(k.rsplit("_", 1)[1]): saved[k][pick].astype(np.float32) for k in saved.files
                if k.startswith("features_epoch_")}
    return {"inputs": data["x"][pick], "outputs": saved["outputs"][:, pick], "targets": saved["targets"][pick],
            "features": features, "classify": task["kind"] != "fig6",
            "clean": saved["clean_targets"][pick] if "clean_targets" in saved.files else None}


_LABEL_CACHE: dict[tuple[Any, ...], np.ndarray] = {}


def denoised_curve(arrays: dict[str, Any], space: str, delta_fraction: float, hard: bool,
                   key: tuple[Any, ...] = ()) -> np.ndarray | None:
    """The denoised score of every recorded epoch for one setting (None when the features were not recorded)."""
    from fp_lightning.functional import denoised_loss, leave_one_out_lowpass

    if space == "features@each":  # each epoch: its own features (recorded with FP_FEATURES_EVERY_EPOCH=1)
        epochs = range(len(arrays["outputs"]))
        if any(e not in arrays["features"] for e in epochs):
            return None
        return np.array([denoised_curve(arrays, f"features@{e}", delta_fraction, hard, key)[e] for e in epochs])
    if space == "features@latest":  # each epoch: the features of the latest recorded epoch at or before it
        recorded = sorted(arrays["features"])
        pieces = {e: denoised_curve(arrays, f"features@{e}", delta_fraction, hard, key) for e in recorded}
        if any(piece is None for piece in pieces.values()):
            return None
        return np.array([pieces[max(e for e in recorded if e <= t)][t] for t in range(len(arrays["outputs"]))])
    if space == "input":
        points = arrays["inputs"]
    else:
        epoch = int(space.split("@")[1])
        if epoch not in arrays["features"]:
            return None
        points = torch.from_numpy(arrays["features"][epoch])
    cache_key = (*key, space, delta_fraction)
    if cache_key not in _LABEL_CACHE:
        targets = torch.from_numpy(arrays["targets"])
        _LABEL_CACHE[cache_key] = leave_one_out_lowpass(points, targets, delta_fraction=delta_fraction,
                                                        dtype=torch.float64).numpy()
    labels = torch.from_numpy(_LABEL_CACHE[cache_key])
    loss = "cross_entropy" if arrays["classify"] else "mse"
    if hard and labels.shape[1] < 2:
        return None
    return np.array([float(denoised_loss(torch.from_numpy(out), labels, loss, hard=hard))
                     for out in arrays["outputs"]])


#: The settings the tuning (``--tune-denoised``) tries, one grid over all of them.
DENOISED_GRID: dict[str, list[Any]] = {
    "space": ["input", "features@0", "features@3", "features@latest", "features@each"],
    "delta_fraction": [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1],
    "hard": [False, True],
    "patience": [2, 3, 4, 5, 6, 8, 10, None],  # None: no stop, the best-scored epoch of the whole budget
}


def _rule_row(record: dict[str, Any], epoch: int) -> tuple[float, float | None]:
    test = np.asarray(record["A"]["curves"]["test_loss"])
    acc = record["A"]["curves"].get("test_acc")
    oracle = int(np.argmin(test))
    diff = None if acc is None else 100.0 * (acc[epoch] - acc[oracle])
    return float(test[epoch] / test[oracle]), diff


def tune_denoised(records: list[dict[str, Any]], settings: dict[str, Any], results_dir: Path,
                  tuning_seeds: set[int]) -> list[dict[str, Any]]:
    """Every setting of ``DENOISED_GRID`` on every run: ratios of the stop (weights at the stop) and of restore-best."""
    rows: list[dict[str, Any]] = []
    for rec in records:
        arrays = _probe_arrays(rec, settings, results_dir)
        for space in DENOISED_GRID["space"]:
            for fraction in DENOISED_GRID["delta_fraction"]:
                for hard in DENOISED_GRID["hard"]:
                    curve = denoised_curve(arrays, space, fraction, hard, key=(rec["task"], rec["seed"]))
                    if curve is None:
                        continue
                    for patience in DENOISED_GRID["patience"]:
                        stop, best = ((len(curve) - 1, int(np.argmin(curve[1:])) + 1) if patience is None
                                      else patience_stop(curve, patience))
                        stop_ratio, stop_acc = _rule_row(rec, stop)
                        best_ratio, best_acc = _rule_row(rec, best)
                        rows.append({"task": rec["task"], "seed": rec["seed"],
                                     "split": "tuning" if rec["seed"] in tuning_seeds else "held-out",
                                     "space": space, "delta_fraction": fraction, "hard": hard, "patience": patience,
                                     "stop": stop, "best": best, "stop_ratio": stop_ratio, "best_ratio": best_ratio,
                                     "stop_acc": stop_acc, "best_acc": best_acc})
        print(f"tuned {rec['task']} seed {rec['seed']}", flush=True)
    return rows


def print_tuning(rows: list[dict[str, Any]], top: int = 15) -> None:
    """The settings ranked by the mean restore-best ratio on the tuning runs, with their held-out numbers."""
    print("\n".join(tuning_ranking(rows, top)))


def tuning_ranking(rows: list[dict[str, Any]], top: int = 15) -> list[str]:
    """Lines of :func:`print_tuning`: the ``top`` settings by the tuning runs' mean ratio, restore-best then stop."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["space"], row["delta_fraction"], row["hard"], row["patience"]), []).append(row)
    tasks = sorted({r["task"] for r in rows})

    def stats(items: list[dict[str, Any]], which: str) -> tuple[float, float, int, int]:
        ratios = [r[f"{which}_ratio"] for r in items]
        ok = [r[f"{which}_ratio"] <= 1.05 and (r[f"{which}_acc"] is None or r[f"{which}_acc"] >= -1.0)
              for r in items]
        return float(np.mean(ratios)), float(np.max(ratios)), sum(ok), len(ok)

    table = []
    for key, items in groups.items():
        if len({r["task"] for r in items}) < len(tasks):  # a setting that some task did not record
            continue
        tune = [r for r in items if r["split"] == "tuning"]
        held = [r for r in items if r["split"] == "held-out"]
        if not tune:  # held-out runs only: nothing to rank by
            continue
        table.append((key, {w: stats(tune, w) for w in ("best", "stop")},
                      {w: stats(held, w) for w in ("best", "stop")} if held else None))
    lines = []
    for which in ("best", "stop"):
        what = "restore-best" if which == "best" else "the stop"
        lines.append(f"--- ranked by the tuning runs' mean ratio of {what}")
        for key, tune, held in sorted(table, key=lambda t: t[1][which][0])[:top]:
            t = tune[which]
            h = held[which] if held else None
            held_text = f" | held-out mean {h[0]:.3f} max {h[1]:.3f} ok {h[2]}/{h[3]}" if h else ""
            lines.append(f"{key!s:42s} tuning mean {t[0]:.3f} max {t[1]:.3f} ok {t[2]}/{t[3]}{held_text}")
    return lines


def tuning_markdown(rows: list[dict[str, Any]]) -> str:
    """The summary of a ``--tune-denoised`` run: the restore-best tables of docs/early_stopping.md and the ranking.

    One table per split; a row per (space, δ / m, labels), a column per task: the mean (max) ratio of the test loss
    at the best-scored epoch of the whole budget to the oracle's, and the mean over all the row's runs.
    """
    tasks = sorted({r["task"] for r in rows})
    out = ["# Denoised-score settings (`--tune-denoised`)", ""]
    for split in ("tuning", "held-out"):
        groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for row in rows:
            if row["split"] == split and row["patience"] is None:
                groups.setdefault((row["space"], row["delta_fraction"], row["hard"]), []).append(row)
        if not groups:
            continue
        out += [f"## {split} runs: restore-best ratio, mean (max)", "",
                "| space | δ / m | labels | " + " | ".join(tasks) + " | mean |",
                "|---|---|---|" + "---|" * (len(tasks) + 1)]
        for (space, fraction, hard), items in groups.items():
            cells = []
            for task in tasks:
                ratios = [r["best_ratio"] for r in items if r["task"] == task]
                cells.append(f"{np.mean(ratios):.3f} ({np.max(ratios):.3f})" if ratios else "–")
            mean = np.mean([r["best_ratio"] for r in items])
            out.append(f"| {space} | {fraction:g} | {'hard' if hard else 'soft'} | " + " | ".join(cells)
                       + f" | {mean:.3f} |")
        out.append("")
    out += ["## Ranking over every patience (tuning runs; held-out numbers beside)", "", "```",
            *tuning_ranking(rows), "```", ""]
    return "\n".join(out)


def summary_file(path: str | Path) -> Path:
    """Where the small summary of a results file goes: ``NAME.json`` -> ``NAME_summary.json`` (``.md`` for a grid)."""
    path = Path(path)
    return path.with_name(f"{path.stem}_summary{path.suffix}")


def _rounded(tree: Any, digits: int = 4) -> Any:
    """A JSON tree with its floats at ``digits`` significant digits (the summary's size)."""
    if isinstance(tree, dict):
        return {key: _rounded(value, digits) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_rounded(value, digits) for value in tree]
    if isinstance(tree, float) and math.isfinite(tree):
        return float(f"{tree:.{digits}g}")
    return tree


def patience_stop(curve: list[float] | np.ndarray, patience: int) -> tuple[int, int]:
    """EarlyStopping(mode="min", patience, min_delta=0) on epochs 1..E: (stop epoch, best epoch so far)."""
    return val_stop(list(curve), patience)


# ---------------------------------------------------------------------------------------------- stopping rules
def freq_stop(fp_metrics: list[dict[str, float]], **kwargs: Any) -> tuple[int | None, str | None]:
    """Replay FrequencyEarlyStopping(**kwargs) on the logged values of epochs 1..E; (stop epoch, criterion)."""
    stopper = FrequencyEarlyStopping(**kwargs)
    for epoch, metrics in enumerate(fp_metrics):
        if epoch >= 1 and metrics and stopper.evaluate(metrics, epoch)[0]:
            return epoch, stopper.rule.criterion
    return None, None


def val_stop(val_loss: list[float], patience: int) -> tuple[int, int]:
    """EarlyStopping(monitor="val_loss", patience, min_delta=0) on epochs 1..E: (stop epoch, best epoch so far)."""
    best, best_epoch, wait = math.inf, 0, 0
    for epoch in range(1, len(val_loss)):
        if val_loss[epoch] < best:
            best, best_epoch, wait = val_loss[epoch], epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best_epoch
    return len(val_loss) - 1, best_epoch


def label_wave_pick(changes: list[float] | np.ndarray, window: int) -> tuple[int, int | None]:
    """Label Wave on c(1..E) through ``FrequencyStoppingRule`` (what the callback decides): (chosen, stop epoch).

    The chosen epoch is the last of the first minimal window (at the budget's end without a stop: of the lowest
    window so far; the last epoch when fewer than ``window`` epochs exist). Values are rounded to float32, as the
    callback reads them from ``trainer.callback_metrics``.
    """
    from fp_lightning.callbacks.stopping_rule import FrequencyStoppingRule
    from fp_lightning.record import PREDICTION_CHANGES_KEY

    rule = FrequencyStoppingRule(low_threshold=None, share_threshold=None, plateau_rtol=None,
                                 label_wave_window=window)
    for epoch, value in enumerate(changes, start=1):
        if rule.update({PREDICTION_CHANGES_KEY: float(np.float32(value))}, epoch).should_stop:
            break
    chosen = rule.best_epoch
    return (len(changes) if chosen is None else chosen), rule.stopped_after


def recommended_pick(signals: dict[str, Any], epochs: int) -> tuple[int, str | None]:
    """``FrequencyEarlyStopping.recommended()`` replayed on what the callback read (:func:`live_signals`):
    (chosen epoch, selected criterion)."""
    from fp_lightning.callbacks.stopping_rule import FrequencyStoppingRule
    from fp_lightning.record import AGREEMENT_KEY, DENOISED_KEY, PREDICTION_CHANGES_KEY

    settings = {k: v for k, v in RECOMMENDED.items() if k != "restore_best_weights"}
    settings["denoised_patience"] = max(2, round(settings["denoised_patience"] * epochs))  # as at fit start
    rule = FrequencyStoppingRule(**settings)
    for epoch in range(1, epochs + 1):
        metrics = {DENOISED_KEY: float(np.float32(signals["denoised"][epoch - 1]))}
        if signals["changes"] is not None:
            metrics[PREDICTION_CHANGES_KEY] = float(np.float32(signals["changes"][epoch - 1]))
        if signals["agreement"] is not None:
            metrics[AGREEMENT_KEY] = float(np.float32(signals["agreement"]))
        if rule.update(metrics, epoch).should_stop:
            break
    chosen = rule.best_epoch
    return (epochs if chosen is None else chosen), rule.selected


def monitor_probe(n: int) -> np.ndarray:
    """The training-set indices of the monitor's probe in run A: ``MONITOR_KW["probe_size"]`` of the n samples,
    drawn as ``FrequencyPrincipleMonitor`` draws them (``probe_seed=0``: the first of a seeded permutation, sorted)."""
    size = min(n, MONITOR_KW["probe_size"])
    return np.sort(torch.randperm(n, generator=torch.Generator().manual_seed(0))[:size].numpy())


def label_wave_signals(rec: dict[str, Any], settings: dict[str, Any], results_dir: Path) -> dict[str, Any] | None:
    """Prediction changes of run A per epoch 1..E on the monitor's probe and on the whole training set.

    On the monitor's probe (:func:`monitor_probe`, the samples ``fp/prediction_changes`` counts), a sample is
    "high-frequency" when its label disagrees with its leave-one-out low-pass label (the monitor's denoised label:
    inputs, δ = m/1000, argmax); ``hf`` / ``lf`` are the changed samples among those / the others, as fractions of
    the whole probe (hf + lf = probe). ``agreement`` is the chance-corrected agreement (a − 1/C) / (1 − 1/C) that
    ``fp/denoised_agreement`` logs. ``None`` for regression.
    """
    from fp_lightning.functional import leave_one_out_lowpass

    task = settings["tasks"][rec["task"]]
    if task["kind"] == "fig6":
        return None
    saved = np.load(results_dir / rec["probe_file"])
    data = _task_data(task, rec["seed"])
    if _input_digest(data["x"]) != str(saved["input_sha1"]):
        raise RuntimeError(f"{rec['task']} seed {rec['seed']}: the reloaded inputs differ from the recorded ones.")
    pick = monitor_probe(len(data["x"]))
    targets = saved["targets"][pick]
    labels = leave_one_out_lowpass(data["x"][pick], torch.from_numpy(targets),
                                   delta_fraction=DENOISED["delta_fraction"], dtype=torch.float64).numpy()
    high = labels.argmax(1) != targets
    classes = labels.shape[1]
    agreement = float(np.mean(~high))
    every = saved["outputs"].argmax(-1)
    changed = every[1:, pick] != every[:-1, pick]
    return {"all": (every[1:] != every[:-1]).mean(1).tolist(), "probe": changed.mean(1).tolist(),
            "hf": (changed & high).mean(1).tolist(), "lf": (changed & ~high).mean(1).tolist(),
            "hf_samples": float(high.mean()), "agreement": (agreement - 1 / classes) / (1 - 1 / classes)}


def live_signals(record: dict[str, Any]) -> dict[str, Any]:
    """What the callback read in run A (``fp_metrics``, epochs 1..E): denoised score, prediction changes, agreement.

    Runs recorded before the monitor logged ``fp/prediction_changes`` have the score only; their changes and
    agreement come from :func:`label_wave_signals` (the same probe; equal to the logged values within float32 where
    both exist).
    """
    from fp_lightning.record import AGREEMENT_KEY, DENOISED_KEY, PREDICTION_CHANGES_KEY

    metrics = record["A"]["fp_metrics"][1:]
    out: dict[str, Any] = {"denoised": [m[DENOISED_KEY] for m in metrics] if all(DENOISED_KEY in m for m in metrics)
                           else None, "changes": None, "agreement": None, "source": "logged"}
    if metrics and all(PREDICTION_CHANGES_KEY in m for m in metrics):
        out["changes"] = [m[PREDICTION_CHANGES_KEY] for m in metrics]
        out["agreement"] = metrics[0].get(AGREEMENT_KEY)
    waves = record["A"].get("label_wave")
    if out["changes"] is None and waves is not None:
        out.update(changes=waves["probe"], agreement=waves["agreement"], source="recomputed")
    if out["denoised"] is None:  # (not expected: every recording logged the score)
        out["denoised"] = record["A"]["denoised_score"][1:]
    return out


def label_wave_study(records: list[dict[str, Any]], tuning_seeds: set[int]) -> dict[str, Any]:
    """Label Wave's window on the tuning seeds, and the frequency reading of its signal (classifier runs).

    Per task and split, the mean ratio (test loss at the chosen epoch ÷ the oracle's) of Label Wave with each window
    of ``LW_WINDOWS`` on the probe and on the whole training set, and of Label Wave (the recommended window) on the
    high-frequency samples' changes alone and on the others'; the share of the changes that fall on high-frequency
    samples (mean over epochs 1..E, and at the oracle epoch), against their share of the probe.
    """
    window = RECOMMENDED["label_wave_window"]
    rows = []
    for rec in records:
        waves = rec["A"].get("label_wave")
        if waves is None:
            continue
        test = np.asarray(rec["A"]["curves"]["test_loss"])
        oracle = int(np.argmin(test))

        def ratio(epoch: int, test: np.ndarray = test, oracle: int = oracle) -> float:
            return float(test[epoch] / test[oracle])

        total, high = np.asarray(waves["probe"]), np.asarray(waves["hf"])
        share = np.divide(high, total, out=np.full_like(total, np.nan), where=total > 0)
        row = {"task": rec["task"], "seed": rec["seed"], "split": "tuning" if rec["seed"] in tuning_seeds
               else "held-out", "agreement": waves["agreement"], "hf_samples": waves["hf_samples"],
               "hf_share_of_changes": float(np.nanmean(share)),
               "hf_share_at_oracle": float(share[oracle - 1]) if oracle >= 1 else math.nan}
        for w in LW_WINDOWS:
            row[f"probe_w{w}"] = ratio(label_wave_pick(waves["probe"], w)[0])
            row[f"all_w{w}"] = ratio(label_wave_pick(waves["all"], w)[0])
        row["hf_only"] = ratio(label_wave_pick(waves["hf"], window)[0])
        row["lf_only"] = ratio(label_wave_pick(waves["lf"], window)[0])
        rows.append(row)
    table: dict[str, Any] = {}
    keys = [k for k in (rows[0] if rows else {}) if k not in ("task", "seed", "split")]
    for task in sorted({r["task"] for r in rows}):
        for split in ("tuning", "held-out"):
            part = [r for r in rows if r["task"] == task and r["split"] == split]
            if part:
                table[f"{task} {split}"] = {"runs": len(part), **{k: float(np.nanmean([r[k] for r in part]))
                                                                  for k in keys}}
    for split in ("tuning", "held-out"):
        part = [r for r in rows if r["split"] == split]
        if part:
            table[f"all {split}"] = {"runs": len(part), **{k: float(np.nanmean([r[k] for r in part])) for k in keys}}
    return {"rows": rows, "means": table}


def print_label_wave_study(study: dict[str, Any]) -> None:
    keys = ["agreement", "hf_samples", "hf_share_of_changes", "hf_share_at_oracle",
            *[f"probe_w{w}" for w in LW_WINDOWS], *[f"all_w{w}" for w in LW_WINDOWS], "hf_only", "lf_only"]
    print("Label Wave study (mean over runs; ratios = test loss at the chosen epoch / oracle's)")
    print(f"{'':22s} {'n':>2s} " + " ".join(f"{k[:10]:>10s}" for k in keys))
    for name, row in study["means"].items():
        print(f"{name:22s} {row['runs']:2d} " + " ".join(f"{row[k]:10.3f}" for k in keys))


def evaluate_rules(record: dict[str, Any], fes_kwargs: dict[str, Any],
                   denoised: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per rule: epoch, test loss, ratio to the oracle, accuracy difference to the oracle (points).

    ``dn_stop`` / ``dn_best``: the patience stop on run A's denoised score (``record["A"]["denoised_score"]``,
    computed by the replay for the ``denoised`` settings) with the weights of the stopping epoch, and restoring
    the best-scored epoch (ModelCheckpoint on the score). ``both_best``: FrequencyEarlyStopping's criteria and the
    denoised stop together (the first to fire), restoring the best-scored epoch up to that stop.
    """
    denoised = DENOISED if denoised is None else denoised
    a, b = record["A"], record["B"]
    test = np.asarray(a["curves"]["test_loss"])
    acc = a["curves"].get("test_acc")
    epochs = len(test) - 1
    oracle = int(np.argmin(test))
    stop, criterion = freq_stop(a["fp_metrics"], **fes_kwargs)
    patience = max(2, round(0.1 * epochs))
    v_stop, v_best = val_stop(b["curves"]["val_loss"], patience)
    d_patience = denoised["patience"]
    if isinstance(d_patience, float) and d_patience < 1:
        d_patience = max(2, round(d_patience * epochs))
    d_stop, d_best = patience_stop(a["denoised_score"], d_patience)
    # (a)-(c) and (d) together: the first that fires stops, then the best-scored epoch up to there is restored
    both = min(d_stop, epochs if stop is None else stop)
    both_best = int(np.argmin(a["denoised_score"][1:both + 1])) + 1
    picks = {"dn_stop": ("A", d_stop), "dn_best": ("A", d_best), "both_best": ("A", both_best),
             "freq": ("A", epochs if stop is None else stop), "last": ("A", epochs), "val": ("B", v_stop),
             "val_best": ("B", v_best), "oracle": ("A", oracle),
             "val_min": ("B", int(np.argmin(b["curves"]["val_loss"][1:])) + 1)}
    waves = a.get("label_wave")
    window = RECOMMENDED["label_wave_window"]
    if waves is not None:
        picks["lw"] = ("A", label_wave_pick(waves["probe"], window)[0])
        picks["lw_all"] = ("A", label_wave_pick(waves["all"], window)[0])
    signals = live_signals(record)
    chosen, selected = recommended_pick(signals, epochs)
    picks["default"] = ("A", chosen)
    out: dict[str, Any] = {"oracle_loss": float(test[oracle]), "val_patience": patience, "dn_patience": d_patience,
                           "freq_criterion": criterion, "freq_fired": stop is not None,
                           "default_selected": selected, "default_signals": signals["source"],
                           "agreement": signals["agreement"]}
    for rule, (run, epoch) in picks.items():
        curves = record[run]["curves"]
        loss = float(curves["test_loss"][epoch])
        row = {"epoch": int(epoch), "run": run, "test_loss": loss, "ratio": loss / float(test[oracle])}
        if acc is not None:
            row["test_acc"] = float(curves["test_acc"][epoch])
            row["acc_diff_points"] = 100.0 * (row["test_acc"] - float(acc[oracle]))
        out[rule] = row
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for rule in RULES:
        ratios = [r["rules"][rule]["ratio"] for r in results if rule in r["rules"]]
        if not ratios:  # a classifier rule on regression runs only
            summary[rule] = {"mean_ratio": math.nan, "max_ratio": math.nan, "within_goal": "0/0"}
            continue
        summary[rule] = {"mean_ratio": float(np.mean(ratios)), "max_ratio": float(np.max(ratios))}
        diffs = [r["rules"][rule]["acc_diff_points"] for r in results
                 if rule in r["rules"] and "acc_diff_points" in r["rules"][rule]]
        if diffs:
            summary[rule]["mean_acc_diff_points"] = float(np.mean(diffs))
            summary[rule]["min_acc_diff_points"] = float(np.min(diffs))
    for rule in RULES:
        within = [r["rules"][rule]["ratio"] <= 1.05 and r["rules"][rule].get("acc_diff_points", 0.0) >= -1.0
                  for r in results if rule in r["rules"]]
        summary[rule]["within_goal"] = f"{sum(within)}/{len(within)}"
    summary["freq_within_goal"] = summary["freq"]["within_goal"]
    return summary


def print_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    head = f"{'task':9s} {'seed':>4s} {'split':>8s} | " + " | ".join(f"{r:^21s}" for r in RULES)
    print(head)
    print(f"{'':24s}| " + " | ".join(f"{'ep':>4s} {'L/L*':>6s} {'Δacc':>6s}  " for _ in RULES))
    for res in results:
        cells = []
        for rule in RULES:
            row = res["rules"].get(rule)
            if row is None:
                cells.append(f"{'n/a':^21s}")
                continue
            acc = f"{row['acc_diff_points']:+6.2f}" if "acc_diff_points" in row else f"{'':6s}"
            cells.append(f"{row['epoch']:4d} {row['ratio']:6.3f} {acc}  ")
        crit = res["rules"]["freq_criterion"] or "-"
        print(f"{res['task']:9s} {res['seed']:4d} {res['split']:>8s} | " + " | ".join(cells) + f"  [{crit}]")
    print("mean L/L*: " + ", ".join(f"{r} {summary[r]['mean_ratio']:.3f}" for r in RULES))
    print("max  L/L*: " + ", ".join(f"{r} {summary[r]['max_ratio']:.3f}" for r in RULES))
    if "mean_acc_diff_points" in summary["freq"]:
        print("mean Δacc: " + ", ".join(f"{r} {summary[r]['mean_acc_diff_points']:+.2f}" for r in RULES))
    print("within 5% loss / 1 point accuracy of the oracle: "
          + ", ".join(f"{r} {summary[r]['within_goal']}" for r in RULES))


def markdown_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The table of docs/early_stopping.md: one row per run, cells "stop epoch, test loss ÷ oracle's, Δacc"."""
    shown = ("default", "lw", "lw_all", "dn_best", "freq", "last", "val_best")
    lines = ["| task | seed | split | " + " | ".join(shown) + " | oracle epoch |",
             "|---|---|---|" + "---|" * len(shown) + "---|"]
    for res in results:
        cells = []
        for rule in shown:
            row = res["rules"].get(rule)
            if row is None:
                cells.append("–")
                continue
            acc = f", {row['acc_diff_points']:+.1f}".replace("-", "−") if "acc_diff_points" in row else ""
            cells.append(f"{row['epoch']}, {row['ratio']:.3f}{acc}")
        lines.append(f"| {res['task']} | {res['seed']} | {res['split']} | " + " | ".join(cells)
                     + f" | {res['rules']['oracle']['epoch']} |")
    for name, part in (("all runs", summary["all"]), ("held-out runs", summary.get("held_out"))):
        if part is None:
            continue
        cells = []
        for rule in shown:
            acc = part[rule].get("mean_acc_diff_points")
            acc_text = "" if acc is None else f", {acc:+.2f}".replace("-", "−")
            cells.append(f"**{part[rule]['mean_ratio']:.3f}**{acc_text} (max {part[rule]['max_ratio']:.3f}; "
                         f"{part[rule]['within_goal']} in goal)")
        lines.append(f"| mean, {name} | | | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def task_markdown(results: list[dict[str, Any]],
                  shown: tuple[str, ...] = ("default", "lw", "lw_all", "dn_best", "val_best", "val_min", "last"),
                  ) -> str:
    """Per task and split: the mean ratio (max; runs within 5% and 1 point), and the rule ``default`` chose."""
    lines = ["| task | split | runs | " + " | ".join(shown) + " | default used |",
             "|---|---|---|" + "---|" * len(shown) + "---|"]
    for split in ("held-out", "tuning"):
        for task in dict.fromkeys(r["task"] for r in results):
            part = [r for r in results if r["task"] == task and r["split"] == split]
            if not part:
                continue
            cells = []
            for rule in shown:
                rows = [r["rules"][rule] for r in part if rule in r["rules"]]
                if not rows:
                    cells.append("–")
                    continue
                ok = sum(row["ratio"] <= 1.05 and row.get("acc_diff_points", 0.0) >= -1.0 for row in rows)
                acc = [row["acc_diff_points"] for row in rows if "acc_diff_points" in row]
                acc_text = f", {np.mean(acc):+.1f}".replace("-", "−") if acc else ""
                cells.append(f"{np.mean([row['ratio'] for row in rows]):.3f}{acc_text} (max "
                             f"{max(row['ratio'] for row in rows):.3f}; {ok}/{len(rows)})")
            used = sorted({str(r["rules"].get("default_selected")) for r in part})
            lines.append(f"| {task} | {split} | {len(part)} | " + " | ".join(cells) + f" | {', '.join(used)} |")
    return "\n".join(lines)


def group_markdown(results: list[dict[str, Any]], split: str = "held-out",
                   shown: tuple[str, ...] = ("default", "lw", "dn_best", "val_best", "val_min", "last")) -> str:
    """README table: MNIST + 1-D, CIFAR-10 at 2,000 and at 10,000 images; mean ratio (max), runs within 5%."""
    groups = {"MNIST 20% / 40% noise, 1-D Fig. 6 task": ("mnist-20", "mnist-40", "fig6"),
              "CIFAR-10, 2,000 images, 20% / 40%": ("cifar-20", "cifar-40"),
              "CIFAR-10, 10,000 images, 20% / 40%": ("cifar10k-20", "cifar10k-40"),
              "CIFAR-10, both sizes": ("cifar-20", "cifar-40", "cifar10k-20", "cifar10k-40")}
    names = {"default": "`recommended()`", "lw": "Label Wave", "dn_best": "denoised score, restored",
             "val_best": "validation loss (10% held out), best restored", "val_min": "validation loss, lowest epoch",
             "last": "no stopping"}
    lines = ["| runs | " + " | ".join(names[r] for r in shown) + " |", "|---|" + "---|" * len(shown)]
    for title, tasks in groups.items():
        part = [r for r in results if r["split"] == split and r["task"] in tasks]
        if not part:
            continue
        cells = []
        for rule in shown:
            ratios = [r["rules"][rule]["ratio"] for r in part if rule in r["rules"]]
            if not ratios:
                cells.append("–")
                continue
            ok = sum(x <= 1.05 for x in ratios)
            cells.append(f"{np.mean(ratios):.3f} ({max(ratios):.3f}; {ok}/{len(ratios)})")
        lines.append(f"| {title} ({len(part)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_markdown(study: dict[str, Any], split: str = "held-out") -> str:
    """The frequency reading of the prediction changes, per task (one split)."""
    lines = ["| task (runs) | A | high-freq. share of probe | their share of changes (mean; at oracle) | "
             "Label Wave: all changes | high-freq. changes only | the others only | window 1 / 3 / 5 / 7 (probe) "
             "| window 5, whole training set |", "|---|---|---|---|---|---|---|---|---|"]
    for name, row in study["means"].items():
        if not name.endswith(split) or name.startswith("all "):
            continue
        task = name[: -len(split) - 1]
        windows = " / ".join(f"{row[f'probe_w{w}']:.3f}" for w in LW_WINDOWS)
        lines.append(f"| {task} ({row['runs']}) | {row['agreement']:.2f} | {row['hf_samples']:.2f} | "
                     f"{row['hf_share_of_changes']:.2f}; {row['hf_share_at_oracle']:.2f} | {row['probe_w5']:.3f} | "
                     f"{row['hf_only']:.3f} | {row['lf_only']:.3f} | {windows} | {row['all_w5']:.3f} |")
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    firsts = {}
    for rec, res in zip(records, results):
        firsts.setdefault(rec["task"], (rec, res))
    n_cols = 3
    n_rows = -(-(len(firsts) + 1) // n_cols)  # one more cell for the legend
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.2 * n_cols, 3.6 * n_rows), squeeze=False)
    colors = {"dn_stop": "tab:purple", "dn_best": "magenta", "both_best": "tab:olive", "freq": "tab:red",
              "last": "black", "val": "tab:blue", "val_best": "tab:cyan", "oracle": "tab:green",
              "lw": "tab:orange", "default": "tab:brown"}
    names = {"dn_stop": "stop on fp/denoised_loss", "dn_best": "same, best epoch restored",
             "both_best": "FrequencyEarlyStopping (a)-(d), restored", "freq": "FrequencyEarlyStopping (a)-(c)",
             "last": "no stopping", "val": "validation-loss EarlyStopping", "val_best": "same, best epoch restored",
             "oracle": "oracle (best test loss)", "lw": "Label Wave (probe), restored",
             "default": "FrequencyEarlyStopping.recommended()"}
    cells = list(axes.flat)
    for ax, (task, (rec, res)) in zip(cells, firsts.items()):
        a, b = rec["A"]["curves"], rec["B"]["curves"]
        ax.plot(a["epoch"], a["test_loss"], color="0.25", lw=1.6, label="test loss (all training data)")
        ax.plot(b["epoch"], b["test_loss"], color="0.65", ls="--", label="test loss (90%, validation run)")
        for rule in (r for r in RULES if r in res["rules"] and r in colors):
            ax.axvline(res["rules"][rule]["epoch"], color=colors[rule], lw=1.3, ls=":" if rule == "last" else "-",
                       label=names.get(rule, rule))
        if "denoised_score" in rec["A"]:  # on its own axis: a loss against other labels, not comparable in level
            twin = ax.twinx()
            twin.plot(a["epoch"], rec["A"]["denoised_score"], color="magenta", lw=0.9, alpha=0.7)
            twin.set_yscale("log")
            twin.set_ylabel("fp/denoised_loss", color="magenta", fontsize=8)
            twin.tick_params(axis="y", colors="magenta", labelsize=7, which="both")
            _plain_log_ticks(twin, rec["A"]["denoised_score"])
        ax.set_title(f"{task}, seed {rec['seed']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test loss")
        ax.set_yscale("log")
        ax.tick_params(axis="y", labelsize=7, which="both")
        _plain_log_ticks(ax, a["test_loss"] + b["test_loss"])
    legend_ax = cells[len(firsts)]
    handles, labels = cells[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="magenta", lw=0.9, alpha=0.7))
    labels.append("fp/denoised_loss (right axis)")
    legend_ax.legend(handles, labels, loc="center", fontsize=9, frameon=False)
    for ax in cells[len(firsts):]:
        ax.axis("off")
    fig.suptitle("Test loss of run A with each rule's stopping epoch (vertical lines); first seed of each task")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=77)  # 1200 px wide, the width docs/early_stopping.md shows it at


def _plain_log_ticks(ax: Any, values: list[float]) -> None:
    """Plain numbers on a log axis; minor labels only when the values span less than a decade (else they collide)."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    finite = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    narrow = bool(finite) and max(finite) / min(finite) < 10
    ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g") if narrow else NullFormatter())


def _parse_fes(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, value = item.split("=", 1)
        out[key] = None if value == "None" else (value if value.isalpha() else float(value) if "." in value or
                                                 "e" in value else int(value))
    return out


def _replay_dir(replay: str) -> Path:
    """The folder the replay's probe files are resolved from: the first item, or its parent when it is a file."""
    first = Path(replay.split(",")[0])
    return first if first.is_dir() else first.parent


def _run_one(name: str, seed: int, settings: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """Train runs A and B of one (task, seed), or load them when ``runs_dir`` already holds them.

    Each finished run writes ``runs_dir/TASK_seedS.json`` (the record, in the format of the full results file, so
    ``--replay runs_dir`` reads it) and its ``.npz`` of probe outputs beside it.
    """
    out_file = runs_dir / f"{name}_seed{seed}.json"
    if out_file.exists():
        print(f"{name} seed {seed}: loaded from {out_file}", flush=True)
        saved = json.loads(out_file.read_text())
        return saved["records"][0]
    task = settings["tasks"][name]
    data = _task_data(task, seed)
    rec = {"task": name, "seed": seed, "A": _train(task, seed, data, with_val=False),
           "B": _train(task, seed, data, with_val=True)}
    probe_file = runs_dir / f"{name}_seed{seed}.npz"
    _save_probe(probe_file, rec["A"], data)
    rec["probe_file"] = probe_file.name
    print(f"{name} seed {seed}: {rec['A']['seconds']:.0f} s + {rec['B']['seconds']:.0f} s", flush=True)
    run_settings = {**settings, "tasks": {name: task}}
    tmp = out_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": run_settings, "records": [rec]}))
    tmp.replace(out_file)  # atomic: a killed run leaves no half-written result that a restart would trust
    return rec


def main() -> None:
    import logging

    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="~2 minute version (short budgets, one seed, 2 tasks)")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of: " + ", ".join(TASKS))
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: per task)")
    parser.add_argument("--tuning-seeds", default=",".join(map(str, TUNING_SEEDS)),
                        help="seeds whose runs chose the defaults (labelled 'tuning'; the rest 'held-out')")
    parser.add_argument("--replay", default=None,
                        help="re-evaluate the rules on saved JSON file(s) (comma-separated, merged), no training")
    parser.add_argument("--runs", default=None,
                        help="explicit run order, 'task:seed,task:seed,...' (overrides --tasks/--seeds)")
    parser.add_argument("--runs-dir", default=None,
                        help="where each (task, seed) writes its own JSON and .npz as it finishes; finished runs "
                             "found there are loaded, not retrained (default: OUT's stem + '_runs')")
    parser.add_argument("--fes", nargs="*", default=[], help="FrequencyEarlyStopping overrides, e.g. patience=5")
    parser.add_argument("--out", default=None, help="JSON (default benchmarks/results/early_stopping[_quick].json)")
    parser.add_argument("--plot", default=None, help="PNG path (default docs/early_stopping[_quick].png; '' for none)")
    parser.add_argument("--epochs", type=int, default=None, help="override every task's epoch budget (smoke tests)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true",
                        help="also print the results as the table of docs/early_stopping.md")
    parser.add_argument("--tune-denoised", default=None,
                        help="with --replay: try every DENOISED_GRID setting, write the rows to this JSON, print a "
                             "ranking (tuning seeds) with the held-out numbers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fes_kwargs = _parse_fes(args.fes)
    suffix = "_quick" if args.quick else ""
    if args.out is None:
        args.out = str(REPO / "benchmarks" / "results" / f"early_stopping{suffix}.json")
    if args.plot is None:
        args.plot = str(REPO / "docs" / f"early_stopping{suffix}.png")
    tuning_seeds = {int(s) for s in args.tuning_seeds.split(",") if s}

    if args.replay:
        records, settings = [], {}
        files = [f for item in args.replay.split(",")
                 for f in (sorted(Path(item).glob("*_seed*.json")) if Path(item).is_dir() else [Path(item)])]
        for file in files:
            saved = json.loads(Path(file).read_text())
            for rec in saved["records"]:  # probe files are relative to the JSON that names them
                if "probe_file" in rec:
                    rec["probe_file"] = os.path.relpath(Path(file).parent / rec["probe_file"],
                                                        _replay_dir(args.replay))
            records += saved["records"]
            settings = {**saved["settings"], **settings,
                        "tasks": {**saved["settings"]["tasks"], **settings.get("tasks", {})}}
    else:
        table = QUICK if args.quick else TASKS
        names = args.tasks.split(",") if args.tasks else list(table)
        settings = {"tasks": {n: {**table[n], **({} if args.epochs is None else {"epochs": args.epochs})}
                              for n in names}, "quick": args.quick, "monitor": MONITOR_KW,
                    "n_test_images": N_TEST_IMAGES, "feature_epochs": FEATURE_EPOCHS, "torch": torch.__version__,
                    "lightning": L.__version__, "python": platform.python_version(), "threads": args.threads}
        runs_dir = Path(args.runs_dir) if args.runs_dir else Path(args.out).parent / (Path(args.out).stem + "_runs")
        if args.runs:  # an explicit order, "task:seed,...": the most informative runs first
            order = [(item.split(":")[0], int(item.split(":")[1])) for item in args.runs.split(",") if item]
            unknown = sorted({n for n, _ in order} - set(table))
            if unknown:
                raise SystemExit(f"--runs: unknown task(s) {unknown}; choose from {list(table)}")
            settings["tasks"] = {n: {**table[n], **({} if args.epochs is None else {"epochs": args.epochs})}
                                 for n, _ in order}
        else:
            order = [(name, seed) for name in names
                     for seed in ([int(s) for s in args.seeds.split(",")] if args.seeds
                                  else settings["tasks"][name]["seeds"])]
        records = []
        for name, seed in order:
            rec = _run_one(name, seed, settings, runs_dir)
            if "probe_file" in rec:  # (runs imported from an earlier recording may have none)
                rec["probe_file"] = os.path.relpath(runs_dir / rec["probe_file"], Path(args.out).parent)
            records.append(rec)
            # written after every run, so a long benchmark that is cut short keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"settings": settings, "records": records}))
    results_dir = _replay_dir(args.replay) if args.replay else Path(args.out).parent
    if args.tune_denoised:
        rows = tune_denoised(records, settings, results_dir, tuning_seeds)
        Path(args.tune_denoised).write_text(json.dumps({"grid": DENOISED_GRID, "rows": rows}))
        summary_file(args.tune_denoised).with_suffix(".md").write_text(tuning_markdown(rows))
        print_tuning(rows)
        return
    for rec in records:
        # the .npz files (about 100 MB for the full benchmark) are not kept in the repository: without them the
        # rules are re-evaluated on the score saved in the JSON (for the settings it was saved with)
        if "probe_file" in rec and (results_dir / rec["probe_file"]).exists():
            arrays = _probe_arrays(rec, settings, results_dir)
            curve = denoised_curve(arrays, DENOISED["space"], DENOISED["delta_fraction"], DENOISED["hard"],
                                   key=(rec["task"], rec["seed"]))
            assert curve is not None, f"{rec['task']}: {DENOISED} was not recorded"
            rec["A"]["denoised_score"] = curve.tolist()
            rec["A"]["denoised_settings"] = {k: DENOISED[k] for k in ("space", "delta_fraction", "hard")}
            rec["A"]["label_wave"] = label_wave_signals(rec, settings, results_dir)
        elif "denoised_score" not in rec["A"]:
            raise FileNotFoundError(f"{rec['task']} seed {rec['seed']}: no denoised score in the JSON and no "
                                    f"{rec.get('probe_file')} to compute it from; rerun the benchmark.")
    results = []
    for rec in records:
        results.append({"task": rec["task"], "seed": rec["seed"],
                        "split": "tuning" if rec["seed"] in tuning_seeds else "held-out",
                        "dry_run_stop": rec["A"].get("dry_run_stop"), "rules": evaluate_rules(rec, fes_kwargs)})
    summary = {"all": summarize(results)}
    held = [r for r in results if r["split"] == "held-out"]
    if held:
        summary["held_out"] = summarize(held)
    print_table(results, summary["all"])
    if not fes_kwargs:  # the live dry run used the defaults of the recording: the replay must agree with it
        agree = [r["dry_run_stop"] == (r["rules"]["freq"]["epoch"] if r["rules"]["freq_fired"] else None)
                 for r in results]
        summary["dry_run_agrees_with_replay"] = f"{sum(agree)}/{len(agree)}"
        print(f"live dry-run stops equal to the replayed ones: {summary['dry_run_agrees_with_replay']}")
    if held:
        print("held-out seeds only:")
        print("  mean L/L*: " + ", ".join(f"{r} {summary['held_out'][r]['mean_ratio']:.3f}" for r in RULES)
              + "; within goal: " + ", ".join(f"{r} {summary['held_out'][r]['within_goal']}" for r in RULES))
    study = label_wave_study(records, tuning_seeds)
    summary["label_wave_study"] = study["means"]
    if study["rows"]:
        print_label_wave_study(study)
    if args.markdown:
        print(markdown_table(results, summary))
        print(task_markdown(results))
        print(group_markdown(results))
        if study["rows"]:
            print(study_markdown(study))
    out = {"settings": settings, "fes_kwargs": fes_kwargs, "denoised": DENOISED, "results": results,
           "summary": summary,
           "records": records}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out))
    # the full file (recorded curves) is not kept in git; the summary (every number the docs cite) is
    # (per rule: epoch, run, ratio and accuracy difference; the test loss is the ratio times oracle_loss)
    summary = {key: value for key, value in out.items() if key != "records"}
    summary["results"] = [{**res, "rules": {rule: ({k: v for k, v in row.items() if k not in ("test_loss", "test_acc")}
                                                    if isinstance(row, dict) else row)
                                             for rule, row in res["rules"].items()}}
                          for res in results]
    summary_file(args.out).write_text(json.dumps(_rounded(summary), indent=None, separators=(",", ":")) + "\n")
    if args.plot:
        plot(records, results, Path(args.plot))


if __name__ == "__main__":
    main()
