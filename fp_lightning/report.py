"""One-page PNG report of a monitored run, drawn from its saved ``fp_history.npz`` (no retraining).

The page has four panels, all read from the history file a :class:`~fp_lightning.FrequencyPrincipleMonitor` writes
next to its logs:

1. |F[y](k)| and |F[h](k)| on the first principal direction at the last recording, the tracked k marked
   and the cutoff η of the loss split drawn as a dotted line;
2. the Δ_F(k) heatmap, tracked frequency × epoch (red = fitted, blue = not yet; the paper's Fig. 1b);
3. e_low / e_high per filter width δ over the epochs, on the same colour scale;
4. the loss split L_low / L_high at η (log scale) and the low-frequency share of the recent loss decrease;
5. the theory paper's change ratios against every cutoff η, averaged over each stage of training (Fig. 1b/d);
6. the intermediate-stage ratio at η against the length |T₂ − T₁| of the window (Eq. (44), Fig. 1c).

Panels 5 and 6 need a history that holds ``loss_density``; an older history leaves them with a note. Epochs are
the history's completed epochs (0 = before training): the text says "after 15 epochs", the axes "epochs completed".

``write_report`` is what ``fp-lightning report RUN_DIR`` and the end of ``fp-lightning demo`` call.

A held-out monitor (``FrequencyPrincipleMonitor(name="val", probe_dataloader=..., spectral=train_monitor)``) names
the training probe's history in its ``meta``; ``write_generalization`` draws the two side by side
(``fp_val_generalization.png``): Δ_F(k) on each probe over training, their gap, and the first epoch each k falls
below 0.5 on each probe.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fp_lightning.functional.theory import intermediate_stage_ratio, loss_change_ratio
from fp_lightning.plotting import (
    EPOCH_AXIS_LABEL,
    epochs_done,
    plot_change_ratios,
    plot_delta_f_heatmap,
    plot_gap_heatmap,
    plot_low_high_heatmaps,
    plot_spectra,
)
from fp_lightning.record import HISTORY_FILE, delta_keys, load_history, paired_recordings

__all__ = [
    "GENERALIZATION_THRESHOLD",
    "HISTORY_FILE",
    "REPORT_FILE",
    "find_histories",
    "fitting_epochs",
    "frequency_order_correlation",
    "generalization_figure",
    "generalization_file",
    "generalization_summary",
    "history_summary",
    "is_history_file",
    "reference_of",
    "report_figure",
    "report_file",
    "training_stages",
    "write_generalization",
    "write_report",
]

#: File name of the report written next to the history by ``fp-lightning demo`` / ``fp-lightning report``.
REPORT_FILE = "fp_report.png"
#: Δ_F below this counts as "fitted" in the text summary (the paper's red threshold in Fig. 3 is 0.05, its blue
#: threshold 0.2–0.3; 0.1 sits between them).
FIT_THRESHOLD = 0.1
#: Δ_F below this counts as "fitted" in the generalization summary (the first epoch each k falls below it).
GENERALIZATION_THRESHOLD = 0.5
# The top of the Δ_F curves of the generalization page.
_CURVE_TOP = 2.0
# Spectra are drawn on a log scale clipped at this fraction of their maximum (the paper's Fig. 3a replaces its
# exact zeros by 1e-4 for the same reason).
_LOG_FLOOR = 1e-4


def report_file(history_path: str | os.PathLike[str]) -> str:
    """The report's file name for a history: ``fp_report.png``, or ``fp_<name>_report.png`` for a named monitor.

    ``fp_history.npz`` (and any other file name) gives ``fp_report.png``, a named monitor's
    ``fp_<name>_history.npz`` gives ``fp_<name>_report.png``: two monitors of one run keep their own page.

    Example:
        >>> report_file("run/fp_history.npz"), report_file("run/fp_val_history.npz"), report_file("run/mine.npz")
        ('fp_report.png', 'fp_val_report.png', 'fp_report.png')
    """
    name = Path(history_path).name
    if name != HISTORY_FILE and name.startswith("fp_") and name.endswith("_history.npz"):
        return name.removesuffix("_history.npz") + "_report.png"
    return REPORT_FILE


def generalization_file(history_path: str | os.PathLike[str]) -> str:
    """The generalization page's file name: ``fp_val_history.npz`` → ``fp_val_generalization.png``.

    Example:
        >>> generalization_file("run/fp_val_history.npz"), generalization_file("run/heldout.npz")
        ('fp_val_generalization.png', 'heldout_generalization.png')
    """
    stem = Path(history_path).name.removesuffix(".npz").removesuffix("_history")
    return f"{stem}_generalization.png"


def reference_of(history_path: str | os.PathLike[str]) -> Path | None:
    """The history whose frequencies this one shares (its ``meta["reference_history"]``), when it is next to it.

    Example:
        >>> reference_of("/nonexistent/fp_val_history.npz") is None
        True
    """
    history_path = Path(history_path)
    if not history_path.is_file():
        return None
    name = load_history(history_path)["meta"].get("reference_history")
    candidate = history_path.parent / name if name else None
    return candidate if candidate is not None and candidate.is_file() else None


def find_histories(root: str | os.PathLike[str]) -> list[Path]:
    """All monitor histories under ``root`` (searched recursively), sorted; ``root`` may be the file itself.

    A history is a ``HISTORY_FILE`` (``fp_history.npz``) or any other ``.npz`` file that ``is_history_file``
    recognises, so a run whose monitor set ``history_file="mine.npz"`` is found too.

    Example:
        >>> find_histories("/nonexistent")
        []
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(path for path in root.rglob("*.npz") if path.name == HISTORY_FILE or is_history_file(path))


def is_history_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a ``.npz`` file with the arrays of a monitor's history (``delta_f`` and ``meta``).

    Only the archive's list of arrays is read (no array data), and an unreadable file is simply not a history.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> np.savez(folder / "weights.npz", w=np.zeros(3))
        >>> np.savez(folder / "mine.npz", delta_f=np.zeros((1, 2)), meta=np.asarray("{}"))
        >>> is_history_file(folder / "weights.npz"), is_history_file(folder / "mine.npz")
        (False, True)
    """
    try:
        with np.load(path) as data:
            names = set(getattr(data, "files", ()))  # a plain .npy file loads as an array, without names
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # not a NumPy archive, empty or truncated
        return False
    return {"delta_f", "meta"} <= names


def fitting_epochs(delta_f: np.ndarray, epochs: np.ndarray, threshold: float = FIT_THRESHOLD) -> list[int | None]:
    """For each tracked frequency (column of ``delta_f``, shape (epochs, freqs)), the first epoch with Δ_F < threshold.

    ``None`` where Δ_F never went below the threshold.

    Example:
        >>> fitting_epochs(np.array([[1.0, 1.0], [0.05, 0.5], [0.02, 0.08]]), np.array([0, 1, 2]))
        [1, 2]
    """
    below = np.asarray(delta_f, dtype=float) < threshold
    return [int(epochs[np.argmax(column)]) if column.any() else None for column in below.T]


def training_stages(delta_f: np.ndarray, threshold: float = FIT_THRESHOLD) -> dict[str, slice]:
    """The theory paper's three stages of training (§3.3) as slices of the recordings, read from Δ_F.

    Convention:
        *initial*: from the first recording up to the one where the lowest tracked peak first has Δ_F < threshold
        (the paper: "only the relative error of the first peak frequency decreases to a small value");
        *final*: from the first recording where every tracked peak but the highest is fitted ("only peak
        frequencies corresponding to high frequencies have not converged yet"), or the last quarter of the
        recordings when that never happens; *intermediate*: in between (it may be empty). Stages share their
        boundary recording, so that each stage's changes are measured from where the previous one ended.

    Args:
        delta_f: (T, F) Δ_F of the tracked frequencies (low to high) at T recordings.
        threshold: Δ_F below which a peak counts as fitted.

    Example:
        >>> d = np.array([[1, 1, 1], [0.05, 1, 1], [0.02, 0.5, 1], [0.01, 0.05, 1], [0.01, 0.01, 0.5]])
        >>> training_stages(d)
        {'initial': slice(0, 2, None), 'intermediate': slice(1, 4, None), 'final': slice(3, 5, None)}
    """
    fitted = np.asarray(delta_f, dtype=float) < threshold
    n = fitted.shape[0]
    first = int(np.argmax(fitted[:, 0])) if fitted[:, 0].any() else n - 1
    all_but_last = fitted[:, :-1].all(axis=1) if fitted.shape[1] > 1 else fitted[:, 0]
    final = int(np.argmax(all_but_last)) if all_but_last.any() else max(n - max(n // 4, 2), 0)
    final = max(final, first)
    return {"initial": slice(0, first + 1), "intermediate": slice(first, final + 1), "final": slice(final, n)}


def history_summary(history_path: str | os.PathLike[str]) -> str:
    """A few lines of text: Δ_F of every tracked k at the first, second and last recording, and when it was fitted.

    The F-Principle shows as low k reaching Δ_F < 0.2 and < 0.1 at earlier epochs than high k.
    """
    history = load_history(history_path)
    epochs, delta_f, freqs = history["epoch"], history["delta_f"], history["freqs"]
    if len(epochs) == 0:
        return "no recorded epochs"
    columns = [0, 1, len(epochs) - 1] if len(epochs) > 2 else list(range(len(epochs)))
    thresholds = (2 * FIT_THRESHOLD, FIT_THRESHOLD)
    header = "   k " + "".join(f"{f'after {int(epochs[c])} ep':>12}" for c in columns)
    header += "".join(f"   1st epoch <{t:g}" for t in thresholds)
    lines = ["Δ_F(k) = ‖F[y](k) − F[h](k)‖ / ‖F[y](k)‖ at the tracked frequencies (low k first); epochs are",
             "completed (0 = before training; n = after the n-th, whose Lightning current_epoch is n − 1):", header]
    reached = [fitting_epochs(delta_f, epochs, t) for t in thresholds]
    for j, k in enumerate(freqs.tolist()):
        values = "".join(f"  {delta_f[c, j]:>10.3f}" for c in columns)
        firsts = "".join(f"   {'not yet' if r[j] is None else r[j]:>13}" for r in reached)
        lines.append(f"{k:>4} {values}{firsts}")
    rho = frequency_order_correlation(freqs, fitting_epochs(delta_f, epochs, 0.05))
    if np.isnan(rho):  # no frequency (or every one at the same epoch) reached the threshold: no order to rank
        lines.append("Spearman rank correlation between k and the first epoch with Δ_F < 0.05: not defined yet "
                     "(no order among the tracked frequencies; train longer)")
    else:
        lines.append(f"Spearman rank correlation between k and the first epoch with Δ_F < 0.05 (not reached = "
                     f"last): {rho:.2f} (1 = fitted strictly from low to high frequency)")
    return "\n".join(lines)


def frequency_order_correlation(freqs: Sequence[int] | np.ndarray, fit_epochs: Sequence[int | None]) -> float:
    """Spearman rank correlation between the frequencies and the epochs at which they were first fitted.

    Convention:
        Frequencies never fitted (``None``) rank after every fitted one, tied among themselves; ties get their
        average rank; ρ is the Pearson correlation of the two rank vectors (NaN when either is constant).

    Example:
        >>> frequency_order_correlation([1, 4, 12, 20], [100, 900, 1500, None])
        1.0
        >>> frequency_order_correlation([1, 4, 12], [300, 200, 100])
        -1.0
    """
    k = np.asarray(freqs, dtype=float)
    last = max([e for e in fit_epochs if e is not None], default=0) + 1
    when = np.asarray([last if e is None else e for e in fit_epochs], dtype=float)
    rk, rw = _average_ranks(k), _average_ranks(when)
    if rk.std() == 0 or rw.std() == 0:
        return float("nan")
    return float(np.corrcoef(rk, rw)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def generalization_summary(history_path: str | os.PathLike[str], reference_path: str | os.PathLike[str],
                           threshold: float = GENERALIZATION_THRESHOLD) -> str:
    """A few lines of text: per tracked k, Δ_F on both probes, their gap, and when each fell below ``threshold``.

    Δ_F at the last shared recording, and the first global step Δ_F falls below ``threshold`` on each probe.

    ``history_path`` is the held-out probe's history, ``reference_path`` the training probe's whose projection and
    frequencies it shares; only the recordings both made (same epoch and step) are compared.

    Example:
        >>> import tempfile
        >>> from fp_lightning.record import FrequencyHistory
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name, last in (("fp_history.npz", [0.25, 0.75]), ("fp_val_history.npz", [0.375, 1.0])):
        ...     h = FrequencyHistory(freqs=[1, 3], deltas=[0.5], cutoff=1, target_amplitude=[0.0, 2.0, 0.5, 1.0])
        ...     for epoch, values in ((0, [1.0, 1.0]), (1, last)):
        ...         h.append(epoch=epoch, step=5 * epoch, delta_f=values, e_low=[0.8], e_high=[1.0],
        ...                  loss_low=1.0, loss_high=1.0, low_share=float("nan"), output_amplitude=[0.0] * 4)
        ...     _ = h.save(folder / name)
        >>> print(generalization_summary(folder / "fp_val_history.npz", folder / "fp_history.npz").splitlines()[2])
           1      0.250      0.375   +0.125            5              5
    """
    held, train = load_history(history_path), load_history(reference_path)
    paired = paired_recordings(held, train)
    epochs, steps = paired["epoch"], paired["step"]
    if len(epochs) == 0:
        return "no shared recording"
    first_train = fitting_epochs(paired["reference_delta_f"], steps, threshold)
    first_held = fitting_epochs(paired["delta_f"], steps, threshold)
    lines = [f"Δ_F(k) on the training and held-out probes at the last shared recording ({epochs_done(epochs[-1])}, "
             f"step {steps[-1]}), gap = held-out − training, and the first step with Δ_F < {threshold:g}:",
             f"   k {'training':>10} {'held-out':>10} {'gap':>8} {'train <' + format(threshold, 'g'):>12} "
             f"{'held-out <' + format(threshold, 'g'):>14}"]
    for j, k in enumerate(paired["freqs"].tolist()):
        lines.append(f"{k:>4} {paired['reference_delta_f'][-1, j]:>10.3f} {paired['delta_f'][-1, j]:>10.3f} "
                     f"{paired['gap'][-1, j]:>+8.3f} {_when(first_train[j]):>12} {_when(first_held[j]):>14}")
    return "\n".join(lines)


def _when(step: int | None) -> str:
    return "not yet" if step is None else str(step)


def generalization_figure(history_path: str | os.PathLike[str], reference_path: str | os.PathLike[str]) -> Figure:
    """The generalization page: Δ_F(k) on the training and the held-out probe over training, and their gap.

    Panels: (a) the training probe's Δ_F heatmap and (b) the held-out probe's, on the training probe's projection
    and frequencies; (c) the gap Δ_F(held-out) − Δ_F(training), purple where the held-out probe is fitted worse;
    (d) Δ_F per k on both probes (solid: training, dashed: held-out), the 0.5 line dotted.

    Raises:
        FileNotFoundError: a history file does not exist.
        ValueError: the two histories track different frequencies, or share no recording.
    """
    for path in (history_path, reference_path):
        if not Path(path).is_file():
            raise FileNotFoundError(f"no history file at {path}")
    held, train = load_history(history_path), load_history(reference_path)
    paired = paired_recordings(held, train)
    epochs, freqs = paired["epoch"], paired["freqs"].tolist()
    if len(epochs) == 0:
        raise ValueError(f"{history_path} and {reference_path} share no recording (same epoch and step)")
    names = (held["meta"].get("name", "held-out"), train["meta"].get("name", "training"))
    fig = Figure(figsize=(13.0, 8.6))
    grid = fig.add_gridspec(2, 2, left=0.065, right=0.95, bottom=0.08, top=0.88, wspace=0.25, hspace=0.4)
    plot_delta_f_heatmap(paired["reference_delta_f"].T, freqs, epochs.tolist(), ax=fig.add_subplot(grid[0, 0]),
                         title=rf"(a) $\Delta_F(k)$ on the {names[1]} probe")
    plot_delta_f_heatmap(paired["delta_f"].T, freqs, epochs.tolist(), ax=fig.add_subplot(grid[0, 1]),
                         title=rf"(b) $\Delta_F(k)$ on the {names[0]} probe (same projection and $k$)")
    plot_gap_heatmap(paired["gap"].T, freqs, epochs.tolist(), ax=fig.add_subplot(grid[1, 0]),
                     title=rf"(c) gap $\Delta_F$ {names[0]} $-$ {names[1]} (purple: fitted worse held out)")
    ax = fig.add_subplot(grid[1, 1])
    colours = [f"C{j % 10}" for j in range(len(freqs))]
    for j, k in enumerate(freqs):
        ax.plot(epochs, paired["reference_delta_f"][:, j], "-", color=colours[j], label=f"k = {k}")
        ax.plot(epochs, paired["delta_f"][:, j], "--", color=colours[j])
    ax.axhline(GENERALIZATION_THRESHOLD, color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel(EPOCH_AXIS_LABEL)
    top = float(np.nanmax([paired["delta_f"].max(initial=0.0), paired["reference_delta_f"].max(initial=0.0)]))
    ylabel = r"$\Delta_F(k)$"
    if top > _CURVE_TOP:  # a held-out peak that is small on its own probe can reach Δ_F ≫ 1; keep 0–1 readable
        ax.set_ylim(0.0, _CURVE_TOP)
        ylabel += f" (values > {_CURVE_TOP:g} clipped)"
    ax.set_ylabel(ylabel)
    ax.set_title(rf"(d) $\Delta_F(k)$: solid {names[1]}, dashed {names[0]}; dotted: 0.5", fontsize="medium")
    ax.legend(loc="upper right", fontsize="small", ncol=2)
    meta = held["meta"]
    probe = meta.get("probe", "")
    fig.suptitle(f"Generalization by frequency: {_run_name(Path(history_path))}, the {names[0]} probe against the "
                 f"{names[1]} probe, {epochs[0]}–{epochs[-1]} epochs completed"
                 f"{chr(10) + names[0] + ' probe: ' + probe if probe else ''}", fontsize="large")
    return fig


def write_generalization(history_path: str | os.PathLike[str], reference_path: str | os.PathLike[str],
                         out_png: str | os.PathLike[str]) -> Path:
    """Draw :func:`generalization_figure` of a held-out history and its reference as a PNG; returns its path.

    Example:
        >>> import tempfile
        >>> from fp_lightning.record import FrequencyHistory
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name, values in (("fp_history.npz", [0.5, 0.9]), ("fp_val_history.npz", [0.6, 1.0])):
        ...     h = FrequencyHistory(freqs=[1, 3], deltas=[0.5], cutoff=1, target_amplitude=[0.0, 2.0, 0.5, 1.0])
        ...     for epoch in (0, 1):
        ...         h.append(epoch=epoch, step=5 * epoch, delta_f=values, e_low=[0.8], e_high=[1.0],
        ...                  loss_low=1.0, loss_high=1.0, low_share=float("nan"), output_amplitude=[0.0] * 4)
        ...     _ = h.save(folder / name)
        >>> write_generalization(folder / "fp_val_history.npz", folder / "fp_history.npz", folder / "g.png").name
        'g.png'
    """
    out_png = Path(out_png)
    fig = generalization_figure(history_path, reference_path)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png


def write_report(history_path: str | os.PathLike[str], out_png: str | os.PathLike[str]) -> Path:
    """Draw the one-page report (spectra, Δ_F heatmap, e_low / e_high, loss split) of a saved history as a PNG.

    Args:
        history_path: an ``fp_history.npz`` written by :class:`~fp_lightning.FrequencyPrincipleMonitor`.
        out_png: where to write the PNG (parent folders are created).

    Returns:
        The path of the written PNG.

    Raises:
        FileNotFoundError: ``history_path`` does not exist.
        ValueError: the history holds no recorded epoch.
    """
    out_png = Path(out_png)
    fig = report_figure(history_path)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


def report_figure(history_path: str | os.PathLike[str]) -> Figure:
    """The one-page report of a saved history as a matplotlib ``Figure`` (what :func:`write_report` saves).

    Raises:
        FileNotFoundError: ``history_path`` does not exist.
        ValueError: the history holds no recorded epoch.
    """
    history_path = Path(history_path)
    if not history_path.is_file():
        raise FileNotFoundError(f"no history file at {history_path}")
    history = load_history(history_path)
    epochs = np.asarray(history["epoch"], dtype=int)
    if epochs.size == 0:
        raise ValueError(f"{history_path} holds no recorded epoch")
    # Fixed margins: a constrained layout drew the page twice and took half of its time (it is drawn at the end
    # of every monitored fit).
    fig = Figure(figsize=(13.0, 13.0))
    grid = fig.add_gridspec(3, 2, height_ratios=[1.0, 1.0, 1.0], left=0.065, right=0.93, bottom=0.075, top=0.935,
                            wspace=0.25, hspace=0.36)
    _spectra_panel(fig.add_subplot(grid[0, 0]), history, epochs)
    _delta_f_panel(fig.add_subplot(grid[0, 1]), history, epochs)
    low_high = grid[1, 0].subgridspec(2, 1, hspace=0.08)
    lower = fig.add_subplot(low_high[1, 0])
    _low_high_panels((fig.add_subplot(low_high[0, 0], sharex=lower), lower), history, epochs)
    _loss_split_panel(fig.add_subplot(grid[1, 1]), history, epochs)
    _stage_ratio_panel(fig.add_subplot(grid[2, 0]), history, epochs)
    _intermediate_panel(fig.add_subplot(grid[2, 1]), history, epochs)
    meta = history.get("meta", {})
    source = meta.get("probe", "training data")
    if source != "training data":  # a held-out or given probe: what it is (its description has its size)
        probe = f", probe: {source}"
    else:
        probe = f", probe set of {meta['probe_size']} training samples" if "probe_size" in meta else ""
    if "name" in meta:
        probe = f", the '{meta['name']}' probe" + probe.replace(", probe set of", ":").replace(", probe:", ":")
    fig.suptitle(f"Frequency Principle report: {_run_name(history_path)} ({epochs[0]}–{epochs[-1]} epochs completed"
                 f"{probe})", fontsize="x-large")
    return fig


# ---------------------------------------------------------------------------------------------------- panels
def _spectra_panel(ax: Axes, history: dict[str, Any], epochs: np.ndarray) -> None:
    output = history["output_amplitude"][-1] if len(history["output_amplitude"]) else None
    cutoff = int(history["cutoff"])
    plot_spectra(history["target_amplitude"], output, history["freqs"], ax=ax, cutoff=cutoff,
                 title=f"Projected spectrum {epochs_done(epochs[-1])}: target |F[y]| vs network |F[h]|")
    ax.set_xlabel("frequency k (along the first principal direction)")
    ax.set_xlim(-0.5, len(history["target_amplitude"]) - 0.5)
    amplitudes = np.concatenate([np.ravel(history["target_amplitude"]), np.ravel(output if output is not None else [])])
    top = float(np.max(amplitudes)) if amplitudes.size else 0.0
    ylabel = "amplitude |F(k)| (log scale)"
    if top > 0:
        ax.set_yscale("log")
        floor = top * _LOG_FLOOR
        if float(np.min(amplitudes)) < floor:  # exact zeros (e.g. the staircase's valleys) would squash the plot
            ax.set_ylim(bottom=floor, top=top * 2.0)
            ylabel += f", values < {_LOG_FLOOR:g}·max clipped"
    ax.set_ylabel(ylabel)
    ax.legend(loc="best", fontsize="small")


def _delta_f_panel(ax: Axes, history: dict[str, Any], epochs: np.ndarray) -> None:
    plot_delta_f_heatmap(history["delta_f"].T, history["freqs"].tolist(), epochs.tolist(), ax=ax)
    ax.set_title(r"Relative error $\Delta_F(k)$ per tracked frequency: low $k$ should turn red first")
    _relabel_colorbar(ax, r"$\Delta_F$   (red = fitted, blue = not yet)")


def _low_high_panels(axes: tuple[Axes, Axes], history: dict[str, Any], epochs: np.ndarray) -> None:
    """e_low (upper) and e_high (lower) of every δ, a row each, the δ as in the logged keys and figure tags."""
    plot_low_high_heatmaps(history["e_low"].T, history["e_high"].T, epochs.tolist(),
                           delta_keys(history["deltas"].tolist()), axes=axes,
                           title=r"Filtered errors per Gaussian width $\delta$ (red = fitted, blue = not yet)")


def _loss_split_panel(ax: Axes, history: dict[str, Any], epochs: np.ndarray) -> None:
    cutoff = int(history["cutoff"])
    low, high = np.asarray(history["loss_low"], float), np.asarray(history["loss_high"], float)
    ax.plot(epochs, low, "o-", color="tab:red", label=rf"$L_{{\mathrm{{low}}}}$ ($k \leq \eta$ = {cutoff})")
    ax.plot(epochs, high, "s-", color="tab:blue", label=rf"$L_{{\mathrm{{high}}}}$ ($k > \eta$ = {cutoff})")
    if np.all(np.concatenate([low, high]) > 0):
        ax.set_yscale("log")
    ax.set_xlabel(EPOCH_AXIS_LABEL)
    ax.set_ylabel(r"$\Sigma_k\, |F[h](k) - F[y](k)|^2$")
    share_ax = ax.twinx()
    share = np.asarray(history["low_share"], float)
    share_ax.plot(epochs, share, "^--", color="black", label="low share of the loss decrease")
    share_ax.set_ylim(0.0, 1.05)
    share_ax.set_ylabel("low share (0–1)")
    lines = ax.get_lines() + share_ax.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3,
              fontsize="small", frameon=False)
    ax.set_title(rf"Loss split at the cutoff $\eta$ = {cutoff}, and the low-frequency share of its decrease")
    _epoch_ticks(ax, epochs)


_STAGE_COLOURS = {"initial": "tab:red", "intermediate": "tab:green", "final": "tab:blue"}


def _densities(history: dict[str, Any]) -> np.ndarray | None:
    """The recordings' loss densities, or ``None`` for a history without them (written by an older version)."""
    density = np.asarray(history.get("loss_density", []), dtype=float)
    return density if density.ndim == 2 and np.isfinite(density).all() and len(density) >= 2 else None


def _stage_ratio_panel(ax: Axes, history: dict[str, Any], epochs: np.ndarray) -> None:
    density = _densities(history)
    cutoff = int(history["cutoff"])
    title = r"Share of the change above $\eta$, per stage (theory paper Fig. 1b/d)"
    ax.set_title(title)
    if density is None:
        _no_data(ax, "no loss density in this history (needs ≥ 2 recordings of a current monitor)")
        return
    output_ratio = np.asarray(history["output_change_ratio"], dtype=float)
    for name, part in training_stages(history["delta_f"]).items():
        rows = np.arange(len(epochs))[part]
        if len(rows) < 2:
            continue
        span = f"{name}, after {epochs[rows[0]]}–{epochs[rows[-1]]} epochs"
        curves = {f"loss (39), {span}": loss_change_ratio(density[rows]).numpy(),
                  f"output (40), {span}": np.nanmean(output_ratio[rows[1:]], axis=0)}
        plot_change_ratios(curves, ax=ax, title=title)
        for line, style in zip(ax.get_lines()[-2:], ("-", ":")):
            line.set_color(_STAGE_COLOURS[name])
            line.set_linestyle(style)
    ax.axvline(cutoff, color="gray", linestyle=":", linewidth=1.3, label=rf"loss split at $\eta$ = {cutoff}")
    ax.legend(loc="lower left", fontsize="x-small", framealpha=0.8)
    ax.set_title(title)  # the plots' own is smaller
    ax.set_ylabel(r"ratio of the part above $\eta$")


def _intermediate_panel(ax: Axes, history: dict[str, Any], epochs: np.ndarray) -> None:
    density = _densities(history)
    cutoff = int(history["cutoff"])
    ax.set_title(rf"Loss change above $\eta$ = {cutoff} over $[T_1, T_2]$ (theory paper Eq. (44), Fig. 1c)")
    stages = training_stages(history["delta_f"]) if density is not None else None
    if density is None or stages is None or stages["intermediate"].start >= len(epochs) - 1:
        _no_data(ax, "no loss density in this history, or no recording after the initial stage")
        return
    start = stages["intermediate"].start
    for form, style in (("integral", "o-"), ("difference", "s--")):
        spans, ratios = intermediate_stage_ratio(density, epochs, cutoff, start=start, form=form)
        label = (r"$\sum|\Delta L^{+}_{\eta}|\,/\,\sum|\Delta L|$ (44)" if form == "integral"
                 else r"$|L^{+}_{\eta}(T_1) - L^{+}_{\eta}(T_2)|\,/\,|L(T_1) - L(T_2)|$ (Fig. 1c)")
        ax.plot(spans.numpy(), ratios.numpy(), style, markersize=3, label=label)
    end = epochs[min(stages["intermediate"].stop, len(epochs)) - 1] - epochs[start]
    ax.axvspan(0, max(end, 0), color=_STAGE_COLOURS["intermediate"], alpha=0.08, label="intermediate stage")
    ax.set_xlabel(rf"$|T_2 - T_1|$ in epochs ($T_1$: {epochs_done(epochs[start])}, the end of the initial stage)")
    ax.set_ylabel("ratio")
    ax.legend(loc="best", fontsize="small")


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------------------------------- helpers
def _relabel_colorbar(ax: Axes, label: str) -> None:
    images = ax.get_images()
    colorbar = images[0].colorbar if images else None
    if colorbar is not None:
        colorbar.set_label(label)


def _epoch_ticks(ax: Axes, epochs: np.ndarray) -> None:
    if len(epochs) <= 12:
        ax.set_xticks(epochs)


def _run_name(history_path: Path) -> str:
    parent = history_path.resolve().parent
    return f"{parent.parent.name}/{parent.name}" if parent.name.startswith("version_") else parent.name
