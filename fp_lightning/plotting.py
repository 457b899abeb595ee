"""Matplotlib figures of the Frequency Principle: Δ_F heatmap, spectra, e_low / e_high heatmaps.

Colours follow the paper's figures: relative errors on a fixed 0–1 scale, red = small (fitted), blue = large.
Figures are built on a non-interactive canvas (never through ``pyplot``), so nothing here needs a display and a
figure is freed as soon as its last reference goes.

Text sizes are relative (``"medium"``, ``"small"``): the caller fixes the base size with
``matplotlib.rc_context({"font.size": ...})`` around the call, so the same functions serve small logger panels and
the one-page report. Tick labels are thinned to what fits the axes, whatever the number of epochs or frequencies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import LogFormatter

__all__ = ["CHANGE_RATIO_LABELS", "plot_change_ratios", "plot_delta_f_heatmap", "plot_low_high_heatmap", "plot_spectra",
           "thinned_ticks"]

_ERROR_CMAP = "RdBu"  # 0 → red (converged), 1 → blue (not yet learnt), as in the paper
#: Size of a figure drawn without an ``ax`` (inches at ``_PANEL_DPI``): 360 × 260 px, so that a logger card about
#: 230 px wide shows it at two thirds of its size with its text still readable.
_PANEL_SIZE = (3.6, 2.6)
_PANEL_DPI = 100
#: Legend text of each curve of :func:`plot_change_ratios`, by history field (theory paper Eq. (38), (39), (40)).
CHANGE_RATIO_LABELS = {
    "loss_change_ratio": "|ΔL⁺_η| / |ΔL|, last step (38)",
    "window_change_ratio": "same, window average (39)",
    "output_change_ratio": "‖Δĥ‖ k>η / ‖Δĥ‖ (40)",
}
_CHANGE_RATIO_STYLES = (("tab:red", "-", "o"), ("tab:orange", "--", None), ("tab:blue", ":", "s"))
# Ratios are drawn on a log scale from this value up: the F-Principle's fall over η spans several decades.
_RATIO_FLOOR = 1e-4
# A log-scale spectrum is clipped at this fraction of max |F[y]| (the paper's Fig. 3a uses 1e-4 the same way).
_LOG_FLOOR = 1e-4
# Tick labels are at least this many characters apart (a gap of two characters between neighbours).
_TICK_GAP_CHARS = 2.0
# Average advance of a character of the sans-serif tick font, as a fraction of the font size (DejaVu Sans digits).
_CHAR_WIDTH = 0.64


def _new_axes(ax: Axes | None, margins: tuple[float, float, float, float]) -> tuple[Figure, Axes]:
    """``ax``'s figure, or a new panel-sized figure with fixed margins (left, right, bottom, top) in inches.

    Fixed margins, not a constrained layout: the layout engine cost more than the drawing itself, and the panels
    are drawn at every recording.
    """
    if ax is not None:
        return ax.figure, ax
    width, height = _PANEL_SIZE
    fig = Figure(figsize=_PANEL_SIZE, dpi=_PANEL_DPI)
    left, right, bottom, top = margins
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height)
    return fig, fig.add_subplot()


def plot_delta_f_heatmap(
    delta_f: np.ndarray, freqs: Sequence[int], epochs: Sequence[int], ax: Axes | None = None,
    title: str = "Δ_F(k) per tracked k",
) -> tuple[Figure, Axes]:
    """Heatmap of Δ_F, shape (len(freqs), len(epochs)): a row per tracked k (low k at the bottom), a column per epoch.

    Colours: Δ_F on a fixed 0–1 scale, red = fitted (Δ_F → 0), blue = not yet (Δ_F ≥ 1), as in the paper's Fig. 1b;
    the colourbar says so.

    Example:
        >>> fig, ax = plot_delta_f_heatmap(np.array([[0.9, 0.2], [1.0, 0.6]]), [2, 7], [0, 1])
        >>> ax.get_ylabel(), [t.get_text() for t in ax.get_yticklabels()]
        ('k', ['2', '7'])
    """
    values = np.asarray(delta_f, dtype=float)
    if values.shape != (len(freqs), len(epochs)):
        expected = (len(freqs), len(epochs))
        raise ValueError(f"`delta_f` must have shape (len(freqs), len(epochs)) = {expected}, got {values.shape}.")
    panel = ax is None
    fig, ax = _new_axes(ax, margins=(0.52, 0.52, 0.48, 0.28))
    image = ax.imshow(values, aspect="auto", origin="lower", cmap=_ERROR_CMAP, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    _error_colorbar(fig, ax, image, "Δ_F (red = fitted)", panel)  # first: it narrows the axes the ticks must fit
    _index_ticks(ax, "y", [str(int(k)) for k in freqs])
    ax.set_ylabel("k")
    _epoch_ticks(ax, epochs)
    ax.set_title(title, fontsize="medium")
    return fig, ax


def plot_low_high_heatmap(
    e_low: np.ndarray, e_high: np.ndarray, epochs: Sequence[int], delta: float, ax: Axes | None = None,
    title: str | None = None,
) -> tuple[Figure, Axes]:
    """Two-row heatmap (e_low, e_high) × epoch for one filter width δ, on the same 0–1 scale as Δ_F.

    ``title`` defaults to ``"e_low / e_high, δ=<δ:.3g>"``; pass the δ form of the logged keys for a run whose δ
    need more digits to stay distinct.

    Example:
        >>> fig, ax = plot_low_high_heatmap(np.array([0.5, 0.1]), np.array([1.0, 0.9]), [0, 1], delta=2.5)
        >>> ax.get_title()
        'e_low / e_high, δ=2.5'
    """
    values = np.vstack([np.asarray(e_low, float), np.asarray(e_high, float)])
    panel = ax is None
    fig, ax = _new_axes(ax, margins=(0.7, 0.52, 0.48, 0.28))
    image = ax.imshow(values, aspect="auto", origin="lower", cmap=_ERROR_CMAP, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    _error_colorbar(fig, ax, image, "error (red = fitted)", panel)
    ax.set_yticks([0, 1], ["e_low", "e_high"])
    _epoch_ticks(ax, epochs)
    ax.set_title(title if title is not None else f"e_low / e_high, δ={delta:.3g}", fontsize="medium")
    return fig, ax


def plot_spectra(
    target_amplitude: np.ndarray,
    output_amplitude: np.ndarray | None,
    freqs: Sequence[int],
    ax: Axes | None = None,
    title: str = "|F[y]| and |F[h]| on the first principal direction",
) -> tuple[Figure, Axes]:
    """|F[y](k)| and |F[h](k)| against k, the tracked frequencies marked by black dots (paper Fig. 1a).

    Colours: red solid = target |F[y]|, blue dashed = network |F[h]|, black dots = tracked k (in the legend).
    Log scale when every |F[y](k)| > 0, clipped at 1e-4 · max |F[y]|, with short tick labels (``0.1``,
    ``1e−05``); a figure drawn here (no ``ax``) leaves the axis name to the title and legend, so the labels keep
    the narrow panel's left margin.

    Example:
        >>> fig, ax = plot_spectra(np.array([5.0, 3.0, 4.0, 1.0]), np.array([4.0, 1.0, 1.0, 0.5]), [2])
        >>> len(ax.lines), [t.get_text() for t in ax.get_legend().get_texts()]
        (3, ['target |F[y]|', 'network |F[h]|', 'tracked k'])
    """
    target = np.asarray(target_amplitude, float)
    k = np.arange(target.shape[0])
    panel = ax is None
    fig, ax = _new_axes(ax, margins=(0.62, 0.1, 0.48, 0.28))
    ax.plot(k, target, color="tab:red", label="target |F[y]|")
    if output_amplitude is not None:
        ax.plot(k, np.asarray(output_amplitude, float), color="tab:blue", linestyle="--", label="network |F[h]|")
    marked = np.asarray(list(freqs), dtype=int)
    ax.plot(marked, target[marked], "o", color="black", markersize=4, label="tracked k")
    if np.all(target > 0):
        ax.set_yscale("log")  # the mean (k = 0) and the first peak dwarf the rest, as in the paper's log plots
        # "2×10⁰"-style labels are too wide for a narrow panel; LogFormatter also thins the minor labels
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        # an untrained network's |F[h]| ≈ 0 would stretch the axis over many decades and squash |F[y]|
        ax.set_ylim(bottom=max(ax.get_ylim()[0], float(target.max()) * _LOG_FLOOR))
    ax.set_xlabel("frequency k")
    if not panel:
        ax.set_ylabel("|F|")
    ax.set_title(title, fontsize="medium")
    ax.legend(loc="upper right", fontsize="small", handlelength=1.5, borderpad=0.3, labelspacing=0.2,
              framealpha=0.8)
    return fig, ax


def thinned_ticks(n: int, max_labels: int) -> list[int]:
    """Positions 0, s, 2s, … < n of at most ``max_labels`` tick labels, s the smallest of 1, 2, 5, 10, 20, 25, 50, ….

    Example:
        >>> thinned_ticks(5, 6), thinned_ticks(31, 4), thinned_ticks(81, 4)
        ([0, 1, 2, 3, 4], [0, 10, 20, 30], [0, 25, 50, 75])
    """
    if n <= 0:
        return []
    max_labels = max(1, max_labels)
    step = 1
    while math.ceil(n / step) > max_labels:
        step = _next_round_step(step)
    return list(range(0, n, step))


def _next_round_step(step: int) -> int:
    magnitude = 10 ** int(math.log10(step))
    # 2.5 only from 10 up: steps stay whole numbers of rows or columns
    factors = (2, 2.5, 5, 10) if magnitude >= 10 else (2, 5, 10)
    return next(int(f * magnitude) for f in factors if f * magnitude > step)


def _epoch_ticks(ax: Axes, epochs: Sequence[int]) -> None:
    _index_ticks(ax, "x", [str(int(e)) for e in epochs])
    ax.set_xlabel("epoch")


def _index_ticks(ax: Axes, axis: str, labels: list[str]) -> None:
    """Label image rows or columns 0..n−1 with ``labels``, thinned so that neighbouring labels never overlap."""
    size_pt = FontProperties(size=rcParams[f"{axis}tick.labelsize"]).get_size_in_points()
    fig = ax.figure
    box = ax.get_position()
    if axis == "x":
        room_pt = box.width * fig.get_figwidth() * 72
        longest = max((len(label) for label in labels), default=1)
        per_label_pt = (longest + _TICK_GAP_CHARS) * _CHAR_WIDTH * size_pt
    else:
        room_pt = box.height * fig.get_figheight() * 72
        per_label_pt = 1.6 * size_pt  # a line of text plus a gap
    positions = thinned_ticks(len(labels), int(room_pt // per_label_pt))
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    setter(positions, [labels[p] for p in positions])


def _error_colorbar(fig: Figure, ax: Axes, image: object, label: str, panel: bool) -> None:
    # a small panel gives the bar a thin slice; in a caller's own layout the bar takes matplotlib's default room
    room = {"fraction": 0.06, "pad": 0.03} if panel else {}
    colorbar = fig.colorbar(image, ax=ax, ticks=[0.0, 0.5, 1.0], **room)
    colorbar.set_label(label)


def plot_change_ratios(
    ratios: Mapping[str, Sequence[float] | np.ndarray],
    ax: Axes | None = None,
    title: str = "How the change splits over the cutoff η",
) -> tuple[Figure, Axes]:
    """Change ratios against the cutoff η = 0 … K − 2, one curve each (theory paper Fig. 1b/d, upper and middle rows).

    Convention: :mod:`fp_lightning.functional.theory`. Colours, in the order of ``ratios``: red solid with dots,
    orange dashed, blue dotted with squares; the legend names each curve (history fields get
    :data:`CHANGE_RATIO_LABELS`). Log scale from 1e-4 (smaller values sit on the floor); a curve that is all NaN
    (the first recording has no earlier one) is left out, and an empty plot says so.

    Example:
        >>> ratios = {"loss_change_ratio": [0.9, 0.2, 0.01], "output_change_ratio": [0.8, 0.1, 0.0]}
        >>> fig, ax = plot_change_ratios(ratios)
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['|ΔL⁺_η| / |ΔL|, last step (38)', '‖Δĥ‖ k>η / ‖Δĥ‖ (40)']
    """
    panel = ax is None
    fig, ax = _new_axes(ax, margins=(0.62, 0.1, 0.48, 0.28))
    drawn = 0
    for (key, values), (colour, line, marker) in zip(ratios.items(), _CHANGE_RATIO_STYLES * 2):
        curve = np.asarray(values, dtype=float)
        if not np.isfinite(curve).any():
            continue
        eta = np.arange(curve.shape[0])
        ax.plot(eta, np.clip(curve, _RATIO_FLOOR, None), color=colour, linestyle=line, marker=marker,
                markersize=3, linewidth=1.3, label=CHANGE_RATIO_LABELS.get(key, key))
        drawn += 1
    ax.set_yscale("log")
    ax.set_ylim(_RATIO_FLOOR * 0.8, 2.0)
    ax.set_xlabel("cutoff η")
    if not panel:
        ax.set_ylabel("ratio (high part, k > η)")
    ax.set_title(title, fontsize="medium")
    if drawn:
        ax.legend(loc="lower left", fontsize="small", handlelength=1.8, borderpad=0.3, labelspacing=0.2,
                  framealpha=0.8)
    else:
        ax.text(0.5, 0.5, "needs two recordings", transform=ax.transAxes, ha="center", va="center",
                fontsize="small", color="gray")
    return fig, ax
