"""Shared state handling of the probe-set metrics: stored samples, DDP gathering, de-duplication."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat, rank_zero_warn

from fp_lightning.functional._validation import check_same_length, check_tensor
from fp_lightning.functional.targets import (
    RESOLVED_TRANSFORMS,
    OutputTransform,
    check_class_dim,
    prepare_masked_targets,
    resolve_output_transform,
    validate_output_transform,
)

__all__ = ["ProbeSetMetric"]


class ProbeSetMetric(Metric):
    """Base class: stores ``(inputs, preds, target[, index])`` of every update and returns them gathered.

    The quantities of the Frequency Principle are not sums over batches (a spectrum needs all points at once), so
    the states are lists concatenated across updates and, under DDP, across processes (``dist_reduce_fx="cat"``).
    Pass ``index`` (the samples' positions in the dataset) to drop the duplicates that a ``DistributedSampler``
    adds as padding; the samples are then also put in index order, so every process sees the same arrays.

    Convention:
        Targets and outputs are made comparable by ``prepare_targets`` with the class axis ``class_dim`` of the
        outputs (1 as in torch's ``cross_entropy``; -1 for (n, T, C) logits). ``output_transform="auto"`` is
        resolved once, on the first ``compute()`` (``resolve_output_transform``), and then frozen: ``reset()``
        keeps it and ``state_dict()`` carries it, so the comparison does not change from epoch to epoch. When
        the choice is not the obvious one (integer labels → softmax, real values → identity) one ``UserWarning``
        says what was chosen, why, and that ``output_transform`` overrides it.

    Frozen fits (a subclass's projection, frequencies, δ, cutoff) are buffers registered by ``_add_fit_state``:
    ``state_dict()`` saves them and ``load_state_dict()`` restores them whatever their shape (an empty tensor means
    "not fitted yet"), ``.to(device)`` moves them without changing their dtype, and ``reset()`` leaves them alone.

    Args:
        output_transform: ``"auto"``, ``"softmax"``, ``"sigmoid"``, ``"identity"`` or a callable.
        class_dim: the class axis of the outputs (not 0, the sample axis).
        ignore_index: integer class labels with this value are left out of every quantity (default -100, as
            torch's ``CrossEntropyLoss``, torchmetrics and HF; 255 for void pixels in many segmentation sets;
            ``None``: every label counts). A sample whose every label is ignored is dropped; within a sample
            (tokens, pixels) the ignored positions are 0 in y and h and out of the filter's sums and norms.
        warn_auto_choice: emit that warning; ``False`` for a second metric on the same samples, which makes the
            same choice (so a user sees it once).
        kwargs: forwarded to ``torchmetrics.Metric``.

    Example:
        >>> from fp_lightning.metrics import ProjectedSpectralError
        >>> metric = ProjectedSpectralError(n_freqs=8, class_dim=-1)
        >>> logits = torch.randn(20, 3, 4, generator=torch.Generator().manual_seed(0))   # (n, T, C)
        >>> metric.update(torch.rand(20, 5), logits, torch.randint(0, 4, (20, 3)))
        >>> _ = metric.compute()
        >>> metric.resolved_output_transform
        'softmax'
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        output_transform: OutputTransform = "auto",
        class_dim: int = 1,
        ignore_index: int | None = -100,
        warn_auto_choice: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        validate_output_transform(output_transform)
        self.output_transform = output_transform
        self.class_dim = check_class_dim(class_dim)
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"`ignore_index` must be an int or None, got {ignore_index!r}.")
        self.ignore_index = ignore_index
        self.warn_auto_choice = bool(warn_auto_choice)
        self._auto_choice: str | None = None
        self.add_state("inputs", default=[], dist_reduce_fx="cat")
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self._fit_names: tuple[str, ...] = ()

    # ------------------------------------------------------------------ frozen fits
    def _add_fit_state(self, name: str, dtype: torch.dtype, persistent: bool = True) -> None:
        """Register the buffer ``name`` of a frozen fit, empty (not fitted yet)."""
        self.register_buffer(name, torch.empty(0, dtype=dtype), persistent=persistent)
        self._fit_names = (*self._fit_names, name)

    def _get_fit(self, name: str) -> torch.Tensor | None:
        """The fitted tensor, or ``None`` while it is empty (not fitted)."""
        value = self._buffers[name]
        return None if value is None or value.numel() == 0 else value

    def _set_fit(self, name: str, value: torch.Tensor | None) -> None:
        """Store a fit (``None``: forget it) on the metric's device, in the buffer's dtype."""
        current = self._buffers[name]
        assert current is not None
        if value is None:
            value = torch.empty(0, dtype=current.dtype)
        self._buffers[name] = value.detach().to(device=current.device, dtype=current.dtype)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], exclude_state: Sequence[str] = "") -> Metric:
        # The fits follow the metric to another device but keep their dtype: a float32 copy of a float64 direction
        # would move every projected coordinate, and integer frequencies must stay integers.
        fits = {name: self._buffers.pop(name) for name in self._fit_names}
        # torchmetrics would cast the cached result of compute() too, and a cast to a real dtype drops the
        # imaginary part of the spectra; forget it instead (the next compute() recomputes)
        self._computed = None
        try:
            return super()._apply(fn, exclude_state)
        finally:
            for name, value in fits.items():
                assert value is not None
                device = fn(torch.zeros(1, device=value.device)).device
                self._buffers[name] = value.to(device)

    @property
    def resolved_output_transform(self) -> OutputTransform | None:
        """The transform in use: the given one, or what ``"auto"`` resolved to (``None`` before the first compute).

        Set it (to ``"softmax"``, ``"sigmoid"``, ``"identity"`` or ``None``) to restore a frozen ``"auto"`` choice.

        Example:
            >>> from fp_lightning.metrics import LowHighFrequencyError
            >>> LowHighFrequencyError(output_transform="sigmoid").resolved_output_transform
            'sigmoid'
            >>> LowHighFrequencyError().resolved_output_transform is None   # "auto", nothing computed yet
            True
        """
        return self._auto_choice if self.output_transform == "auto" else self.output_transform

    @resolved_output_transform.setter
    def resolved_output_transform(self, name: str | None) -> None:
        if name is not None and name not in RESOLVED_TRANSFORMS:
            raise ValueError(f"`resolved_output_transform` must be one of {RESOLVED_TRANSFORMS} or None, "
                             f"got {name!r}.")
        self._auto_choice = name

    def get_extra_state(self) -> dict[str, str | None]:
        """The frozen ``"auto"`` choice, saved in ``state_dict()`` under ``_extra_state``.

        Example:
            >>> from fp_lightning.metrics import LowHighFrequencyError
            >>> metric = LowHighFrequencyError()
            >>> metric.resolved_output_transform = "softmax"
            >>> metric.state_dict()["_extra_state"]
            {'resolved_output_transform': 'softmax'}
        """
        return {"resolved_output_transform": self._auto_choice}

    def set_extra_state(self, state: dict[str, str | None]) -> None:
        """Restore the frozen ``"auto"`` choice from ``state_dict()``.

        Example:
            >>> from fp_lightning.metrics import LowHighFrequencyError
            >>> metric = LowHighFrequencyError()
            >>> metric.load_state_dict({"_extra_state": {"resolved_output_transform": "sigmoid"}})
            <All keys matched successfully>
            >>> metric.resolved_output_transform
            'sigmoid'
        """
        self.resolved_output_transform = state.get("resolved_output_transform")

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # state dicts saved before the choice was kept have no entry: keep the current choice instead of failing
        state_dict.setdefault(prefix + "_extra_state", self.get_extra_state())
        for name in self._fit_names:
            if name in self._non_persistent_buffers_set:
                continue
            key, current = prefix + name, self._buffers[name]
            assert current is not None
            if key not in state_dict:  # saved before the fits were Metric state: keep the current fit
                state_dict[key] = current
            elif isinstance(state_dict[key], torch.Tensor):
                # the saved fit decides the shape (fitted or empty), so resize before Module copies the values in
                incoming = state_dict[key]
                self._buffers[name] = torch.empty(incoming.shape, dtype=current.dtype, device=current.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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

    def _has_samples(self) -> bool:
        """Whether any sample was stored (``compute()`` before ``update()`` then gives NaN, as torchmetrics' do)."""
        return not (isinstance(self.inputs, list) and not self.inputs)

    def _gathered(
        self, float64_inputs: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Return ``(x (n, d), y (n, c) float64, h (n, c) float64, mask)`` of all stored samples.

        x is float64, or in its stored dtype with ``float64_inputs=False`` for callers that convert blocks
        themselves (a float64 copy of 5,000 CIFAR images is 123 MB per epoch). Samples whose every label is
        ``ignore_index`` are dropped; ``mask`` (n, c) marks the kept entries of the rest (``None``: all kept).
        """
        # after a DDP sync the list states are single concatenated tensors
        if isinstance(self.inputs, list) and not self.inputs:
            raise ValueError(f"{type(self).__name__}.compute() called before any update().")
        x, preds, target = _cat(self.inputs), _cat(self.preds), _cat(self.target)
        # a DDP sync turns the empty list of an index-less metric into an empty tensor: no index, not "no samples"
        index = dim_zero_cat(self.index) if isinstance(self.index, torch.Tensor) or self.index else None
        if index is not None and index.numel() > 0:
            order = _first_occurrence_order(index)
            x, preds, target = x[order], preds[order], target[order]
        y, h, mask = prepare_masked_targets(preds, target, self._frozen_transform(preds, target), self.class_dim,
                                            self.ignore_index)
        x = x.reshape(x.shape[0], -1)
        if mask is not None:
            rows = mask.any(dim=1)
            if int(rows.sum()) < 2:
                raise ValueError(f"{int(rows.sum())} of {rows.numel()} probe samples have a label other than "
                                 f"ignore_index={self.ignore_index}; at least 2 are needed.")
            if not bool(rows.all()):
                x, y, h, mask = x[rows.to(x.device)], y[rows], h[rows], mask[rows]
            if bool((mask == 1).all()):
                mask = None
        return (x.to(torch.float64) if float64_inputs else x), y, h, mask

    def _frozen_transform(self, preds: torch.Tensor, target: torch.Tensor) -> OutputTransform:
        """The given transform, or the ``"auto"`` choice made on the first call and frozen."""
        if self.output_transform != "auto":
            return self.output_transform
        if self._auto_choice is None:
            self._auto_choice, reason = resolve_output_transform(preds, target, self.class_dim, self.ignore_index)
            if reason is not None and self.warn_auto_choice:
                rank_zero_warn(reason, UserWarning)
        return self._auto_choice


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A list state concatenated along samples; a single stored tensor is returned as is, not copied.

    The monitor stores its probe in one update, and a copy of 5,000 ImageNet-size inputs is 750 MB even in uint8.
    """
    if isinstance(state, list) and len(state) == 1 and state[0].ndim > 0:
        return state[0]
    return dim_zero_cat(state)


def _first_occurrence_order(index: torch.Tensor) -> torch.Tensor:
    """Positions that keep one sample per distinct index, sorted by index."""
    sorted_index, order = torch.sort(index, stable=True)
    keep = torch.ones_like(sorted_index, dtype=torch.bool)
    keep[1:] = sorted_index[1:] != sorted_index[:-1]
    return order[keep]
