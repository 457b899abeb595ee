"""Shared state handling of the probe-set metrics: stored samples, DDP gathering, de-duplication."""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from fp_lightning.functional._validation import check_same_length, check_tensor
from fp_lightning.functional.targets import OutputTransform, prepare_targets, validate_output_transform

__all__ = ["ProbeSetMetric"]


class ProbeSetMetric(Metric):
    """Base class: stores ``(inputs, preds, target[, index])`` of every update and returns them gathered.

    The quantities of the Frequency Principle are not sums over batches (a spectrum needs all points at once), so
    the states are lists concatenated across updates and, under DDP, across processes (``dist_reduce_fx="cat"``).
    Pass ``index`` (the samples' positions in the dataset) to drop the duplicates that a ``DistributedSampler``
    adds as padding; the samples are then also put in index order, so every process sees the same arrays.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, output_transform: OutputTransform = "auto", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        validate_output_transform(output_transform)
        self.output_transform = output_transform
        self.add_state("inputs", default=[], dist_reduce_fx="cat")
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(
        self, inputs: torch.Tensor, preds: torch.Tensor, target: torch.Tensor, index: torch.Tensor | None = None
    ) -> None:
        """Store a batch: ``inputs`` (b, ...), ``preds`` (b, ...), ``target`` (b, ...), optional ``index`` (b,)."""
        for name, value in (("inputs", inputs), ("preds", preds), ("target", target)):
            check_tensor(name, value)
        check_same_length(("inputs", "preds", "target"), inputs, preds, target)
        if index is not None:
            check_tensor("index", index)
            check_same_length(("inputs", "index"), inputs, index)
        has_index, has_inputs = len(self.index) > 0, len(self.inputs) > 0
        if (has_index and index is None) or (has_inputs and not has_index and index is not None):
            raise ValueError("`index` must be given to every update or to none.")
        self.inputs.append(inputs.detach())
        self.preds.append(preds.detach())
        self.target.append(target.detach())
        if index is not None:
            self.index.append(index.detach().long())

    def _gathered(self, float64_inputs: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(x (n, d), y (n, c) float64, h (n, c) float64)`` of all stored samples.

        x is float64, or in its stored dtype with ``float64_inputs=False`` for callers that convert blocks
        themselves (a float64 copy of 5,000 CIFAR images is 123 MB per epoch).
        """
        # after a DDP sync the list states are single concatenated tensors
        if isinstance(self.inputs, list) and not self.inputs:
            raise ValueError(f"{type(self).__name__}.compute() called before any update().")
        x, preds, target = dim_zero_cat(self.inputs), dim_zero_cat(self.preds), dim_zero_cat(self.target)
        if isinstance(self.index, torch.Tensor) or self.index:
            order = _first_occurrence_order(dim_zero_cat(self.index))
            x, preds, target = x[order], preds[order], target[order]
        y, h = prepare_targets(preds, target, self.output_transform)
        x = x.reshape(x.shape[0], -1)
        return (x.to(torch.float64) if float64_inputs else x), y, h


def _first_occurrence_order(index: torch.Tensor) -> torch.Tensor:
    """Positions that keep one sample per distinct index, sorted by index."""
    sorted_index, order = torch.sort(index, stable=True)
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    return order[keep]
