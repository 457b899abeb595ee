"""TensorBoard panels of a monitor: heatmaps and spectra as figures, and a custom-scalars layout."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fp_lightning.callbacks._compat import is_tensorboard
from fp_lightning.callbacks.history import FrequencyHistory
from fp_lightning.plotting import plot_delta_f_heatmap, plot_low_high_heatmap, plot_spectra

__all__ = ["PanelWriter", "custom_scalars_layout", "delta_key", "draw_panels", "write_panels"]


def delta_key(delta: float) -> str:
    """The ``<δ>`` part of a logged key: ``f"{δ:g}"`` as DESIGN.md fixes."""
    return f"{delta:g}"


def custom_scalars_layout(freqs: list[int], deltas: list[float]) -> dict[str, Any]:
    """One chart per δ with e_low and e_high together, one chart with Δ_F at every tracked k, one for the split."""
    per_delta = {
        f"δ={delta_key(d)}": ["Multiline", [f"fp/e_low/delta={delta_key(d)}", f"fp/e_high/delta={delta_key(d)}"]]
        for d in deltas
    }
    return {
        "fp: e_low vs e_high": per_delta,
        "fp: projected spectrum": {
            "Δ_F per tracked k": ["Multiline", [f"fp/delta_f/k={k}" for k in freqs]],
            "loss split": ["Multiline", ["fp/loss_low", "fp/loss_high"]],
            "low share": ["Multiline", ["fp/low_share"]],
        },
    }


def draw_panels(history: FrequencyHistory) -> dict[str, Any]:
    """All figures of the history, by TensorBoard tag."""
    arrays = history.as_arrays()
    epochs = arrays["epoch"].tolist()
    figures = {"fp/delta_f_heatmap": plot_delta_f_heatmap(arrays["delta_f"].T, history.freqs, epochs)[0],
               "fp/spectra": plot_spectra(arrays["target_amplitude"], arrays["output_amplitude"][-1],
                                          history.freqs, title=f"|F[y]| and |F[h]|, epoch {epochs[-1]}")[0]}
    for j, delta in enumerate(history.deltas):
        figures[f"fp/low_high_heatmap/delta={delta_key(delta)}"] = plot_low_high_heatmap(
            arrays["e_low"][:, j], arrays["e_high"][:, j], epochs, delta)[0]
    return figures


def write_panels(experiment: Any, history: FrequencyHistory, step: int) -> None:
    """Add every figure to a SummaryWriter at ``step``."""
    for tag, figure in draw_panels(history).items():
        experiment.add_figure(tag, figure, global_step=step, close=False)




class PanelWriter:
    """Sends a monitor's figures to the Trainer's loggers (called on rank 0 only), remembering what it wrote once.

    Example:
        >>> writer = PanelWriter()
        >>> writer.reset()
    """

    def __init__(self) -> None:
        self._layout_written: set[int] = set()

    def reset(self) -> None:
        """Forget what was written (a new ``fit``)."""
        self._layout_written.clear()

    def write(self, loggers: Sequence[Any], history: FrequencyHistory, step: int, folder: Path | None,
              warn: Callable[[str, str], None]) -> None:
        """Draw every panel of ``history`` and send it to each logger at ``step`` (the global step)."""
        boards = [logger for logger in loggers if is_tensorboard(logger)]
        if not boards:
            if loggers:
                warn("logger", "FrequencyPrincipleMonitor: no TensorBoardLogger, so only scalars are logged "
                               "(figures need TensorBoard).")
            return
        for board in boards:
            if id(board) not in self._layout_written:
                board.experiment.add_custom_scalars(custom_scalars_layout(history.freqs, history.deltas))
                self._layout_written.add(id(board))
            write_panels(board.experiment, history, step=step)

    def write_report(self, history_path: Path, folder: Path) -> Path | None:
        """Draw the one-page report next to the history at the end of a fit (``None`` when there is no file)."""
        if not history_path.is_file():
            return None
        from fp_lightning.report import REPORT_FILE, write_report

        return write_report(history_path, folder / REPORT_FILE)
