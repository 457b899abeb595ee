"""The theory paper's Figs. 1 and 2 (§3.3) from a monitored run: three stages of training, their ratios and numbers.

Train first (each is one command; about 15–25 minutes on a 2-core CPU)::

    fp-lightning fit --config examples/configs/theory_fig1_mse.yaml
    fp-lightning fit --config examples/configs/theory_fig2_l4.yaml

then draw the paper-style figure and print the numbers from the saved history (no retraining)::

    python examples/theory_stages.py fp_runs/theory_fig1_mse/version_0/fp_history.npz --output theory_fig1.png

The figure: one column per stage (:func:`fp_lightning.report.training_stages`). Initial and final stage: the ratio of
the loss change above η (Eq. (39), averaged over the stage), the ratio of the output change above η (Eq. (40),
mean over the stage's recordings) and Δ_F at the tracked peaks at the stage's last recording. Intermediate stage:
the ratio over [T₁, T₂] against |T₂ − T₁| (Eq. (44), Fig. 1c) at the history's cutoff η.

The numbers: for each curve over η, Spearman's rank correlation between η and the ratio (−1: the ratio falls at
every step of η, the paper's finding for the initial and final stages); for Eq. (44), the rank correlation between
|T₂ − T₁| and the ratio (+1: it grows with the span, the paper's finding for the intermediate stage).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fp_lightning.functional import intermediate_stage_ratio, loss_change_ratio
from fp_lightning.record import load_history
from fp_lightning.report import training_stages

SHOWN_ETAS = (1, 7, 19, 40)  # cutoffs printed in the table (η = 7: the fourth peak, the paper's Fig. 1c choice)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of the finite pairs (ties get average ranks)."""
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    rx, ry = (_ranks(v[keep]) for v in (x, y))
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v))
    for value in np.unique(v):  # average ranks for ties
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def stage_curves(history: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per stage: its recordings, the Eq. (39) loss ratio and the mean Eq. (40) output ratio over every η."""
    density = np.asarray(history["loss_density"], dtype=float)
    output_ratio = np.asarray(history["output_change_ratio"], dtype=float)
    curves = {}
    for name, part in training_stages(history["delta_f"]).items():
        rows = np.arange(len(history["epoch"]))[part]
        if len(rows) < 2:
            continue
        curves[name] = {"rows": rows, "loss": loss_change_ratio(density[rows]).numpy(),
                        "output": np.nanmean(output_ratio[rows[1:]], axis=0)}
    return curves


def summary(history: dict) -> str:
    """The table printed by the script (see the module docstring)."""
    epochs = np.asarray(history["epoch"])
    eta = np.arange(np.asarray(history["loss_density"]).shape[1] - 1)
    lines = [f"{'stage':<13}{'epochs':<14}{'curve':<9}" + "".join(f"{'η=' + str(e):>9}" for e in SHOWN_ETAS)
             + f"{'Spearman(η, ratio)':>20}"]
    for name, curve in stage_curves(history).items():
        span = f"{epochs[curve['rows'][0]]}–{epochs[curve['rows'][-1]]}"
        for kind in ("loss", "output"):
            values = "".join(f"{curve[kind][e]:>9.2g}" for e in SHOWN_ETAS if e < len(eta))
            lines.append(f"{name:<13}{span:<14}{kind:<9}{values}{rank_correlation(eta, curve[kind]):>20.2f}")
    spans, ratios, start = _intermediate(history)
    if spans is not None:
        picks = np.unique(np.linspace(0, len(spans) - 1, 6).astype(int))
        lines.append(f"Eq. (44) at η = {int(history['cutoff'])}, T₁ = epoch {epochs[start]}: "
                     + ", ".join(f"|T₂−T₁| = {spans[i]:g}: {ratios[i]:.3f}" for i in picks)
                     + f"; Spearman(|T₂−T₁|, ratio) = {rank_correlation(spans, ratios):.2f}")
    return "\n".join(lines)


def _intermediate(history: dict) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    start = training_stages(history["delta_f"])["intermediate"].start
    if start >= len(history["epoch"]) - 1:
        return None, None, start
    spans, ratios = intermediate_stage_ratio(history["loss_density"], history["epoch"], int(history["cutoff"]),
                                             start=start)
    return spans.numpy(), ratios.numpy(), start


def draw(history: dict, title: str) -> Figure:
    """The paper-style figure (see the module docstring)."""
    epochs = np.asarray(history["epoch"])
    curves = stage_curves(history)
    fig = Figure(figsize=(13.0, 9.5), layout="constrained")
    grid = fig.subplots(3, 3, squeeze=False)
    for col, name in ((0, "initial"), (2, "final")):
        if name not in curves:
            continue
        curve = curves[name]
        span = f"epochs {epochs[curve['rows'][0]]}–{epochs[curve['rows'][-1]]}"
        for row, kind, label in ((0, "loss", "Σ|ΔL⁺_η| / Σ|ΔL|  (39)"), (1, "output", "‖Δĥ‖ k>η / ‖Δĥ‖  (40)")):
            ax = grid[row, col]
            ax.semilogy(np.clip(curve[kind], 1e-5, None), "o-", markersize=2.5)
            ax.set(title=f"{name} stage, {span}", xlabel="cutoff η", ylabel=label)
        last = curve["rows"][-1]
        grid[2, col].plot(history["freqs"], history["delta_f"][last], "s-")
        grid[2, col].set(title=f"Δ_F at the peaks, epoch {epochs[last]}", xlabel="frequency k",
                         ylabel="|F[h] − F[y]| / |F[y]|", ylim=(0, max(1.0, float(history["delta_f"][last].max()))))
    spans, ratios, start = _intermediate(history)
    ax = grid[0, 1]
    if spans is not None:
        ax.plot(spans, ratios, "o-", markersize=2.5)
    ax.set(title=f"intermediate stage: Eq. (44) at η = {int(history['cutoff'])}, T₁ = epoch {epochs[start]}",
           xlabel="|T₂ − T₁| (epochs)", ylabel="Σ|ΔL⁺_η| / Σ|ΔL| over [T₁, T₂]")
    if "intermediate" in curves:
        curve = curves["intermediate"]
        grid[1, 1].semilogy(np.clip(curve["loss"], 1e-5, None), "o-", markersize=2.5, label="loss (39)")
        grid[1, 1].semilogy(np.clip(curve["output"], 1e-5, None), "s:", markersize=2.5, label="output (40)")
        grid[1, 1].set(title="intermediate stage, averaged over it", xlabel="cutoff η", ylabel="ratio above η")
        grid[1, 1].legend(fontsize="small")
        last = curve["rows"][-1]
        grid[2, 1].plot(history["freqs"], history["delta_f"][last], "s-")
        grid[2, 1].set(title=f"Δ_F at the peaks, epoch {epochs[last]}", xlabel="frequency k", ylim=(0, 1.0))
    fig.suptitle(title)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", type=Path, help="an fp_history.npz written by the monitor")
    parser.add_argument("--output", type=Path, default=None, help="PNG to write (default: none)")
    parser.add_argument("--title", default=None, help="figure title (default: the run folder)")
    args = parser.parse_args()
    history = load_history(args.history)
    print(summary(history))
    if args.output is not None:
        draw(history, args.title or str(args.history.parent)).savefig(args.output, dpi=100)
        print(f"figure: {args.output}")


if __name__ == "__main__":
    main()
