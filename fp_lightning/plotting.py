r"""Matplotlib figures of the Frequency Principle: Δ_F heatmap, spectra, e_low / e_high heatmaps.

Colours follow the paper's figures: relative errors on a fixed 0–1 scale, red = small (fitted), blue = large.
Figures are built on a non-interactive canvas (never through ``pyplot``), so nothing here needs a display and a
figure is freed as soon as its last reference goes.

Text sizes are relative (``"medium"``, ``"small"``): the caller fixes the base size with
``matplotlib.rc_context({"font.size": ...})`` around the call, so the same functions serve small logger panels and
the one-page report. Tick labels are thinned to what fits the axes, whatever the number of epochs; the Δ_F heatmap
labels every tracked k up to :data:`MAX_K_LABELS` of them (a logger panel grows taller to fit them).

Symbols are written in matplotlib's mathtext (``r"$\Delta_F$"``, ``r"$e_{\mathrm{low}}$"``), never with a literal
underscore. Epochs follow the history's convention, completed epochs: text says "after 15 epochs" and axes
"epochs completed", so that the recording made after Lightning's ``current_epoch`` 14 is never called "epoch 15".
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

__all__ = ["CHANGE_RATIO_LABELS", "EPOCH_AXIS_LABEL", "GAP_RANGE", "MAX_K_LABELS", "epochs_done", "plot_change_ratios",
           "plot_delta_f_heatmap", "plot_gap_heatmap", "plot_low_high_heatmap", "plot_low_high_heatmaps",
           "plot_spectra", "thinned_ticks"]

_ERROR_CMAP = "RdBu"  # 0 → red (converged), 1 → blue (not yet learnt), as in the paper
# The generalization gap: a diverging map of its own (purple: the held-out probe is fitted worse, white: as well),
# so that it is never read as a Δ_F heatmap.
_GAP_CMAP = "PuOr"
#: The gap heatmap's colour scale is ±GAP_RANGE (larger gaps take the end colour).
GAP_RANGE = 0.5
#: Size of a figure drawn without an ``ax`` (inches at ``_PANEL_DPI``): 360 × 260 px, so that a logger card about
#: 230 px wide shows it at two thirds of its size with its text still readable.
_PANEL_SIZE = (3.6, 2.6)
_PANEL_DPI = 100
#: Legend text of each curve of :func:`plot_change_ratios`, by history field (theory paper Eq. (38), (39), (40)).
CHANGE_RATIO_LABELS = {
    "loss_change_ratio": r"$|\Delta L^{+}_{\eta}|\,/\,|\Delta L|$ (38)",
    "window_change_ratio": "same, window (39)",
    "output_change_ratio": r"$\|\Delta h\|_{k>\eta}\,/\,\|\Delta h\|$ (40)",
}
#: The x axis of every plot against the history's ``epoch`` (completed epochs; 0 = before training).
EPOCH_AXIS_LABEL = "epochs completed"
#: The Δ_F heatmap labels every tracked k up to this many; beyond, every 2nd (5th, …) and its axis label says so.
MAX_K_LABELS = 16
_CHANGE_RATIO_STYLES = (("tab:red", "-", "o"), ("tab:orange", "--", None), ("tab:blue", ":", "s"))
# Ratios are drawn on a log scale from this value up: the F-Principle's fall over η spans several decades.
_RATIO_FLOOR = 1e-4
# Room above the largest ratio (and below the smallest) on the log axis: a factor, about a fifth of a decade.
_RATIO_HEADROOM = 1.6
# Room above the largest amplitude of a log-scale spectrum (a factor: a third of a decade) and of a linear one.
_LOG_HEADROOM, _LINEAR_HEADROOM = 2.0, 1.1
# A labelled row of the Δ_F heatmap needs this many font sizes of height to keep its label clear of its neighbours.
_ROW_PER_FONT = 1.12
# The k labels of the Δ_F heatmap shrink to fit every tracked k, down to this size (points); beyond, they are thinned.
_MIN_K_FONT = 7.5
# Height of a legend row, in font sizes (mathtext with super- and subscripts is taller than plain text), and the
# legend's padding in points.
_LEGEND_ROW_PER_FONT, _LEGEND_PAD_PT = 1.5, 4.0
# A log-scale spectrum is clipped at this fraction of max |F[y]| (the paper's Fig. 3a uses 1e-4 the same way).
_LOG_FLOOR = 1e-4
# Tick labels are at least this many characters apart (a gap of two characters between neighbours).
_TICK_GAP_CHARS = 2.0
# Average advance of a character of the sans-serif tick font, as a fraction of the font size (DejaVu Sans digits).
_CHAR_WIDTH = 0.64


def epochs_done(epoch: int) -> str:
    """How a figure's text names a recording by the history's ``epoch`` (completed epochs; 0 = before training).

    Example:
        >>> epochs_done(0), epochs_done(1), epochs_done(15)
        ('before training', 'after 1 epoch', 'after 15 epochs')
    """
    epoch = int(epoch)
    if epoch == 0:
        return "before training"
    return f"after {epoch} epoch{'' if epoch == 1 else 's'}"


def _new_axes(ax: Axes | None, margins: tuple[float, float, float, float]) -> tuple[Figure, Axes]:
    """``ax``'s figure, or a new panel-sized figure with fixed margins (left, right, bottom, top) in inches.

    Every panel has the same size: TensorBoard fits an image into its card's box, so a taller image would be shown
    smaller, its text with it. Fixed margins, not a constrained layout: the layout engine cost more than the drawing
    itself, and the panels are drawn at every recording.
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
    title: str = r"$\Delta_F(k)$ per tracked $k$",
) -> tuple[Figure, Axes]:
    """Heatmap of Δ_F, shape (len(freqs), len(epochs)): a row per tracked k (low k at the bottom), a column per epoch.

    Colours: Δ_F on a fixed 0–1 scale, red = fitted (Δ_F → 0), blue = not yet (Δ_F ≥ 1), as in the paper's Fig. 1b;
    the colourbar says so. Every tracked k is labelled, up to :data:`MAX_K_LABELS` of them (in a smaller font
    where the rows need it, down to 7.5 pt); with more, or on axes too small for them all, every 2nd (5th, 10th, …)
    and the axis label says which. ``epochs`` are completed epochs (0 = before training).

    Example:
        >>> fig, ax = plot_delta_f_heatmap(np.array([[0.9, 0.2], [1.0, 0.6]]), [2, 7], [0, 1])
        >>> ax.get_ylabel(), [t.get_text() for t in ax.get_yticklabels()]
        ('tracked $k$', ['2', '7'])
    """
    values = np.asarray(delta_f, dtype=float)
    if values.shape != (len(freqs), len(epochs)):
        expected = (len(freqs), len(epochs))
        raise ValueError(f"`delta_f` must have shape (len(freqs), len(epochs)) = {expected}, got {values.shape}.")
    panel = ax is None
    fig, ax = _new_axes(ax, margins=(0.52, 0.52, 0.45, 0.26))
    image = ax.imshow(values, aspect="auto", origin="lower", cmap=_ERROR_CMAP, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    _error_colorbar(fig, ax, image, r"$\Delta_F$ (red = fitted)", panel)  # first: it narrows the axes
    step = _k_ticks(ax, [str(int(k)) for k in freqs])
    ax.set_ylabel("tracked $k$" if step == 1 else f"tracked $k$ (every {_ordinal(step)})")
    _epoch_ticks(ax, epochs)
    ax.set_title(title, fontsize="medium")
    return fig, ax


def plot_gap_heatmap(
    gap: np.ndarray, freqs: Sequence[int], epochs: Sequence[int], ax: Axes | None = None,
    title: str = r"$\Delta_F$ held-out $-$ training",
) -> tuple[Figure, Axes]:
    """Heatmap of the generalization gap, shape (len(freqs), len(epochs)), a row per tracked k.

    The gap is Δ_F on a held-out probe minus Δ_F on the training probe, k by k (both on the training probe's
    projection and frequencies).

    Colours: a diverging scale on ±:data:`GAP_RANGE`, white = no gap, purple = the held-out probe is fitted worse
    (the frequency does not generalize), orange = better; the colourbar says so. Rows and columns as in
    :func:`plot_delta_f_heatmap`.

    Example:
        >>> fig, ax = plot_gap_heatmap(np.array([[0.0, 0.1], [0.2, 0.4]]), [2, 7], [0, 1])
        >>> [t.get_text() for t in ax.get_yticklabels()]
        ['2', '7']
    """
    values = np.asarray(gap, dtype=float)
    if values.shape != (len(freqs), len(epochs)):
        expected = (len(freqs), len(epochs))
        raise ValueError(f"`gap` must have shape (len(freqs), len(epochs)) = {expected}, got {values.shape}.")
    panel = ax is None
    fig, ax = _new_axes(ax, margins=(0.52, 0.64, 0.45, 0.26))  # wider: the ticks have a minus sign
    image = ax.imshow(values, aspect="auto", origin="lower", cmap=_GAP_CMAP, vmin=-GAP_RANGE, vmax=GAP_RANGE,
                      interpolation="nearest")
    _error_colorbar(fig, ax, image, "purple = worse", panel, ticks=(-GAP_RANGE, 0.0, GAP_RANGE))
    step = _k_ticks(ax, [str(int(k)) for k in freqs])
    ax.set_ylabel("tracked $k$" if step == 1 else f"tracked $k$ (every {_ordinal(step)})")
    _epoch_ticks(ax, epochs)
    ax.set_title(title, fontsize="medium")
    return fig, ax


def plot_low_high_heatmap(
    e_low: np.ndarray, e_high: np.ndarray, epochs: Sequence[int], delta: float, ax: Axes | None = None,
    title: str | None = None,
) -> tuple[Figure, Axes]:
    r"""Two-row heatmap (e_low, e_high) × epoch for one filter width δ, on the same 0–1 scale as Δ_F.

    ``title`` defaults to ``"filter width $\delta$ = <δ:.3g>"`` (mathtext: an italic δ that cannot be read as a 5);
    pass the δ form of the logged keys for a run whose δ need more digits to stay distinct.

    Example:
        >>> fig, ax = plot_low_high_heatmap(np.array([0.5, 0.1]), np.array([1.0, 0.9]), [0, 1], delta=2.5)
        >>> ax.get_title(), [t.get_text() for t in ax.get_yticklabels()]
        ('filter width $\\delta$ = 2.5', ['$e_{\\mathrm{low}}$', '$e_{\\mathrm{high}}$'])
    """
    values = np.vstack([np.asarray(e_low, float), np.asarray(e_high, float)])
    panel = ax is None
    fig, ax = _new_axes(ax, margins=(0.7, 0.52, 0.48, 0.28))
    image = ax.imshow(values, aspect="auto", origin="lower", cmap=_ERROR_CMAP, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    _error_colorbar(fig, ax, image, "error (red = fitted)", panel)
    # larger than the other tick labels: the subscripts stay legible at a logger card's size
    ax.set_yticks([0, 1], [r"$e_{\mathrm{low}}$", r"$e_{\mathrm{high}}$"], fontsize="large")
    _epoch_ticks(ax, epochs)
    ax.set_title(title if title is not None else rf"filter width $\delta$ = {delta:.3g}", fontsize="medium")
    return fig, ax


def plot_low_high_heatmaps(
    e_low: np.ndarray, e_high: np.ndarray, epochs: Sequence[int], delta_labels: Sequence[str],
    title: str = r"$e_{\mathrm{low}}$, $e_{\mathrm{high}}$ per filter width $\delta$",
    axes: tuple[Axes, Axes] | None = None,
) -> tuple[Figure, tuple[Axes, Axes]]:
    r"""Every filter width in one panel: e_low (top) and e_high (bottom), a row per δ, a column per recording.

    ``e_low`` and ``e_high`` have shape (len(delta_labels), len(epochs)); the smallest δ is the bottom row of each
    heatmap. Colours as in :func:`plot_delta_f_heatmap` (0–1, red = fitted), one colourbar for both. Without
    ``axes``, a new panel-sized figure whose title is the figure's (``Figure.get_suptitle``) and whose first axes
    is the e_high one, which carries the epoch ticks; with ``axes`` (upper, lower) of a caller's figure, the title
    goes on the upper one. One figure instead of one per δ: a logger's panels are drawn at every recording, and
    each figure (each axes of the report) costs its own text layout. Returns the (e_low, e_high) axes.

    Example:
        >>> fig, (low, high) = plot_low_high_heatmaps(np.array([[0.5, 0.1], [0.9, 0.4]]),
        ...                                           np.array([[1.0, 0.9], [1.0, 1.0]]), [0, 1], ["0.1", "1"])
        >>> low.get_ylabel(), [t.get_text() for t in high.get_yticklabels()], high.get_xlabel()
        ('$e_{\\mathrm{low}}$', ['0.1', '1'], 'epochs completed')
    """
    low, high = np.asarray(e_low, float), np.asarray(e_high, float)
    expected = (len(delta_labels), len(epochs))
    for name, values in (("e_low", low), ("e_high", high)):
        if values.shape != expected:
            raise ValueError(f"`{name}` must have shape (len(delta_labels), len(epochs)) = {expected}, "
                             f"got {values.shape}.")
    if axes is None:
        fig, (top, bottom), left_in = _low_high_panel(delta_labels)
    else:
        (top, bottom), fig = axes, axes[0].figure
    for ax, values in ((top, low), (bottom, high)):
        image = ax.imshow(values, aspect="auto", origin="lower", cmap=_ERROR_CMAP, vmin=0.0, vmax=1.0,
                          interpolation="nearest")
    room = {"fraction": 0.06, "pad": 0.03} if axes is None else {"fraction": 0.05, "pad": 0.02}
    colorbar = fig.colorbar(image, ax=[top, bottom], ticks=[0.0, 0.5, 1.0], **room)
    colorbar.set_label("error (red = fitted)")  # first: it narrows the axes that the ticks are fitted to
    _epoch_ticks(bottom, epochs)
    top.tick_params(labelbottom=False)
    for ax, name in ((top, r"$e_{\mathrm{low}}$"), (bottom, r"$e_{\mathrm{high}}$")):
        _k_ticks(ax, list(delta_labels))  # each δ row labelled while they fit, else every 2nd (5th, …)
        ax.set_ylabel(name, fontsize="large")  # the rows are δ, as the title says
    if axes is None:
        width, height = _PANEL_SIZE
        fig.suptitle(title, fontsize=rcParams["axes.titlesize"], x=(left_in / width + 1 - 0.52 / width) / 2,
                     y=1 - 0.04 / height, va="top")
    else:
        top.set_title(title, fontsize="medium")
    return fig, (top, bottom)


def _low_high_panel(delta_labels: Sequence[str]) -> tuple[Figure, tuple[Axes, Axes], float]:
    """A panel-sized figure with the two stacked axes of :func:`plot_low_high_heatmaps`, and its left margin."""
    width, height = _PANEL_SIZE
    fig = Figure(figsize=_PANEL_SIZE, dpi=_PANEL_DPI)
    # room on the left for the longest δ label ("1.23e+03") and the axis label
    size_pt = FontProperties(size=rcParams["ytick.labelsize"]).get_size_in_points()
    longest = max((len(label) for label in delta_labels), default=1)
    left_in = 0.34 + (longest + 0.5) * _CHAR_WIDTH * size_pt / 72
    grid = fig.add_gridspec(2, 1, left=left_in / width, right=1 - 0.52 / width, bottom=0.45 / height,
                            top=1 - 0.26 / height, hspace=0.1)
    bottom = fig.add_subplot(grid[1])  # first: the figure's main axes, with the epoch ticks
    top = fig.add_subplot(grid[0], sharex=bottom)
    return fig, (top, bottom), left_in


def plot_spectra(
    target_amplitude: np.ndarray,
    output_amplitude: np.ndarray | None,
    freqs: Sequence[int],
    ax: Axes | None = None,
    title: str = "|F[y]| and |F[h]| on the first principal direction",
    cutoff: int | None = None,
    ymax: float | None = None,
) -> tuple[Figure, Axes]:
    """|F[y](k)| and |F[h](k)| against k, the tracked frequencies marked by black dots (paper Fig. 1a).

    Colours: red solid = target |F[y]|, blue dashed = network |F[h]|, black dots = tracked k (in the legend);
    ``cutoff``: the η of the loss split as a grey dotted line between k = η and η + 1 (in the legend).

    The y range depends on the target only (it does not change during training), so that the figures of successive
    recordings share it: up to ``max(2 · max |F[y]|, ymax)`` on a log scale, used when every |F[y](k)| > 0, down to
    the power of ten a decade or more under the smallest |F[y](k)| but not under 1e-4 · max |F[y]| (the paper's
    Fig. 3a clips the same way),
    with short tick labels (``0.1``, ``1e−05``); ``0`` to ``1.1 · max(max |F[y]|, ymax)`` on a linear scale. Pass
    as ``ymax`` the largest |F[h]| over a run's recordings so far, so that an output above the target stays inside.

    Example:
        >>> fig, ax = plot_spectra(np.array([5.0, 3.0, 4.0, 1.0]), np.array([4.0, 1.0, 1.0, 0.5]), [2])
        >>> len(ax.lines), [t.get_text() for t in ax.get_legend().get_texts()]
        (3, ['target |F[y]|', 'network |F[h]|', 'tracked k'])
        >>> ax.get_ylabel(), [float(limit) for limit in ax.get_ylim()]
        ('|F[y]|, |F[h]|', [0.1, 10.0])
    """
    target = np.asarray(target_amplitude, float)
    k = np.arange(target.shape[0])
    fig, ax = _new_axes(ax, margins=(0.78, 0.1, 0.48, 0.28))
    ax.plot(k, target, color="tab:red", label="target |F[y]|")
    if output_amplitude is not None:
        ax.plot(k, np.asarray(output_amplitude, float), color="tab:blue", linestyle="--", label="network |F[h]|")
    marked = np.asarray(list(freqs), dtype=int)
    ax.plot(marked, target[marked], "o", color="black", markersize=4, label="tracked k")
    if cutoff is not None:
        ax.axvline(int(cutoff) + 0.5, color="gray", linestyle=":", linewidth=1.3, label=rf"cutoff $\eta$ = {cutoff}")
    finite = target[np.isfinite(target)]
    top = max(float(finite.max()) if finite.size else 1.0, float(ymax) if ymax is not None else 0.0)
    if finite.size and np.all(target > 0):
        ax.set_yscale("log")  # the mean (k = 0) and the first peak dwarf the rest, as in the paper's log plots
        # "2×10⁰"-style labels are too wide for a narrow panel; LogFormatter also thins the minor labels
        ax.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        # an untrained network's |F[h]| ≈ 0 would stretch the axis over many decades and squash |F[y]|
        decade_under = 10.0 ** math.floor(math.log10(float(finite.min()) / 10))  # a labelled tick at the bottom
        bottom = max(decade_under, float(finite.max()) * _LOG_FLOOR)
        ax.set_ylim(bottom, max(top, float(finite.max()) * _LOG_HEADROOM))
    elif top > 0:
        ax.set_ylim(0.0, top * _LINEAR_HEADROOM)
    ax.set_xlabel("frequency k")
    ax.set_ylabel("|F[y]|, |F[h]|")
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


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _epoch_ticks(ax: Axes, epochs: Sequence[int]) -> None:
    _index_ticks(ax, "x", [str(int(e)) for e in epochs])
    ax.set_xlabel(EPOCH_AXIS_LABEL)


def _k_ticks(ax: Axes, labels: list[str]) -> int:
    """Label the heatmap's rows with ``labels``; returns the step between labelled rows (1: all labelled).

    All of them up to ``MAX_K_LABELS``, in a font small enough to keep neighbours apart (not under ``_MIN_K_FONT``),
    else every 2nd, 5th, ….
    """
    base = FontProperties(size=rcParams["ytick.labelsize"]).get_size_in_points()
    row_pt = ax.get_position().height * ax.figure.get_figheight() * 72 / max(len(labels), 1)
    max_labels = MAX_K_LABELS
    while True:
        positions = thinned_ticks(len(labels), max_labels)
        step = positions[1] - positions[0] if len(positions) > 1 else 1
        size = min(base, step * row_pt / _ROW_PER_FONT)
        if size >= _MIN_K_FONT or len(positions) <= 1:
            break
        max_labels = len(positions) - 1
    ax.set_yticks(positions, [labels[p] for p in positions], fontsize=size)
    return step


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


def _error_colorbar(fig: Figure, ax: Axes, image: object, label: str, panel: bool,
                    ticks: Sequence[float] = (0.0, 0.5, 1.0)) -> None:
    # a small panel gives the bar a thin slice; in a caller's own layout the bar takes matplotlib's default room
    room = {"fraction": 0.06, "pad": 0.03} if panel else {}
    colorbar = fig.colorbar(image, ax=ax, ticks=list(ticks), **room)
    colorbar.set_label(label)


def plot_change_ratios(
    ratios: Mapping[str, Sequence[float] | np.ndarray],
    ax: Axes | None = None,
    title: str = r"How the change splits over the cutoff $\eta$",
    cutoff: int | None = None,
) -> tuple[Figure, Axes]:
    r"""Change ratios against the cutoff η = 0 … K − 2, one curve each (theory paper Fig. 1b/d, upper and middle rows).

    Convention: :mod:`fp_lightning.functional.theory`. Colours, in the order of ``ratios``: red solid with dots,
    orange dashed, blue dotted with squares; the legend names each curve (history fields get
    :data:`CHANGE_RATIO_LABELS`). ``cutoff``: the η of the monitor's loss split (``fp/loss_low``, ``fp/loss_high``)
    as a grey dotted line, named in the legend.

    Log scale, its range fitted to the finite values of the curves drawn (NaN and ±inf are ignored), with room above
    the largest and below the smallest and 1 always inside: a loss ratio may exceed 1 where the parts above and below
    η change in opposite directions. Values under 1e-4 sit on that floor. A figure drawn here (no ``ax``) has its
    legend in two columns under the axes, where it hides no curve. A curve that is all NaN (the first
    recording has no earlier one) is left out, and an empty plot says so.

    Example:
        >>> ratios = {"loss_change_ratio": [0.9, 4.6, 0.01], "output_change_ratio": [0.8, 0.1, float("nan")]}
        >>> fig, ax = plot_change_ratios(ratios, cutoff=1)
        >>> print(*(t.get_text() for t in ax.get_legend().get_texts()), sep="\n")
        $|\Delta L^{+}_{\eta}|\,/\,|\Delta L|$ (38)
        $\|\Delta h\|_{k>\eta}\,/\,\|\Delta h\|$ (40)
        loss split at $\eta$ = 1
        >>> bool(ax.get_ylim()[1] > 4.6)
        True
    """
    panel = ax is None
    legend_in = 0.0
    if panel:  # room under the axes for the legend in two columns, where it hides no curve
        rows = math.ceil((len(ratios) + (cutoff is not None)) / 2)
        legend_in = (rows * _LEGEND_ROW_PER_FONT * FontProperties(size="small").get_size_in_points()
                     + _LEGEND_PAD_PT) / 72
    fig, ax = _new_axes(ax, margins=(0.62, 0.1, 0.48 + legend_in, 0.28))
    drawn: list[np.ndarray] = []
    for (key, values), (colour, line, marker) in zip(ratios.items(), _CHANGE_RATIO_STYLES * 2):
        curve = np.asarray(values, dtype=float)
        if not np.isfinite(curve).any():
            continue
        eta = np.arange(curve.shape[0])
        shown = np.where(np.isfinite(curve), np.clip(curve, _RATIO_FLOOR, None), np.nan)
        ax.plot(eta, shown, color=colour, linestyle=line, marker=marker, markersize=3, linewidth=1.3,
                label=CHANGE_RATIO_LABELS.get(key, key))
        drawn.append(shown[np.isfinite(shown)])
    if cutoff is not None:
        ax.axvline(int(cutoff), color="gray", linestyle=":", linewidth=1.3, label=rf"loss split at $\eta$ = {cutoff}")
    ax.set_yscale("log")
    ax.set_ylim(*_ratio_limits(drawn))
    ax.set_xlabel(r"cutoff $\eta$")
    if not panel:
        ax.set_ylabel(r"ratio (high part, $k > \eta$)")
    ax.set_title(title, fontsize="medium")
    if drawn and panel:
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 0.0), bbox_transform=fig.transFigure, ncols=2,
                  fontsize="small", handlelength=1.6, borderpad=0.2, labelspacing=0.25, columnspacing=1.0,
                  frameon=False)
    elif drawn:
        ax.legend(loc="best", fontsize="small", handlelength=1.8, borderpad=0.3, labelspacing=0.2, framealpha=0.8)
    else:
        ax.text(0.5, 0.5, "needs two recordings", transform=ax.transAxes, ha="center", va="center",
                fontsize="small", color="gray")
    return fig, ax


def _ratio_limits(curves: Sequence[np.ndarray]) -> tuple[float, float]:
    """Log-scale y limits around the finite, floored values of ``curves``, 1 always inside."""
    values = np.concatenate([*curves, [1.0]])
    return max(float(values.min()) / _RATIO_HEADROOM, _RATIO_FLOOR * 0.8), float(values.max()) * _RATIO_HEADROOM
