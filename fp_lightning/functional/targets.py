"""Turning (preds, target) into comparable real arrays: one-hot class labels, softmax/sigmoid outputs.

Targets come as people have them: integer class labels per sample or per position (pixels, tokens), 0/1 floats for
binary or multi-label classifiers, soft labels, or real regression values. ``resolve_output_transform`` tells which
transform makes the outputs comparable with them; ``prepare_targets`` applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from fp_lightning.functional._validation import check_finite, check_same_length, check_tensor

__all__ = [
    "OUTPUT_TRANSFORMS",
    "RESOLVED_TRANSFORMS",
    "OutputTransform",
    "check_class_dim",
    "prepare_masked_targets",
    "prepare_targets",
    "resolve_output_transform",
    "validate_output_transform",
]

#: A transform by name, or a callable ``preds -> probabilities``. The names are a ``Literal`` so that a LightningCLI
#: config naming another transform fails at parsing, before training.
OutputTransform = Literal["auto", "softmax", "sigmoid", "identity"] | Callable[[torch.Tensor], torch.Tensor]
OUTPUT_TRANSFORMS = ("auto", "softmax", "sigmoid", "identity")
#: what ``"auto"`` resolves to
RESOLVED_TRANSFORMS = ("softmax", "sigmoid", "identity")
#: rows of probabilities may sum to 1 within this (float32 softmax outputs of 1000 classes are off by ~1e-6);
#: half-precision rows get a few of their dtype's eps instead (a bfloat16 softmax row is off by up to ~1e-2)
_SUM_TOLERANCE = 1e-4


def prepare_targets(
    preds: torch.Tensor, target: torch.Tensor, output_transform: OutputTransform = "auto", class_dim: int = 1,
    ignore_index: int | None = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(y, h)`` as float64 (n, c) arrays that the spectrum and the filters compare.

    Convention:
        The class axis of ``preds`` is ``class_dim`` (torch's ``cross_entropy`` convention: 1, so (n, C),
        (n, C, T), (n, C, H, W); pass -1 for (n, T, C) logits). Integer ``target`` whose shape is that of
        ``preds`` without the class axis ((n,) or (n, 1) labels for (n, C) logits, (n, H, W) for (n, C, H, W),
        (n, T) for (n, T, C) with ``class_dim=-1``) are class labels: y = one-hot(target, C). Both sides are
        arranged with the class axis moved last and flattened to (n, positions·C), so column j·C + c of y and h is
        class c at position j. Any other target must have the outputs' per-sample size and is compared value by
        value (same-shape targets also get their class axis moved last). The output side: ``"softmax"`` along the
        class axis, ``"sigmoid"`` or ``"identity"`` elementwise, a callable applied to ``preds`` as they are (its
        result, if shaped like ``preds``, is arranged like them); ``"auto"`` takes the transform
        ``resolve_output_transform`` names for these very tensors (it decides anew on every call; a Metric
        resolves once and freezes the choice).

    Args:
        preds: model outputs, (n,) or (n, ...).
        target: integer labels (see above), or 0/1, soft-label or real values with the outputs' per-sample size.
        output_transform: ``"auto"``, ``"softmax"``, ``"sigmoid"``, ``"identity"`` or a callable.
        class_dim: the class axis of ``preds`` (not 0, the sample axis); negative values count from the end.
        ignore_index: class labels with this value are left out: their entries of y and h are 0
            (``prepare_masked_targets`` also returns which entries are kept). Default -100, as torch's
            ``cross_entropy``; ``None``: every label counts.

    Raises:
        ValueError: lengths differ, labels out of range, non-finite values, or shapes that do not match (naming
            ``class_dim`` when another class axis would fit).

    Example:
        >>> y, h = prepare_targets(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> y
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
        >>> h[0]
        tensor([0.8808, 0.1192], dtype=torch.float64)
        >>> logits = torch.zeros(1, 2, 3)                 # (n, T, C): 2 tokens, 3 classes
        >>> y, h = prepare_targets(logits, torch.tensor([[2, 0]]), class_dim=-1)
        >>> y
        tensor([[0., 0., 1., 1., 0., 0.]], dtype=torch.float64)
    """
    y, h, _ = prepare_masked_targets(preds, target, output_transform, class_dim, ignore_index)
    return y, h


def prepare_masked_targets(
    preds: torch.Tensor, target: torch.Tensor, output_transform: OutputTransform = "auto", class_dim: int = 1,
    ignore_index: int | None = -100,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``prepare_targets``, and which entries of ``y`` and ``h`` are kept: ``(y, h, mask)``.

    Convention:
        Integer class labels equal to ``ignore_index`` (torch's ``CrossEntropyLoss`` convention: -100 pads HF token
        labels; segmentation often marks void pixels with 255) are left out: their C columns are 0 in y, in h and
        in ``mask`` (float64 (n, c), 1 = kept). ``mask`` is ``None`` when nothing is ignored. Other targets
        (real values, 0/1 floats) have no ignored entries.

    Example:
        >>> y, h, mask = prepare_masked_targets(torch.zeros(1, 2, 3), torch.tensor([[2, -100]]), class_dim=-1)
        >>> mask
        tensor([[1., 1., 1., 0., 0., 0.]], dtype=torch.float64)
        >>> h
        tensor([[0.3333, 0.3333, 0.3333, 0.0000, 0.0000, 0.0000]], dtype=torch.float64)
    """
    validate_output_transform(output_transform)
    arranged = _arrange(preds, target, class_dim, ignore_index)
    if output_transform == "auto":
        output_transform, _ = _resolve(arranged, class_dim)
    h = _apply_transform(preds, arranged, output_transform)
    n = arranged.y.shape[0]
    y = arranged.y.reshape(n, -1)
    if arranged.kept is None:
        return y, h, None
    mask = arranged.kept.unsqueeze(-1).expand(arranged.y.shape).reshape(n, -1).to(torch.float64)
    return y * mask, h * mask, mask


def resolve_output_transform(
    preds: torch.Tensor, target: torch.Tensor, class_dim: int = 1, ignore_index: int | None = -100
) -> tuple[str, str | None]:
    """Name the transform that ``output_transform="auto"`` applies to these outputs, and say why when it guessed.

    Convention (the class axis and the label shapes as in ``prepare_targets``; "probabilities" means all outputs in
    [0, 1] and, for distributions, rows along the class axis summing to 1 within 1e-4, or within 4 eps of a
    half-precision dtype, e.g. 0.03 for bfloat16):

    - integer class labels: ``"softmax"`` (the outputs are logits), no reason;
    - targets that are distributions along the class axis (one-hot floats, soft labels: non-negative rows
      summing to 1, C > 1): ``"softmax"``;
    - other 0/1 targets (binary with one output per sample, as for ``BCEWithLogitsLoss``; multi-label): ``"sigmoid"``;
    - in each of these cases outputs that already are probabilities get ``"identity"``;
    - real regression targets: ``"identity"``, no reason.

    The reason (``None`` where the choice is the obvious one) states what was chosen and why, and names
    ``output_transform`` as the argument that overrides it; where the outputs might be a regression of 0/1 targets
    it says the raw values are compared.

    Args:
        preds: model outputs, (n,) or (n, ...).
        target: targets, as for ``prepare_targets``.
        class_dim: the class axis of ``preds``.
        ignore_index: class labels left out, as for ``prepare_targets``.

    Returns:
        ``(name, reason)``: a name from ``RESOLVED_TRANSFORMS`` and a message or ``None``.

    Example:
        >>> resolve_output_transform(torch.randn(4, 3), torch.tensor([0, 2, 1, 1]))
        ('softmax', None)
        >>> name, reason = resolve_output_transform(torch.tensor([-2.0, 3.0]), torch.tensor([0.0, 1.0]))
        >>> name, "output_transform" in reason
        ('sigmoid', True)
    """
    return _resolve(_arrange(preds, target, class_dim, ignore_index), class_dim)


def validate_output_transform(output_transform: OutputTransform) -> None:
    """Raise ``ValueError`` naming ``output_transform`` unless it is a known name or a callable.

    Example:
        >>> validate_output_transform("softmax")
        >>> validate_output_transform("tanh")
        Traceback (most recent call last):
        ...
        ValueError: `output_transform` must be one of ('auto', ...) or a callable, got 'tanh'.
    """
    if callable(output_transform):
        return
    if output_transform not in OUTPUT_TRANSFORMS:
        raise ValueError(f"`output_transform` must be one of {OUTPUT_TRANSFORMS} or a callable, "
                         f"got {output_transform!r}.")


def check_class_dim(class_dim: int) -> int:
    """Return ``class_dim`` if it is an int other than 0 (the sample axis), else raise ``ValueError`` naming it.

    Example:
        >>> check_class_dim(-1)
        -1
    """
    if isinstance(class_dim, bool) or not isinstance(class_dim, int) or class_dim == 0:
        raise ValueError(f"`class_dim` must be a non-zero int (1 for (n, C, ...) logits, -1 for (n, ..., C)); "
                         f"dim 0 holds the samples. Got {class_dim!r}.")
    return class_dim


# ---------------------------------------------------------------------- arranging both sides alike
@dataclass(frozen=True)
class _Arranged:
    """Targets and outputs with the class axis last: ``y`` float64 (n, *positions, C), ``preds`` the same shape."""

    y: torch.Tensor
    preds: torch.Tensor
    is_labels: bool
    #: dtype the targets came in (half-precision soft labels sum to 1 only within their precision)
    target_dtype: torch.dtype
    #: the axis of the original ``preds`` that was moved last (``None``: preds were only reshaped)
    moved_axis: int | None
    #: bool (n, *positions): labels not equal to ``ignore_index`` (``None``: every label is kept)
    kept: torch.Tensor | None = None


def _arrange(preds: torch.Tensor, target: torch.Tensor, class_dim: int, ignore_index: int | None) -> _Arranged:
    check_tensor("preds", preds)
    check_tensor("target", target)
    check_same_length(("preds", "target"), preds, target)
    check_class_dim(class_dim)
    check_finite("preds", preds if preds.is_floating_point() else preds.double())
    if _is_integer(target):
        axis = _label_axis(preds, target, class_dim)
        if axis is not None:
            labels = target.reshape(preds.shape[:axis] + preds.shape[axis + 1:])
            kept = None if ignore_index is None else labels != ignore_index
            if kept is not None and bool(kept.all()):
                kept = None
            if kept is not None:
                labels = torch.where(kept, labels, torch.zeros_like(labels))
            y = _one_hot("target", labels, preds.shape[axis], ignore_index)
            return _Arranged(y, preds.movedim(axis, -1), is_labels=True, target_dtype=target.dtype, moved_axis=axis,
                             kept=kept)
    return _arrange_values(preds, target, class_dim)


def _arrange_values(preds: torch.Tensor, target: torch.Tensor, class_dim: int) -> _Arranged:
    """Targets compared value by value: same shape (class axis moved last) or the same per-sample size."""
    y = target.to(torch.float64)
    check_finite("target", y)
    if preds.shape == target.shape and preds.ndim >= 3:
        axis = _normalized_axis(class_dim, preds.ndim)
        return _Arranged(y.movedim(axis, -1), preds.movedim(axis, -1), is_labels=False, target_dtype=target.dtype,
                         moved_axis=axis)
    n = preds.shape[0]
    if preds.shape[1:].numel() != target.shape[1:].numel():
        raise ValueError(f"`preds` of shape {tuple(preds.shape)} does not match `target` of shape "
                         f"{tuple(target.shape)}: the model's outputs must have the targets' per-sample size (or be "
                         "logits with a class axis at `class_dim` for integer class labels)."
                         + _float_labels_hint(y))
    return _Arranged(y.reshape(n, -1), preds.reshape(n, -1), is_labels=False, target_dtype=target.dtype,
                     moved_axis=None)


def _float_labels_hint(y: torch.Tensor) -> str:
    """A hint for class indices stored as floats (they would be labels as integers)."""
    if y.numel() and bool((y == y.round()).all()) and bool((y >= 0).all()):
        return " `target` holds whole numbers: if they are class indices, pass them as integers (`.long()`)."
    return ""


def _label_axis(preds: torch.Tensor, target: torch.Tensor, class_dim: int) -> int | None:
    """The axis of ``preds`` holding the classes of integer ``target``; ``None`` for integer values, not labels."""
    if preds.ndim == 2 and preds.shape[1] > 1 and target.ndim == 2 and target.shape[1] == 1:
        return 1  # (n, 1) labels with (n, C) logits
    if preds.ndim == target.ndim + 1:
        axis = _normalized_axis(class_dim, preds.ndim)
        if _without(preds.shape, axis) == tuple(target.shape) and preds.shape[axis] > 1:
            return axis
        if preds.shape[axis] > 1 or _without(preds.shape, axis) != tuple(target.shape):
            raise ValueError(_label_mismatch(preds, target, class_dim))
        return None
    if target.ndim >= 2 and preds.shape[1:].numel() != target.shape[1:].numel():
        raise ValueError(_label_mismatch(preds, target, class_dim))
    if target.ndim == 1 and preds.ndim > 2 and preds.shape[1:].numel() > 1:
        raise ValueError(_label_mismatch(preds, target, class_dim))
    return None


def _label_mismatch(preds: torch.Tensor, target: torch.Tensor, class_dim: int) -> str:
    shapes = f"integer `target` of shape {tuple(target.shape)} and `preds` of shape {tuple(preds.shape)}"
    fits = [d for d in range(1, preds.ndim) if _without(preds.shape, d) == tuple(target.shape)]
    if fits:
        hint = fits[0] - preds.ndim if fits[0] == preds.ndim - 1 else fits[0]
        return (f"{shapes}: the class axis `class_dim={class_dim}` leaves a shape other than the labels'; the "
                f"labels fit class_dim={hint} (e.g. -1 for (n, T, C) logits).")
    return (f"{shapes} do not fit: class labels need logits with one more axis, the class axis at "
            f"`class_dim={class_dim}` ((n, C) for (n,) labels, (n, C, H, W) for (n, H, W)). If the model returns "
            "several tensors, these outputs may be the wrong one: select the logits with `output_key`.")


def _without(shape: torch.Size, axis: int) -> tuple[int, ...]:
    return tuple(shape[:axis]) + tuple(shape[axis + 1:])


def _normalized_axis(class_dim: int, ndim: int) -> int:
    axis = class_dim + ndim if class_dim < 0 else class_dim
    if not 1 <= axis < ndim:
        raise ValueError(f"`class_dim={class_dim}` is not an axis of {ndim}-D outputs other than the sample axis 0.")
    return axis


def _is_integer(target: torch.Tensor) -> bool:
    return not target.is_floating_point() and not target.is_complex() and target.dtype != torch.bool


def _one_hot(name: str, labels: torch.Tensor, num_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        outside = labels[(labels < 0) | (labels >= num_classes)]
        values = sorted({int(v) for v in outside.unique()[:5]})
        hint = (f" If {values[0]} marks positions to leave out (padding, void pixels), pass ignore_index={values[0]}"
                f" (now {ignore_index})." if len(values) == 1 else
                " If one value marks positions to leave out (padding, void pixels), pass it as `ignore_index`.")
        raise ValueError(f"`{name}` holds labels in [{int(labels.min())}, {int(labels.max())}], outside "
                         f"[0, {num_classes - 1}] for {num_classes} outputs (values outside: {values}).{hint}")
    return torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)


# ---------------------------------------------------------------------- choosing and applying the transform
def _resolve(arranged: _Arranged, class_dim: int) -> tuple[str, str | None]:
    preds, y = arranged.preds.to(torch.float64), arranged.y
    preds_tol, target_tol = _sum_tolerance(arranged.preds.dtype), _sum_tolerance(arranged.target_dtype)
    if arranged.is_labels:
        if _are_distributions(preds, preds_tol):
            return "identity", _reason("identity", "the targets are integer class labels and the outputs already are "
                                       "probabilities (in [0, 1], summing to 1 along the class axis), so they are "
                                       "compared with the one-hot labels as they are", "softmax")
        return "softmax", None
    if y.shape[-1] > 1 and _are_distributions(y, target_tol):
        if _are_distributions(preds, preds_tol):
            return "identity", _reason("identity", "the targets are distributions along the class axis (one-hot or "
                                       "soft labels) and the outputs already are probabilities", "softmax")
        return "softmax", _reason("softmax", "the targets are distributions along the class axis (one-hot or soft "
                                  "labels) and the outputs are not, so they are taken as logits (as for "
                                  "cross_entropy with probability targets)", "identity")
    if bool(((y == 0) | (y == 1)).all()):
        if _in_unit_interval(preds):
            return "identity", _reason("identity", "the targets are 0/1 and the outputs lie in [0, 1]; they may be "
                                       "probabilities or a regression of the targets, so the raw values are compared",
                                       "sigmoid")
        return "sigmoid", _reason("sigmoid", "the targets are 0/1 (binary or multi-label) and the outputs leave "
                                  "[0, 1], so they are taken as logits (as for BCEWithLogitsLoss)", "identity")
    return "identity", _other_class_axis_hint(arranged, class_dim, target_tol)


def _reason(name: str, why: str, alternative: str) -> str:
    return (f"output_transform='auto' chose {name!r}: {why}. Pass output_transform={alternative!r} (or another "
            "transform) if that is not what the model outputs.")


def _other_class_axis_hint(arranged: _Arranged, class_dim: int, tolerance: float) -> str | None:
    """A regression choice, unless the targets are distributions along an axis other than the class axis."""
    y = arranged.y
    if arranged.moved_axis is None or y.ndim < 3:
        return None
    original = y.movedim(-1, arranged.moved_axis)
    for axis in range(1, original.ndim):
        if axis != arranged.moved_axis and _are_distributions(original.movedim(axis, -1), tolerance):
            hint = axis - original.ndim if axis == original.ndim - 1 else axis
            return (f"output_transform='auto' compares the raw values: the targets are not distributions along "
                    f"`class_dim={class_dim}` but they are along dim {hint}; if they are class probabilities pass "
                    f"class_dim={hint}, or an explicit output_transform.")
    return None


def _in_unit_interval(values: torch.Tensor) -> bool:
    return values.numel() > 0 and bool(values.min() >= 0) and bool(values.max() <= 1)


def _sum_tolerance(dtype: torch.dtype) -> float:
    return max(_SUM_TOLERANCE, 4 * torch.finfo(dtype).eps) if dtype.is_floating_point else _SUM_TOLERANCE


def _are_distributions(values: torch.Tensor, tolerance: float) -> bool:
    """All entries in [0, 1] and every row along the last axis (C ≥ 2) summing to 1 within ``tolerance``."""
    if not _in_unit_interval(values) or values.shape[-1] < 2:
        return False
    return bool(((values.sum(-1) - 1).abs() <= tolerance).all())


def _apply_transform(preds: torch.Tensor, arranged: _Arranged, transform: OutputTransform) -> torch.Tensor:
    n, size = arranged.y.shape[0], arranged.y.shape[1:].numel()
    if not callable(transform):
        h = arranged.preds.to(torch.float64)
        if transform == "softmax":
            h = torch.softmax(h, dim=-1)
        elif transform == "sigmoid":
            h = torch.sigmoid(h)
        return h.reshape(n, size)
    out = transform(preds)
    if arranged.moved_axis is not None and out.shape == preds.shape:
        out = out.movedim(arranged.moved_axis, -1)  # arranged like the targets
    if out.shape[0] != n or out.shape[1:].numel() != size:
        raise ValueError(f"`output_transform` returned shape {tuple(out.shape)}, which does not match the targets' "
                         f"per-sample size {size}; it must keep the outputs' shape.")
    return out.reshape(n, size).to(torch.float64)
