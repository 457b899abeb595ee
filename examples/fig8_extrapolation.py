"""The paper's Fig. 8: outside its training range a trained network's output stays flat (low frequency).

One command trains the network of ``examples/configs/fig8_extrapolation.yaml`` (sin x on 600 evenly spaced points in
[−10, 10]) through LightningCLI and draws its output on a range three times as wide::

    python examples/fig8_extrapolation.py --output fig8_extrapolation.png
    python examples/fig8_extrapolation.py --checkpoint fp_runs/fig8_extrapolation/version_0/checkpoints/*.ckpt

(the second form skips training and draws a checkpoint written by ``fp-lightning fit --config ...``).

The number: the output's **total variation per unit length**, TV/L = Σ_i |h(x_{i+1}) − h(x_i)| / (b − a) on a fine
grid, outside the training range ([−30, −10] ∪ [10, 30]) divided by the same inside ([−10, 10]). sin x has
TV/L ≈ 2/π ≈ 0.64 on any long interval; a network that kept oscillating outside would give a ratio near 1, a flat
one near 0. Also printed: the number of local extrema of the output outside the training range (sin x has one every
π, about 13 on [−30, −10] ∪ [10, 30]; a flat, monotone extrapolation has none).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from fp_lightning.models import TanhMLP1D

CONFIG = Path(__file__).parent / "configs" / "fig8_extrapolation.yaml"


def total_variation_per_length(x: np.ndarray, h: np.ndarray) -> float:
    """Σ |h(x_{i+1}) − h(x_i)| / (x_last − x_first) for sorted x: the mean |slope| of the piecewise-linear h."""
    return float(np.abs(np.diff(h)).sum() / (x[-1] - x[0]))


def local_extrema(h: np.ndarray) -> int:
    """Number of local extrema of the sampled h: sign changes of its successive differences (flat steps skipped)."""
    slopes = np.sign(np.diff(h))
    slopes = slopes[slopes != 0]
    return int(np.count_nonzero(slopes[1:] != slopes[:-1]))


def train_from_config(config: Path) -> TanhMLP1D:
    """Train the config's model on its data with LightningCLI (no subcommand run), return the trained model."""
    from lightning.pytorch.cli import LightningCLI

    cli = LightningCLI(args=["--config", str(config)], run=False, save_config_kwargs={"overwrite": True})
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli.model


def main() -> None:
    """Train (or load) the network, print the flatness numbers and write the PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG, help="training config (default: the Fig. 8 one)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="draw this checkpoint instead of training")
    parser.add_argument("--output", type=Path, default=Path("fig8_extrapolation.png"), help="PNG to write")
    parser.add_argument("--train-range", type=float, nargs=2, default=(-10.0, 10.0), metavar=("LOW", "HIGH"))
    parser.add_argument("--factor", type=float, default=3.0, help="draw on a range this many times as wide")
    args = parser.parse_args()
    if args.checkpoint is not None:
        model = TanhMLP1D.load_from_checkpoint(args.checkpoint, map_location="cpu")
    else:
        model = train_from_config(args.config)
    low, high = args.train_range
    centre, half = (low + high) / 2, (high - low) / 2 * args.factor
    x = np.linspace(centre - half, centre + half, 6001)
    model.eval()
    with torch.no_grad():
        h = model(torch.as_tensor(x, dtype=torch.float32).unsqueeze(1)).squeeze(1).double().numpy()
    inside = (x >= low) & (x <= high)
    left, right = x < low, x > high
    tv_in = total_variation_per_length(x[inside], h[inside])
    tv_out = (total_variation_per_length(x[left], h[left]) * (low - x[0])
              + total_variation_per_length(x[right], h[right]) * (x[-1] - high)) / ((low - x[0]) + (x[-1] - high))
    extrema = local_extrema(h[left]) + local_extrema(h[right])
    sin_tv = total_variation_per_length(x[inside], np.sin(x[inside]))
    print(f"total variation per unit length: inside [{low:g}, {high:g}] {tv_in:.3f} (sin x: {sin_tv:.3f}), "
          f"outside {tv_out:.3f}; ratio outside / inside {tv_out / tv_in:.3f}")
    print(f"local extrema outside the training range: {extrema} (sin x: "
          f"{local_extrema(np.sin(x[left])) + local_extrema(np.sin(x[right]))}); inside: {local_extrema(h[inside])}")

    fig, ax = plt.subplots(figsize=(8, 3.2), constrained_layout=True)
    x_train = np.linspace(low, high, 600)
    ax.plot(x_train, np.sin(x_train), "k.", ms=2, label="training data (600 points, sin x)")
    ax.plot(x, h, "b-", lw=1.5, label="network output after training")
    ax.plot(x, np.sin(x), color="0.6", lw=0.8, ls=":", label="sin x (not trained outside)")
    ax.axvspan(low, high, color="0.9", zorder=0)
    ax.set(xlabel="x", title=f"Fig. 8: output outside [{low:g}, {high:g}] stays flat; TV/length outside / inside = "
                             f"{tv_out / tv_in:.2f}")
    ax.legend(fontsize=8, loc="lower left")
    fig.savefig(args.output, dpi=80)
    plt.close(fig)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
