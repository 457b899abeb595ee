"""The paper's Fig. 2: a network fits a photograph from pixel coordinates, with small and with large initialization.

One command trains both configs (they differ only in the initialization's standard deviation, 0.01 against 0.5)
through LightningCLI, snapshots the network's output on every pixel as it trains, and draws the figure::

    python examples/fig2_image.py --output fig2_image.png

or one run per process (e.g. in parallel), then the figure from the saved snapshots::

    python examples/fig2_image.py train examples/configs/fig2_image_small_init.yaml --curves small.npz
    python examples/fig2_image.py train examples/configs/fig2_image_large_init.yaml --curves large.npz
    python examples/fig2_image.py draw small.npz large.npz --output fig2_image.png

(``fp-lightning fit --config ...`` trains the same configs with the monitor, without the snapshots.)

What it computes, at initialization and every ``--every`` steps:

* Δ_F(k) = |F[y](k) − F[h](k)| / |F[y](k)| along one image row (the datamodule's ``probe_row``, the paper's red
  dashed line), on that row's training pixels (every other column, evenly spaced, so F is their DFT), at the
  peaks of |F[y]| on that row (``select_frequencies``), with the package's ``nufft_spectrum``;
* the mean squared error on the training pixels (odd columns) and on the held-out pixels (even columns);
* the network's output on every pixel, drawn at a few steps.

It prints the numbers (first step with Δ_F < 0.05 per peak, their Spearman correlation with k, final errors) and
writes one PNG: the target and its row spectrum on top, then one row per initialization (Δ_F heatmap, outputs at
three steps, errors).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import lightning.pytorch as pl
import matplotlib.pyplot as plt
import numpy as np
import torch

from fp_lightning.data import ImageRegression2DDataModule
from fp_lightning.functional import nufft_spectrum, principal_projection, relative_spectral_error, select_frequencies
from fp_lightning.report import fitting_epochs, frequency_order_correlation

CONFIGS = Path(__file__).parent / "configs"
FIT_THRESHOLD = 0.05


class ImageSnapshots(pl.Callback):
    """Record the network's output on every pixel before training, every ``every`` steps and at the end (eval mode).

    With ``path``, every snapshot also rewrites that ``.npz`` file, so a run stopped early keeps what it recorded.
    """

    def __init__(self, datamodule: ImageRegression2DDataModule, every: int, path: Path | None = None,
                 init_std: float = float("nan")) -> None:
        self.datamodule, self.every, self.path, self.init_std = datamodule, every, path, init_std
        self.steps: list[int] = []
        self.images: list[np.ndarray] = []

    def _record(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.steps and self.steps[-1] == trainer.global_step:
            return
        was_training = module.training
        module.eval()
        with torch.no_grad():
            out = module(self.datamodule.grid_inputs().to(module.device))
        module.train(was_training)
        self.steps.append(trainer.global_step)
        self.images.append(out.reshape(self.datamodule.image.shape).cpu().numpy())
        if self.path is not None:
            np.savez_compressed(self.path, **self.saved())

    def saved(self) -> dict[str, np.ndarray]:
        """The snapshots and the setting, as ``analyse`` reads them."""
        dm = self.datamodule
        return {"steps": np.array(self.steps), "images": np.stack(self.images), "target": dm.image.numpy(),
                "train_mask": dm.train_mask.numpy(), "probe_row": np.array(dm.probe_row),
                "init_std": np.array(self.init_std)}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Snapshot the initialization (step 0)."""
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        """Snapshot after every ``every``-th optimizer step."""
        if trainer.global_step % self.every == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Snapshot the trained network (also when ``max_time`` or a callback stopped the run)."""
        self._record(trainer, pl_module)


def train(config: Path, every: int, overrides: list[str], path: Path | None = None) -> dict[str, np.ndarray]:
    """Train one config with LightningCLI and the snapshot callback; return (and save to ``path``) the snapshots."""
    from lightning.pytorch.cli import LightningCLI

    cli = LightningCLI(args=["--config", str(config), *overrides], run=False,
                       save_config_kwargs={"overwrite": True})
    snapshots = ImageSnapshots(cli.datamodule, every, path, float(cli.model.init_std))
    cli.trainer.callbacks.append(snapshots)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return snapshots.saved()


@dataclass
class RunCurves:
    """What one run's snapshots say, step by step (step 0 = the initialization)."""

    steps: np.ndarray          # (S,)
    images: np.ndarray         # (S, H, W) network output on every pixel
    target: np.ndarray         # (H, W)
    train_mask: np.ndarray     # (H, W) bool
    probe_row: int
    init_std: float
    peaks: np.ndarray          # (P,) the row's peaks of |F[y]|
    target_amplitude: np.ndarray  # (K,) |F[y]| along the row
    delta_f: np.ndarray        # (S, P)
    train_mse: np.ndarray      # (S,)
    heldout_mse: np.ndarray    # (S,)


def row_spectrum(row_values: np.ndarray, n_freqs: int) -> torch.Tensor:
    """F[v](k) of evenly spaced samples of one row: x projected to [0, (m−1)/m], the DFT grid of numpy's FFT."""
    m = len(row_values)
    positions = torch.arange(m, dtype=torch.float64).unsqueeze(1)
    coords = principal_projection(positions).coords[:, 0]
    return nufft_spectrum(coords, torch.as_tensor(row_values, dtype=torch.float64), n_freqs, backend="direct")


def analyse(saved: dict[str, np.ndarray]) -> RunCurves:
    """Δ_F along the probe row at its peaks, and the errors on training / held-out pixels, for every snapshot."""
    images, target, mask = saved["images"], saved["target"], saved["train_mask"].astype(bool)
    row = int(saved["probe_row"])
    y_row = target[row][mask[row]]
    n_freqs = len(y_row) // 2
    target_spec = row_spectrum(y_row, n_freqs)
    peaks = select_frequencies(target_spec.abs())
    delta_f = np.stack([relative_spectral_error(target_spec[peaks], row_spectrum(image[row][mask[row]], n_freqs)[peaks])
                        .numpy() for image in images])
    errors = (images - target) ** 2
    return RunCurves(saved["steps"], images, target, mask, row, float(saved["init_std"]), peaks.numpy(),
                     target_spec.abs().numpy(), delta_f, errors[:, mask].mean(1), errors[:, ~mask].mean(1))


def summary(name: str, curves: RunCurves) -> str:
    """The numbers of one run: first step with Δ_F < 0.05 per peak, Spearman ρ, final errors."""
    first = fitting_epochs(curves.delta_f, curves.steps, FIT_THRESHOLD)
    rho = frequency_order_correlation(curves.peaks, first)
    best = int(curves.heldout_mse.argmin())
    return "\n".join([
        f"{name} (init std {curves.init_std:g}), steps 0 … {int(curves.steps[-1])}:",
        "  row peaks k:              " + "  ".join(f"{k:>7d}" for k in curves.peaks),
        "  Δ_F at the last step:     " + "  ".join(f"{v:>7.3f}" for v in curves.delta_f[-1]),
        "  first step Δ_F < 0.05:    " + "  ".join(f"{'never' if s is None else s:>7}" for s in first),
        f"  Spearman(k, first step):  {rho:.2f}",
        f"  MSE on training pixels:   {curves.train_mse[-1]:.5f}",
        f"  MSE on held-out pixels:   {curves.heldout_mse[-1]:.5f} (lowest {curves.heldout_mse[best]:.5f} at step "
        f"{int(curves.steps[best])})",
    ])


def draw(runs: dict[str, RunCurves], output: Path) -> None:
    """Write the figure: target + row spectrum on top, then per run Δ_F heatmap, outputs at three steps, errors."""
    first = next(iter(runs.values()))
    fig, axes = plt.subplots(1 + len(runs), 5, figsize=(16, 3.2 * (1 + len(runs))), constrained_layout=True)
    top = axes[0]
    top[0].imshow(first.target, cmap="gray", vmin=0, vmax=1)
    top[0].axhline(first.probe_row, color="red", ls="--", lw=1)
    top[0].set_title("(a) target; probe row dashed")
    top[1].semilogy(np.arange(len(first.target_amplitude)), first.target_amplitude, "k-")
    top[1].semilogy(first.peaks, first.target_amplitude[first.peaks], "ko")
    top[1].set(title="(b) |F[y]| along the row, peaks •", xlabel="frequency index k")
    top[2].imshow(np.where(first.train_mask, first.target, np.nan), cmap="gray", vmin=0, vmax=1)
    top[2].set_title("training pixels (odd columns)")
    for ax, (name, curves) in zip(top[3:], runs.items(), strict=False):
        ax.plot(curves.target[curves.probe_row], "k-", lw=2, label="target")
        ax.plot(curves.images[-1][curves.probe_row], "r.-", lw=1, label=f"output, step {int(curves.steps[-1])}")
        ax.plot(np.flatnonzero(~curves.train_mask[curves.probe_row]),
                curves.images[-1][curves.probe_row][~curves.train_mask[curves.probe_row]], "bo", ms=3,
                label="held-out columns")
        ax.set(title=f"probe row, {name}", xlabel="column j")
        ax.legend(fontsize=7)
    for row, (name, curves) in zip(axes[1:], runs.items(), strict=True):
        _run_row(row, name, curves)
    fig.savefig(output, dpi=60)
    plt.close(fig)


def _run_row(row: np.ndarray, name: str, curves: RunCurves) -> None:
    heat = row[0].imshow(curves.delta_f.T, aspect="auto", origin="lower", cmap="RdBu", vmin=0, vmax=1,
                         interpolation="nearest")
    row[0].set_yticks(range(len(curves.peaks)), [str(k) for k in curves.peaks])
    ticks = np.linspace(0, len(curves.steps) - 1, min(5, len(curves.steps))).round().astype(int)
    row[0].set_xticks(ticks, [str(int(curves.steps[t])) for t in ticks])
    row[0].set(title=f"Δ_F on the row, {name} (std {curves.init_std:g})", xlabel="step", ylabel="peak k")
    plt.colorbar(heat, ax=row[0], fraction=0.05)
    last = len(curves.steps) - 1
    shown = [0, max(1, last // 8), last] if last >= 2 else list(range(last + 1))
    for ax, s in zip(row[1:4], shown, strict=False):
        ax.imshow(curves.images[s], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"output, step {int(curves.steps[s])}")
        ax.set_xticks([])
        ax.set_yticks([])
    row[4].semilogy(curves.steps, curves.train_mse, "b-", label="training pixels")
    row[4].semilogy(curves.steps, curves.heldout_mse, "r-", label="held-out pixels")
    row[4].set(title=f"MSE, {name}", xlabel="step")
    row[4].legend(fontsize=8)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return dict(saved)


def main(argv: list[str] | None = None) -> None:
    """``train CONFIG --curves NPZ``, ``draw SMALL.npz LARGE.npz``, or (no subcommand) both configs and the PNG."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=500, help="snapshot every N training steps (default 500)")
    parser.add_argument("--output", type=Path, default=Path("fig2_image.png"), help="PNG to write")
    if argv and argv[0] == "train":
        parser.add_argument("config", type=Path)
        parser.add_argument("--curves", type=Path, required=True, help="where to save the snapshots (.npz)")
        args, overrides = parser.parse_known_args(argv[1:])
        train(args.config, args.every, overrides, args.curves)
        print(f"wrote {args.curves}")
        return
    if argv and argv[0] == "draw":
        parser.add_argument("small", type=Path)
        parser.add_argument("large", type=Path)
        args = parser.parse_args(argv[1:])
        saved = {"small init": _load(args.small), "large init": _load(args.large)}
    else:
        args, overrides = parser.parse_known_args(argv)
        saved = {f"{size} init": train(CONFIGS / f"fig2_image_{size}_init.yaml", args.every, overrides)
                 for size in ("small", "large")}
    runs = {name: analyse(run) for name, run in saved.items()}
    for name, curves in runs.items():
        print(summary(name, curves))
    draw(runs, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
