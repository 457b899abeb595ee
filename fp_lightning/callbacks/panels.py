"""A monitor's figures for every logger: heatmaps and spectra as images, and TensorBoard's custom-scalars layout.

Each recording draws every figure once, renders it once to an RGB array and sends that array to each logger:

- ``TensorBoardLogger`` (``lightning.pytorch`` or ``pytorch_lightning``): an image per tag at the global step,
  and once per SummaryWriter a custom-scalars layout (the *Custom Scalars* tab);
- ``WandbLogger``: ``log_image(key=tag, images=[rgb], step=global step)``;
- ``MLFlowLogger``: a PNG artifact ``fp_panels/<name>/step_<global step>.png`` of the logger's run;
- any other logger (``CSVLogger``, a user's own), or no logger at all: the latest figure of each tag as
  ``<folder>/fp_panels/<name>.png``, overwritten at every recording.

Tags: ``fp/delta_f_heatmap``, ``fp/spectra``, ``fp/change_ratios`` (the theory paper's ratios against every cutoff
η at this recording) and ``fp/low_high_heatmap`` (e_low and e_high, a row per δ labelled as in the logged keys,
:func:`delta_keys`);
every figure's title says how many epochs were completed at the recording ("after 15 epochs"). A named monitor's
tags start with ``fp_<name>/`` instead of ``fp/``; a monitor that shares another's frequencies (a held-out probe)
adds ``fp_<name>/generalization``, the gap Δ_F(held-out) − Δ_F(training) per tracked k over training.
"""

from __future__ import annotations

import os
import re
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fp_lightning.record import (
    DEFAULT_PREFIX,
    DELTA_F_GAP_PREFIX,
    FrequencyHistory,
    delta_keys,
    paired_recordings,
    with_prefix,
)

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn, so that importing the package stays cheap
    from matplotlib.figure import Figure

__all__ = [
    "PANEL_FOLDER",
    "PanelWriter",
    "custom_scalars_layout",
    "draw_panels",
    "exact_tag_pattern",
    "logger_kind",
    "monitor_layout",
    "output_folder",
    "panel_file_stem",
    "panel_title",
    "publish_scalars",
    "render_figure",
]

#: Folder (in the run folder, and in an MLflow run's artifacts) that holds the figures as PNG files.
PANEL_FOLDER = "fp_panels"
#: Significant digits of ``<δ>`` in the logged keys, unless two δ need more to stay distinct.
# Text sizes of the logger panels (400 × 280 px): a card about 230 px wide shows them at half size, where 10 pt at
# 100 dpi is still 7 px high.
_PANEL_STYLE = {"font.size": 11.0, "axes.titlesize": 11.0, "axes.labelsize": 10.5, "xtick.labelsize": 10.0,
                "ytick.labelsize": 10.0, "legend.fontsize": 9.5}
# Characters that may appear in a file name derived from a tag (anything else becomes "_").
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._=+-]")


def exact_tag_pattern(tag: str) -> str:
    r"""A regular expression that matches ``tag`` and nothing else.

    TensorBoard reads each tag of a custom-scalars chart as a regular expression and searches it in every scalar
    tag: unescaped, ``fp/delta_f/k=1`` would also match ``k=12``, and the ``.`` of ``delta=0.1`` any character.

    Example:
        >>> pattern = exact_tag_pattern("fp/e_low/delta=0.1")
        >>> pattern, bool(re.search(pattern, "fp/e_low/delta=0.12")), bool(re.search(pattern, "fp/e_low/delta=0x1"))
        ('^fp/e_low/delta=0\\.1$', False, False)
    """
    return f"^{re.escape(tag)}$"


def custom_scalars_layout(freqs: Sequence[int], deltas: Sequence[float], denoised: bool = False,
                          cutoff: int | None = None, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    r"""TensorBoard custom-scalars layout: one chart per logged series, each titled with what it shows.

    TensorBoard colours a chart's lines by run, not by tag, so two series of one run in one chart could not be told
    apart: every chart holds one series. Categories (collapsible sections, in this order): Δ_F with a chart per
    tracked k; one per filter width δ with its e_low and e_high side by side; the loss split at ``cutoff`` η
    (L_low, L_high, the low share); with ``denoised=True`` (the monitor logs ``fp/denoised_loss``) that score.

    Every tag is an anchored, escaped regular expression (:func:`exact_tag_pattern`), so each chart's line is
    exactly one logged key. A named monitor's ``prefix`` (``fp_val``) replaces ``fp`` in the tags and the titles.

    Example:
        >>> layout = custom_scalars_layout([1, 12], [0.1], cutoff=4)
        >>> list(layout)
        ['fp: Δ_F per tracked k', 'fp: e_low / e_high, filter width δ = 0.1', 'fp: loss split at cutoff η = 4']
        >>> layout["fp: Δ_F per tracked k"]
        {'Δ_F at k = 1': ['Multiline', ['^fp/delta_f/k=1$']], 'Δ_F at k = 12': ['Multiline', ['^fp/delta_f/k=12$']]}
        >>> layout["fp: e_low / e_high, filter width δ = 0.1"]["e_high (δ = 0.1)"]
        ['Multiline', ['^fp/e_high/delta=0\\.1$']]
    """
    def chart(tag: str) -> list[Any]:
        return ["Multiline", [exact_tag_pattern(with_prefix(tag, prefix))]]

    layout: dict[str, Any] = {
        f"{prefix}: Δ_F per tracked k": {f"Δ_F at k = {int(k)}": chart(f"fp/delta_f/k={int(k)}") for k in freqs}}
    for key in delta_keys(deltas):
        layout[f"{prefix}: e_low / e_high, filter width δ = {key}"] = {
            f"e_low (δ = {key})": chart(f"fp/e_low/delta={key}"),
            f"e_high (δ = {key})": chart(f"fp/e_high/delta={key}")}
    eta = "η" if cutoff is None else f"{int(cutoff)}"
    layout[f"{prefix}: loss split" + ("" if cutoff is None else f" at cutoff η = {int(cutoff)}")] = {
        f"L_low (k ≤ {eta})": chart("fp/loss_low"),
        f"L_high (k > {eta})": chart("fp/loss_high"),
        "low share of the loss decrease": chart("fp/low_share"),
    }
    if denoised:
        layout[f"{prefix}: validation-free score"] = {"denoised loss": chart("fp/denoised_loss")}
    return layout


def monitor_layout(history: FrequencyHistory, prefix: str = DEFAULT_PREFIX, gap: bool = False) -> dict[str, Any]:
    r"""The custom-scalars categories of one monitor's history; with ``gap``, one more: its generalization gap.

    TensorBoard shows one layout per run (the last one written), so every monitor of a Trainer writes the
    categories of all of them; a held-out monitor's gap category has one chart per tracked k,
    ``fp_<name>/delta_f_gap/k=<k>``.

    Example:
        >>> h = FrequencyHistory(freqs=[2], deltas=[0.5], cutoff=2, target_amplitude=[1.0, 1.0, 1.0, 1.0])
        >>> layout = monitor_layout(h, "fp_val", gap=True)
        >>> layout["fp_val: Δ_F held-out − training (generalization gap)"]
        {'gap at k = 2': ['Multiline', ['^fp_val/delta_f_gap/k=2$']]}
    """
    denoised = any(not np.isnan(value) for value in history.records["denoised_loss"])
    layout = custom_scalars_layout(history.freqs, history.deltas, denoised, cutoff=history.cutoff, prefix=prefix)
    if gap:
        gap_prefix = with_prefix(DELTA_F_GAP_PREFIX, prefix)
        layout[f"{prefix}: Δ_F held-out − training (generalization gap)"] = {
            f"gap at k = {int(k)}": ["Multiline", [exact_tag_pattern(f"{gap_prefix}{int(k)}")]] for k in history.freqs}
    return layout


def draw_panels(history: FrequencyHistory, prefix: str = DEFAULT_PREFIX, reference: FrequencyHistory | None = None,
                names: tuple[str, str] = ("held-out", "training")) -> dict[str, Figure]:
    r"""Every figure of ``history`` by tag, sized and lettered for a logger's image card.

    Titles say when the recording was made in completed epochs (``"after 15 epochs"``, ``"before training"``; the
    history's convention, one more than Lightning's ``current_epoch`` of the epoch just finished). The spectra keep
    one y range over a run's recordings (from the target's spectrum and the largest |F[h]| recorded so far), and the
    spectra and change ratios mark the cutoff η of the loss split. Tags start with ``prefix`` (``fp``, or ``fp_<name>``
    for a named monitor). With the ``reference`` history whose frequencies this one shares (the training probe's),
    ``<prefix>/generalization`` is the gap Δ_F(this probe) − Δ_F(reference) per tracked k at their shared
    recordings; ``names`` name the two probes in its title.

    Example:
        >>> h = FrequencyHistory(freqs=[1, 2], deltas=[0.5], cutoff=1, target_amplitude=[3.0, 2.0, 1.0, 0.5])
        >>> h.append(epoch=0, step=0, delta_f=[1.0, 1.0], e_low=[0.9], e_high=[1.0], loss_low=4.0, loss_high=2.0,
        ...          low_share=float("nan"), output_amplitude=[0.1, 0.1, 0.1, 0.1])
        >>> h.append(epoch=1, step=10, delta_f=[0.5, 1.0], e_low=[0.4], e_high=[1.0], loss_low=2.0, loss_high=2.0,
        ...          low_share=float("nan"), output_amplitude=[2.0, 1.0, 0.1, 0.1])
        >>> for tag, fig in draw_panels(h).items():
        ...     print(f"{tag}: {panel_title(fig)}")
        fp/delta_f_heatmap: $\Delta_F(k)$, after 1 epoch
        fp/spectra: |F[y]|, |F[h]| after 1 epoch
        fp/change_ratios: Change ratios vs $\eta$, after 1 epoch
        fp/low_high_heatmap: $e_{\mathrm{low}}$, $e_{\mathrm{high}}$ per $\delta$, after 1 epoch
    """
    import matplotlib

    from fp_lightning.plotting import (
        CHANGE_RATIO_LABELS,
        epochs_done,
        plot_change_ratios,
        plot_delta_f_heatmap,
        plot_low_high_heatmaps,
        plot_spectra,
    )

    arrays = history.as_arrays()
    if len(history) == 0:
        raise ValueError("the history holds no recording yet: nothing to draw.")
    epochs = arrays["epoch"].tolist()
    when = epochs_done(epochs[-1])
    outputs = np.asarray(arrays["output_amplitude"], dtype=float)
    output_max = float(np.max(outputs[np.isfinite(outputs)], initial=0.0))  # fixes the spectra's y range
    with matplotlib.rc_context(_PANEL_STYLE):
        figures = {
            "fp/delta_f_heatmap": plot_delta_f_heatmap(arrays["delta_f"].T, history.freqs, epochs,
                                                       title=rf"$\Delta_F(k)$, {when}")[0],
            "fp/spectra": plot_spectra(arrays["target_amplitude"], outputs[-1], history.freqs,
                                       title=f"|F[y]|, |F[h]| {when}", cutoff=history.cutoff,
                                       ymax=output_max)[0],
            "fp/change_ratios": plot_change_ratios({key: arrays[key][-1] for key in CHANGE_RATIO_LABELS},
                                                   title=rf"Change ratios vs $\eta$, {when}",
                                                   cutoff=history.cutoff)[0],
        }
        figures["fp/low_high_heatmap"] = plot_low_high_heatmaps(
            arrays["e_low"].T, arrays["e_high"].T, epochs, delta_keys(history.deltas),
            title=rf"$e_{{\mathrm{{low}}}}$, $e_{{\mathrm{{high}}}}$ per $\delta$, {when}")[0]
        gap = _gap_figure(arrays, reference, names)
        if gap is not None:
            figures["fp/generalization"] = gap
    return {with_prefix(tag, prefix): figure for tag, figure in figures.items()}


def panel_title(figure: Figure) -> str:
    """A panel's title: the figure's own (a panel of several heatmaps), else its first axes'.

    Example:
        >>> from matplotlib.figure import Figure
        >>> fig = Figure()
        >>> fig.add_subplot().set_title("after 2 epochs")
        Text(...)
        >>> panel_title(fig)
        'after 2 epochs'
    """
    title = figure.get_suptitle()
    return title if title else figure.axes[0].get_title()


def _gap_figure(arrays: dict[str, np.ndarray], reference: FrequencyHistory | None,
                names: tuple[str, str]) -> Figure | None:
    """The gap heatmap against the reference's shared recordings (``None`` without any, or other frequencies)."""
    from fp_lightning.plotting import epochs_done, plot_gap_heatmap

    if reference is None or len(reference) == 0:
        return None
    try:
        paired = paired_recordings(arrays, reference.as_arrays())
    except ValueError:  # other frequencies: no k-by-k comparison to draw
        return None
    if len(paired["epoch"]) == 0:
        return None
    title = rf"$\Delta_F$ {names[0]} $-$ {names[1]}, {epochs_done(paired['epoch'][-1])}"
    return plot_gap_heatmap(paired["gap"].T, paired["freqs"].tolist(), paired["epoch"].tolist(), title=title)[0]


def render_figure(figure: Figure) -> np.ndarray:
    """The figure as an (H, W, 3) ``uint8`` RGB array at its own size and dpi (one Agg drawing).

    Example:
        >>> from matplotlib.figure import Figure
        >>> render_figure(Figure(figsize=(2, 1), dpi=50)).shape
        (50, 100, 3)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def panel_file_stem(tag: str) -> str:
    """File name (no suffix) of a figure tag: ``fp/`` dropped, ``/`` → ``_``, other unsafe characters → ``_``.

    A named monitor's tags keep their prefix: ``fp_val/spectra`` → ``fp_val_spectra``.

    Example:
        >>> panel_file_stem("fp/low_high_heatmap/delta=0.01"), panel_file_stem("fp/spectra")
        ('low_high_heatmap_delta=0.01', 'spectra')
        >>> panel_file_stem("fp_val/generalization")
        'fp_val_generalization'
    """
    name = tag.removeprefix("fp/").replace("/", "_")
    return _UNSAFE_FILE_CHARS.sub("_", name)


def logger_kind(logger: Any) -> str:
    """``"tensorboard"``, ``"wandb"``, ``"mlflow"`` or ``"files"``: how a logger receives the figures.

    Judged by class name along the logger's class hierarchy, so that the loggers of ``lightning.pytorch`` and of
    ``pytorch_lightning`` (and user subclasses of either) are recognised alike; any other logger gets files.

    Example:
        >>> from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
        >>> logger_kind(TensorBoardLogger("/tmp")), logger_kind(CSVLogger("/tmp"))
        ('tensorboard', 'files')
    """
    names = {cls.__name__ for cls in type(logger).__mro__}
    for class_name, kind in (("TensorBoardLogger", "tensorboard"), ("WandbLogger", "wandb"),
                             ("MLFlowLogger", "mlflow")):
        if class_name in names:
            return kind
    return "files"


class PanelWriter:
    """Sends a monitor's figures to the Trainer's loggers (called on rank 0 only), remembering what it wrote once.

    Every call of :meth:`write` draws each figure once, renders it once, and gives the same image to every logger;
    the figures are freed before it returns. A fault in one logger does not stop the others: it is reported
    through ``warn`` (once per logger class) after the other loggers got their images.

    Example:
        >>> writer = PanelWriter()
        >>> writer.reset()
    """

    def __init__(self) -> None:
        # SummaryWriters that already hold the layout (weak: a finished run's writer is not kept alive by us)
        self._layout_written: weakref.WeakSet[Any] = weakref.WeakSet()

    def reset(self) -> None:
        """Forget which SummaryWriters hold the custom-scalars layout (a new ``fit``)."""
        self._layout_written = weakref.WeakSet()

    def __getstate__(self) -> dict[str, Any]:
        # a WeakSet does not pickle (``ddp_spawn``, ``copy.deepcopy``); a copy has written no layout yet
        return {key: value for key, value in self.__dict__.items() if key != "_layout_written"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._layout_written = weakref.WeakSet()

    def write(self, loggers: Sequence[Any], history: FrequencyHistory, step: int, folder: Path | None,
              warn: Callable[[str, str], None], files: bool = True, prefix: str = DEFAULT_PREFIX,
              label: str = "FrequencyPrincipleMonitor", names: tuple[str, str] = ("held-out", "training"),
              reference: FrequencyHistory | None = None,
              layout: Callable[[], dict[str, Any]] | None = None) -> None:
        """Draw every panel of ``history`` and send it to each logger at ``step`` (the global step).

        Args:
            loggers: the Trainer's loggers (``trainer.loggers``); may be empty.
            history: the monitor's history, its last recording the one to show.
            step: the global step of the recording, the x axis of images as of scalars.
            folder: the run folder for the PNG files of loggers without an image API (and of a run without a
                logger); ``None``: no files are written.
            warn: ``warn(key, message)`` for a logger that failed to take its images (key ``"figures:<class>"``).
            files: write the PNG files too. The monitor writes them once, at the end of the fit: they only ever
                hold the latest panels, and drawing them at every recording would cost a run without an image
                logger its figures' drawing time at every recording.
            prefix: the tags' prefix (``fp``, or ``fp_<name>``).
            names: the two probes' names in the generalization panel's title (this one, the reference).
            reference: the reference monitor's history, for the generalization panel (see :func:`draw_panels`).
            label: how messages name the monitor.
            layout: returns TensorBoard's custom-scalars layout to write (default: this history's categories);
                a Trainer with several monitors passes the categories of all of them.
        """
        loggers = list(loggers)
        kinds = [logger_kind(logger) for logger in loggers]
        wants_files = files and folder is not None and (not loggers or "files" in kinds)
        if not wants_files and not any(kind != "files" for kind in kinds):
            return  # nothing would receive the figures: do not draw them
        images = {tag: _render_and_free(figure)
                  for tag, figure in draw_panels(history, prefix, reference, names).items()}
        layout = layout or (lambda: monitor_layout(history, prefix, gap=reference is not None))
        targets: list[tuple[str, Callable[[], None]]] = []
        for logger, kind in zip(loggers, kinds):
            if kind == "tensorboard":
                targets.append((type(logger).__name__, lambda lg=logger: self._to_tensorboard(lg, layout, images,
                                                                                            step)))
            elif kind == "wandb":
                targets.append((type(logger).__name__, lambda lg=logger: _to_wandb(lg, images, step)))
            elif kind == "mlflow":
                targets.append((type(logger).__name__, lambda lg=logger: _to_mlflow(lg, images, step)))
        if wants_files:
            assert folder is not None
            targets.append(("PNG files", lambda: _to_files(Path(folder) / PANEL_FOLDER, images)))
        for name, send in targets:
            try:
                send()
            except Exception as error:  # one logger's fault must not cost the others their figures
                warn(f"figures:{name}", f"{label}: could not write the figures to {name}: "
                                        f"{type(error).__name__}: {str(error).rstrip('.')}. Scalars are logged as "
                                        "usual; pass log_images=False to stop drawing figures.")

    def write_files(self, loggers: Sequence[Any], history: FrequencyHistory, folder: Path | None,
                    warn: Callable[[str, str], None], prefix: str = DEFAULT_PREFIX,
                    label: str = "FrequencyPrincipleMonitor", names: tuple[str, str] = ("held-out", "training"),
                    reference: FrequencyHistory | None = None) -> None:
        """Write the PNG files of the latest panels, when a logger without an image API (or no logger) needs them.

        Example:
            >>> import tempfile
            >>> h = FrequencyHistory(freqs=[1, 3], deltas=[0.5], cutoff=1, target_amplitude=[0.0, 2.0, 0.5, 1.0])
            >>> h.append(epoch=0, step=0, delta_f=[0.9, 1.0], e_low=[0.8], e_high=[1.0], loss_low=1.0,
            ...          loss_high=1.0, low_share=float("nan"), output_amplitude=[0.0, 0.1, 0.0, 0.1])
            >>> folder = Path(tempfile.mkdtemp())
            >>> PanelWriter().write_files([], h, folder, warn=print)
            >>> sorted(p.name for p in (folder / PANEL_FOLDER).iterdir())[:2]
            ['change_ratios.png', 'delta_f_heatmap.png']
        """
        kinds = [logger_kind(logger) for logger in loggers]
        if folder is None or (loggers and "files" not in kinds):
            return
        images = {tag: _render_and_free(figure)
                  for tag, figure in draw_panels(history, prefix, reference, names).items()}
        try:
            _to_files(Path(folder) / PANEL_FOLDER, images)
        except Exception as error:
            warn("figures:PNG files", f"{label}: could not write the figures to PNG files: "
                                      f"{type(error).__name__}: {str(error).rstrip('.')}.")

    def write_report(self, history_path: Path, folder: Path, reference_path: Path | None = None) -> Path | None:
        """Draw the one-page report next to the history at the end of a fit (``None`` when there is no file).

        ``fp_report.png`` for ``fp_history.npz``, ``fp_<name>_report.png`` for a named monitor's history; with the
        ``reference_path`` of the history whose frequencies it shares, also ``fp_<name>_generalization.png``.
        """
        if not history_path.is_file():
            return None
        from fp_lightning.report import generalization_file, report_file, write_generalization, write_report

        page = write_report(history_path, folder / report_file(history_path))
        if reference_path is not None and reference_path.is_file():
            write_generalization(history_path, reference_path, folder / generalization_file(history_path))
        return page

    def _to_tensorboard(self, logger: Any, layout: Callable[[], dict[str, Any]], images: dict[str, np.ndarray],
                        step: int) -> None:
        writer = logger.experiment
        if writer not in self._layout_written:
            writer.add_custom_scalars(layout())
            self._layout_written.add(writer)
        for tag, rgb in images.items():
            writer.add_image(tag, rgb, global_step=step, dataformats="HWC")


def _render_and_free(figure: Figure) -> np.ndarray:
    try:
        return render_figure(figure)
    finally:
        figure.clear()  # drop the artists now rather than at the next garbage collection


def _to_wandb(logger: Any, images: dict[str, np.ndarray], step: int) -> None:
    for tag, rgb in images.items():
        logger.log_image(key=tag, images=[rgb], step=step)


def _to_mlflow(logger: Any, images: dict[str, np.ndarray], step: int) -> None:
    client, run_id = logger.experiment, logger.run_id
    for tag, rgb in images.items():
        client.log_image(run_id, rgb, artifact_file=f"{PANEL_FOLDER}/{panel_file_stem(tag)}/step_{step:06d}.png")


def _to_files(directory: Path, images: dict[str, np.ndarray]) -> None:
    from PIL import Image  # a dependency of matplotlib

    directory.mkdir(parents=True, exist_ok=True)
    for tag, rgb in images.items():
        # written aside and moved into place: a viewer never reads half a file
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".png", delete=False) as handle:
            Image.fromarray(rgb).save(handle, format="PNG")
        os.replace(handle.name, directory / f"{panel_file_stem(tag)}.png")


# ---------------------------------------------------------------------- the scalars and where files go
def publish_scalars(trainer: Any, values: dict[str, float]) -> None:
    """Every rank's ``callback_metrics`` (for EarlyStopping/ModelCheckpoint) and, on rank 0, every logger.

    The loggers are called directly, as Lightning's ``LearningRateMonitor`` does: the values are the same on every
    rank, so no ``sync_dist`` is needed, and every recording (the one before training and those between
    ``log_every_n_steps``) reaches every logger at ``trainer.global_step``.

    Example:
        >>> from types import SimpleNamespace
        >>> trainer = SimpleNamespace(callback_metrics={}, is_global_zero=True, loggers=[], global_step=0)
        >>> publish_scalars(trainer, {"fp/loss_low": 0.5})
        >>> float(trainer.callback_metrics["fp/loss_low"])
        0.5
    """
    import torch

    trainer.callback_metrics.update({key: torch.tensor(value) for key, value in values.items()})
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_metrics(values, step=trainer.global_step)
        logger.save()


def output_folder(trainer: Any, output_dir: str | os.PathLike[str] | None) -> Path | None:
    """Where a monitor's files go: ``output_dir``, else the logger's folder, else an explicit ``default_root_dir``.

    ``None`` (no files) under ``fast_dev_run``, or when the user gave no folder at all: Lightning falls back to the
    working directory, where nobody asked for files. Asking the logger's folder is a collective under DDP, so every
    rank calls this.

    Example:
        >>> from types import SimpleNamespace
        >>> output_folder(SimpleNamespace(fast_dev_run=False), "runs/a")
        PosixPath('runs/a')
    """
    if trainer.fast_dev_run:
        return None
    if output_dir is not None:
        return Path(output_dir)
    folder = trainer.log_dir if trainer.loggers else None
    if folder is None:
        root = trainer.default_root_dir
        folder = None if os.path.abspath(root) == os.getcwd() else root
    return None if folder is None else Path(folder)
