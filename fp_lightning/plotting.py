"""Matplotlib figures of the Frequency Principle: Δ_F heatmap, spectra, e_low / e_high heatmaps.

Colours follow the paper's figures: relative errors on a fixed 0–1 scale, red = small (fitted), blue = large.
Figures are built on a non-interactive canvas, so nothing here needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_delta_f_heatmap", "plot_low_high_heatmap", "plot_spectra"]

_ERROR_CMAP = "RdBu"  # 0 → red (converged), 1 → blue (not yet learnt), as in the paper


def _new_axes(ax: Axes | None, figsize: tuple[float, float], bottom: float = 0.16) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    # Fixed margins: a constrained layout cost more than the drawing itself (drawn every epoch).
    fig = Figure(figsize=figsize, dpi=80)
    fig.subplots_adjust(left=0.12, right=0.95, bottom=bottom, top=1 - 0.42 / figsize[1])
    return fig, fig.add_subplot()


def plot_delta_f_heatmap(
    delta_f: np.ndarray, freqs: Sequence[int], epochs: Sequence[int], ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Heatmap of Δ_F, shape (len(freqs), len(epochs)): a row per tracked k (low k at the bottom), a column per epoch.

    Example:
        >>> fig, ax = plot_delta_f_heatmap(np.array([[0.9, 0.2], [1.0, 0.6]]), [2, 7], [0, 1])
        >>> ax.get_ylabel()
        'frequency k'
    """
    values = np.asarray(delta_f, dtype=float)
    fig, ax = _new_axes(ax, (6.0, 3.5))
    if values.shape != (len(freqs), len(epochs)):
        expected = (len(freqs), len(epochs))
        raise ValueError(f"`delta_f` must have shape (len(freqs), len(epochs)) = {expected}, got {values.shape}.")
    image = ax.imshow(values, aspect="auto", origin="lower", cmap=_ERROR_CMAP, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    _label_grid(ax, freqs, epochs)
    ax.set_title("Δ_F(k): red = fitted, blue = not yet")
    fig.colorbar(image, ax=ax, label="Δ_F")
    return fig, ax


def plot_low_high_heatmap(
    e_low: np.ndarray, e_high: np.ndarray, epochs: Sequence[int], delta: float, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Two-row heatmap (e_low, e_high) × epoch for one filter width δ, on the same 0–1 scale as Δ_F.

    Example:
        >>> fig, ax = plot_low_high_heatmap(np.array([0.5, 0.1]), np.array([1.0, 0.9]), [0, 1], delta=2.5)
        >>> ax.get_title()
        'e_low / e_high, δ=2.5'
    """
    values = np.vstack([np.asarray(e_low, float), np.asarray(e_high, float)])
    fig, ax = _new_axes(ax, (6.0, 2.2), bottom=0.3)
    image = ax.imshow(values, aspect="auto", origin="lower", cmap=_ERROR_CMAP, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    ax.set_yticks([0, 1], ["e_low", "e_high"])
    _epoch_ticks(ax, epochs)
    ax.set_title(f"e_low / e_high, δ={delta:g}")
    fig.colorbar(image, ax=ax)
    return fig, ax


def plot_spectra(
    target_amplitude: np.ndarray,
    output_amplitude: np.ndarray | None,
    freqs: Sequence[int],
    ax: Axes | None = None,
    title: str = "|F[y]| and |F[h]| on the first principal direction",
) -> tuple[Figure, Axes]:
    """|F[y](k)| and |F[h](k)| against k, the tracked frequencies marked by black dots (paper Fig. 1a).

    Example:
        >>> fig, ax = plot_spectra(np.array([5.0, 3.0, 4.0, 1.0]), np.array([4.0, 1.0, 1.0, 0.5]), [2])
        >>> len(ax.lines)
        3
    """
    target = np.asarray(target_amplitude, float)
    k = np.arange(target.shape[0])
    fig, ax = _new_axes(ax, (6.0, 3.5))
    ax.plot(k, target, color="tab:red", label="|F[y]| target")
    if output_amplitude is not None:
        ax.plot(k, np.asarray(output_amplitude, float), color="tab:blue", linestyle="--", label="|F[h]| network")
    marked = np.asarray(list(freqs), dtype=int)
    ax.plot(marked, target[marked], "o", color="black", label="tracked k")
    ax.set_yscale("log")  # the mean (k = 0) and the first peak dwarf the rest, as in the paper's log plots
    ax.set_xlabel("frequency k")
    ax.set_ylabel("amplitude (log)")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize="small")
    return fig, ax


def _label_grid(ax: Axes, freqs: Sequence[int], epochs: Sequence[int]) -> None:
    freqs = list(freqs)
    step = max(1, len(freqs) // 12)
    ax.set_yticks(range(0, len(freqs), step), [str(k) for k in freqs[::step]])
    ax.set_ylabel("frequency k")
    _epoch_ticks(ax, epochs)


def _epoch_ticks(ax: Axes, epochs: Sequence[int]) -> None:
    epochs = list(epochs)
    step = max(1, -(-len(epochs) // 6))  # at most 6 labels: five-digit epochs must not overlap in narrow panels
    ax.set_xticks(range(0, len(epochs), step), [str(e) for e in epochs[::step]])
    ax.set_xlabel("epoch")
