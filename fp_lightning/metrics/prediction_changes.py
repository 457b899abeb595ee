"""``PredictionChanges``: the fraction of predicted classes that changed since the previous ``compute()``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from fp_lightning.functional._validation import check_same_length, check_tensor
from fp_lightning.functional.prediction_changes import predicted_classes, prediction_changes
from fp_lightning.functional.targets import check_class_dim

if TYPE_CHECKING:  # matplotlib is imported by plot(), so that importing the Metrics stays cheap
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PredictionChanges"]


class PredictionChanges(Metric):
    """Label Wave's signal: the share of (probe) predictions whose class changed since the previous recording.

    Convention:
        Each ``compute()`` is one recording: the classes of all samples stored by ``update()`` since the last
        ``reset()`` (argmax over ``class_dim``, :func:`~fp_lightning.functional.predicted_classes`) are compared
        with those of the previous ``compute()``, position by position (``prediction_changes``; positions whose
        label is ``ignore_index`` left out), and then become the previous ones. The first recording has nothing to
        compare with and gives NaN, as does a recording whose sample count differs from the previous one. The
        samples must come in the same order at every recording (a fixed probe set). The previous classes are
        Metric state: ``reset()`` keeps them, ``state_dict()`` saves them (key ``_previous_classes``, empty before
        the first recording) and ``load_state_dict()`` restores them, so a resumed run continues the count.

        Under DDP the stored classes are gathered (``dist_reduce_fx="cat"``) in rank order; give every rank the
        same samples (as the monitor does) or the same share of a fixed set.

    Args:
        class_dim: the class axis of the outputs (1 for (n, C, ...) logits, -1 for (n, ..., C)).
        ignore_index: labels left out (default -100, as torch; ``None``: all count).
        kwargs: ``torchmetrics.Metric``'s.

    ``compute()`` returns a 0-d float64 tensor in [0, 1] (or NaN). Label Wave (Yuan, Feng, Liu, ICLR 2025) stops
    at the first local minimum of its moving average: ``FrequencyEarlyStopping(label_wave_window=...)``.

    Example:
        >>> metric = PredictionChanges()
        >>> labels = torch.tensor([0, 1, 1, 0])
        >>> metric.update(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 5.0]]), labels)
        >>> metric.compute()     # the first recording: nothing to compare with
        tensor(nan, dtype=torch.float64)
        >>> metric.reset()
        >>> metric.update(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 5.0]]), labels)
        >>> metric.compute()     # sample 2 now predicts class 1
        tensor(0.2500, dtype=torch.float64)
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, class_dim: int = 1, ignore_index: int | None = -100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.class_dim = check_class_dim(class_dim)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"`ignore_index` must be an int or None, got {ignore_index!r}.")
        self.ignore_index = ignore_index
        self.add_state("classes", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        # the previous recording's classes: a buffer, so reset() keeps it and state_dict() carries it
        self.register_buffer("_previous_classes", torch.empty(0, dtype=torch.long), persistent=True)
        self.register_buffer("_previous_target", torch.empty(0, dtype=torch.long), persistent=True)

    @property
    def previous_classes(self) -> torch.Tensor | None:
        """The classes of the previous recording, or ``None`` before the first ``compute()``.

        Example:
            >>> PredictionChanges().previous_classes is None
            True
        """
        value = self._buffers["_previous_classes"]
        return None if value is None or value.numel() == 0 else value

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Store a batch: ``preds`` (b, C, ...) class scores (or (b, ...) classes), ``target`` (b, ...) labels."""
        check_tensor("preds", preds)
        check_tensor("target", target)
        check_same_length(("preds", "target"), preds, target)
        classes = predicted_classes(preds.detach(), self.class_dim)
        if tuple(classes.shape) != tuple(target.shape):
            raise ValueError(f"`target` must be one label per prediction, shape {tuple(classes.shape)}, got "
                             f"{tuple(target.shape)}.")
        self.classes.append(classes)
        self.target.append(target.detach().long())

    def compute(self) -> torch.Tensor:
        """The fraction of changed predictions against the previous ``compute()`` (NaN at the first)."""
        if isinstance(self.classes, list) and not self.classes:
            return torch.tensor(math.nan, dtype=torch.float64)
        classes, target = dim_zero_cat(self.classes), dim_zero_cat(self.target)
        previous = self.previous_classes
        value = (torch.tensor(math.nan, dtype=torch.float64) if previous is None or previous.shape != classes.shape
                 else prediction_changes(previous, classes, target=target, ignore_index=self.ignore_index))
        self._buffers["_previous_classes"] = classes.detach().clone()
        self._buffers["_previous_target"] = target.detach().clone()
        return value

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # the saved classes decide the shape (the probe size, or empty before the first recording)
        for name in ("_previous_classes", "_previous_target"):
            incoming = state_dict.get(prefix + name)
            if isinstance(incoming, torch.Tensor):
                self._buffers[name] = torch.empty(incoming.shape, dtype=torch.long,
                                                  device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def plot(self, val: torch.Tensor | Sequence[torch.Tensor] | Sequence[float] | None = None,
             ax: Axes | None = None) -> tuple[Figure, Axes]:
        """Draw the prediction changes of a sequence of recordings (or the one value of ``compute()``).

        Example:
            >>> fig, ax = PredictionChanges().plot([float("nan"), 0.4, 0.2, 0.15, 0.18])
        """
        from matplotlib.figure import Figure

        if val is None:
            val = self.compute()
        values = [float(v) for v in (val.reshape(-1) if isinstance(val, torch.Tensor) else val)]
        if ax is None:
            fig = Figure(figsize=(5.0, 3.5), layout="constrained")
            ax = fig.add_subplot()
        ax.plot(range(len(values)), values, "o-", color="tab:purple")
        ax.set_xlabel("recording")
        ax.set_ylabel("share of predictions changed")
        ax.set_ylim(bottom=0.0)
        return ax.figure, ax
