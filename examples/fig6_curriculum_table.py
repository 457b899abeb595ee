"""Compare runs of the Fig. 6 noisy task: test loss, when each tracked peak is fitted, when the curriculum moved.

Train the three configs (plain MSE, and L_wf with the low-to-high and high-to-low curricula), then print the
table of ``docs/experiments.md`` ("Does a curriculum change the test error on Fig. 6's task?")::

    fp-lightning fit --config examples/configs/fig6_noise.yaml --trainer.max_epochs=6000
    fp-lightning fit --config examples/configs/fig6_curriculum_low_to_high.yaml
    fp-lightning fit --config examples/configs/fig6_curriculum_high_to_low.yaml
    python examples/fig6_curriculum_table.py fp_runs/fig6_noise/version_0 \\
        fp_runs/fig6_curriculum_low_to_high/version_0 fp_runs/fig6_curriculum_high_to_low/version_0

Each argument is a run folder holding the TensorBoard event file (``val_loss``, the paper's test loss: an MSE on
the test points; ``fp/curriculum_peak``) and the monitor's ``fp_history.npz`` (Δ_F per tracked k). Epochs are
counted as completed training epochs (one full-batch Adam step each): Lightning logs a value measured at the end of
epoch e (1-based) under step e − 1, so the script adds 1.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fp_lightning.record import HISTORY_FILE
from fp_lightning.report import fitting_epochs

#: Δ_F level at which a peak counts as fitted (the paper's 10%, the curriculum's threshold).
FIT_THRESHOLD = 0.1


@dataclass
class RunSummary:
    """What the table shows of one run; epochs are completed training epochs (see the module docstring)."""

    name: str
    best_test_loss: float
    best_epoch: int
    final_test_loss: float
    final_epoch: int
    freqs: list[int]
    fit_epochs: list[int | None]
    final_delta_f: list[float]
    moves: list[tuple[int, int]]  # (epoch, new peak) each time fp/curriculum_peak changed; empty without curriculum


def scalar_series(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of one TensorBoard scalar; epochs = logged step + 1. Empty arrays if the tag is absent."""
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    if tag not in events.Tags()["scalars"]:
        return np.zeros(0, dtype=int), np.zeros(0)
    records = events.Scalars(tag)
    return np.array([r.step + 1 for r in records]), np.array([r.value for r in records])


def curriculum_moves(epochs: np.ndarray, peaks: np.ndarray, first_peak: int) -> list[tuple[int, int]]:
    """(epoch, peak) for the starting peak (epoch 0) and at each change of the logged current peak.

    The curriculum logs its peak after each recording, after any move, so the first logged value is already the
    second peak when the first move happened at the first recording; hence the starting peak is passed in.
    """
    moves, previous = [(0, int(first_peak))], int(first_peak)
    for epoch, peak in zip(epochs.tolist(), peaks.astype(int).tolist()):
        if peak != previous:
            moves.append((int(epoch), int(peak)))
            previous = peak
    return moves


def curriculum_direction(run_dir: Path) -> str | None:
    """The ``direction`` of the FrequencyCurriculum in the run's saved ``config.yaml`` (``None``: no curriculum).

    Only the monitor's tracked peaks are read from the history, so this assumes the curriculum's ``peaks`` were left
    at their default (the monitor's tracked frequencies), as in the Fig. 6 configs.
    """
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise SystemExit(f"{run_dir}: no config.yaml; pass a run folder written by `fp-lightning fit`.")
    callbacks = (yaml.safe_load(config_path.read_text()).get("trainer") or {}).get("callbacks") or []
    for callback in callbacks:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("FrequencyCurriculum"):
            return (callback.get("init_args") or {}).get("direction", "low_to_high")
    return None


def summarize(run_dir: Path) -> RunSummary:
    """Read one run folder (event file and ``fp_history.npz``) into a :class:`RunSummary`."""
    val_epochs, val_loss = scalar_series(run_dir, "val_loss")
    if len(val_loss) == 0:
        raise SystemExit(f"{run_dir}: no `val_loss` in its TensorBoard events; pass a run folder of a Fig. 6 config.")
    history_path = run_dir / HISTORY_FILE
    if not history_path.is_file():
        raise SystemExit(f"{run_dir}: no {HISTORY_FILE}; pass a run folder written by the monitor.")
    history = np.load(history_path)
    best = int(np.argmin(val_loss))
    freqs = [int(k) for k in history["freqs"]]
    direction = curriculum_direction(run_dir)
    peak_epochs, peak_values = scalar_series(run_dir, "fp/curriculum_peak")
    first_peak = min(freqs) if direction == "low_to_high" else max(freqs)
    return RunSummary(
        name=run_dir.parent.name if run_dir.name.startswith("version_") else f"{run_dir.parent.name}/{run_dir.name}",
        best_test_loss=float(val_loss[best]), best_epoch=int(val_epochs[best]),
        final_test_loss=float(val_loss[-1]), final_epoch=int(val_epochs[-1]),
        freqs=freqs,
        fit_epochs=fitting_epochs(history["delta_f"], history["epoch"], FIT_THRESHOLD),
        final_delta_f=[float(v) for v in history["delta_f"][-1]],
        moves=[] if direction is None else curriculum_moves(peak_epochs, peak_values, first_peak),
    )


def markdown_table(runs: list[RunSummary]) -> str:
    """The comparison as a Markdown table, one row per run ("–": Δ_F never went below the threshold)."""
    freqs = runs[0].freqs
    ks = ", ".join(map(str, freqs))
    head = ["run", "lowest test loss (epoch)", "test loss at the end (epoch)",
            f"first epoch with Δ_F < {FIT_THRESHOLD:g} at k = {ks}", f"Δ_F at the end, k = {ks}",
            "curriculum: epoch → peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for run in runs:
        if run.freqs != freqs:
            raise SystemExit(f"{run.name} tracks k = {run.freqs}, {runs[0].name} k = {freqs}; compare runs of one "
                             "task.")
        cells = [run.name, f"{run.best_test_loss:.4f} ({run.best_epoch:,})",
                 f"{run.final_test_loss:.4f} ({run.final_epoch:,})",
                 "; ".join("–" if e is None else f"{e:,}" for e in run.fit_epochs),
                 ", ".join(f"{v:.3f}" for v in run.final_delta_f),
                 "; ".join(f"{e:,} → {p}" for e, p in run.moves) or "none (MSE)"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def expected_staircase(x: np.ndarray, alpha: float = 0.5, noise_std: float = 0.1) -> np.ndarray:
    """E[y | x] for y = α · round((sin x + ε) / α), ε ~ N(0, noise_std²): the best possible test prediction.

    Σ_j α j · P(round((sin x + ε)/α) = j) with P = Φ(((j + ½)α − sin x)/σ) − Φ(((j − ½)α − sin x)/σ).
    """
    from scipy.stats import norm

    levels = np.arange(-int(np.ceil(1 / alpha)) - 2, int(np.ceil(1 / alpha)) + 3)[:, None]
    s = np.sin(np.asarray(x, dtype=float))[None, :]
    prob = norm.cdf(((levels + 0.5) * alpha - s) / noise_std) - norm.cdf(((levels - 0.5) * alpha - s) / noise_std)
    return alpha * (levels * prob).sum(axis=0)


def reference_test_losses() -> dict[str, float]:
    """MSE against the Fig. 6 test targets (preset "fig6", seed 0) of three fixed predictions, for scale."""
    from fp_lightning.data import Staircase1DDataModule

    data = Staircase1DDataModule(preset="fig6", batch_size=None, noise_on_test=True)
    x = data.x_test.reshape(-1).double()
    y = data.y_test.reshape(-1).double().numpy()
    predictions = {"E[y | x] (the best possible)": expected_staircase(x.numpy()),
                   "sin x": np.sin(x.numpy()),
                   "the noise-free staircase": data.target_function(x).numpy()}
    return {name: float(np.mean((y - prediction) ** 2)) for name, prediction in predictions.items()}


def plot_runs(run_dirs: list[Path], out_png: Path) -> Path:
    """Test loss and training MSE against the epoch, one line per run, the curriculum's moves marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    references = reference_test_losses()
    fig, (ax_test, ax_zoom, ax_train) = plt.subplots(1, 3, figsize=(16, 4.4))
    for index, run_dir in enumerate(run_dirs):
        run = summarize(run_dir)
        color = f"C{index}"
        epochs, test_loss = scalar_series(run_dir, "val_loss")
        ax_test.plot(epochs, test_loss, color=color, label=run.name)
        ax_zoom.plot(epochs, test_loss, color=color, label=run.name)
        ax_zoom.plot(run.best_epoch, run.best_test_loss, "o", color=color, ms=4)
        train_epochs, train_mse = scalar_series(run_dir, "train_mse")
        if len(train_mse) == 0:  # the plain MSE run: its train_loss is the MSE
            train_epochs, train_mse = scalar_series(run_dir, "train_loss")
        ax_train.plot(train_epochs, train_mse, color=color, label=run.name)
        for epoch, peak in run.moves[1:]:
            for ax in (ax_test, ax_zoom, ax_train):
                ax.axvline(epoch, color=color, lw=0.6, ls=":")
            ax_test.annotate(str(peak), (epoch, 1.0), xycoords=("data", "axes fraction"), color=color, fontsize=8,
                             ha="center", va="bottom")
    for (name, value), style in zip(references.items(), ("-", "--", "-.")):
        for ax in (ax_test, ax_zoom):
            ax.axhline(value, color="grey", lw=0.8, ls=style, label=f"{name}: {value:.4f}" if ax is ax_zoom else None)
    ax_test.set(yscale="log", ylim=(0.02, None), xlabel="epoch (= full-batch Adam step)",
                ylabel="test loss (MSE on 6000 noisy test points)")
    ax_test.set_title("test loss; dotted: curriculum moves (new peak above)", fontsize=10, pad=14)
    ax_zoom.set(ylim=(0.024, 0.04), xlabel="epoch (= full-batch Adam step)", ylabel="test loss")
    ax_zoom.set_title("test loss, close up (dot: lowest); grey: fixed predictions", fontsize=10, pad=14)
    ax_zoom.legend(fontsize=7, loc="upper right")
    ax_train.set(yscale="log", xlabel="epoch (= full-batch Adam step)", ylabel="training MSE")
    ax_train.set_title("training MSE (the loss of the plain run)", fontsize=10, pad=14)
    ax_test.legend(fontsize=7, loc="upper right")
    ax_train.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def main(argv: list[str] | None = None) -> None:
    """Print the Markdown table for the run folders given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run folders (fp_runs/<name>/version_<n>)")
    parser.add_argument("--references", action="store_true",
                        help="also print the test loss of E[y | x], sin x and the noise-free staircase")
    parser.add_argument("--plot", type=Path, default=None, help="also draw the test and training losses to this PNG")
    args = parser.parse_args(argv)
    if args.plot is not None:
        print(f"figure: {plot_runs(args.run_dirs, args.plot)}")
    print(markdown_table([summarize(run_dir) for run_dir in args.run_dirs]))
    if args.references:
        for name, value in reference_test_losses().items():
            print(f"test loss of {name}: {value:.4f}")


if __name__ == "__main__":
    main()
