"""Turning (preds, target) into comparable real arrays: one-hot class labels, softmax/sigmoid outputs."""

from __future__ import annotations

from collections.abc import Callable

import torch

from fp_lightning.functional._validation import check_finite, check_same_length, check_tensor

__all__ = ["OUTPUT_TRANSFORMS", "OutputTransform", "prepare_targets", "validate_output_transform"]

OutputTransform = str | Callable[[torch.Tensor], torch.Tensor]
OUTPUT_TRANSFORMS = ("auto", "softmax", "sigmoid", "identity")


def prepare_targets(
    preds: torch.Tensor, target: torch.Tensor, output_transform: OutputTransform = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(y, h)`` as float64 (n, c) arrays that the spectrum and the filters compare.

    Convention:
        Integer ``target`` with ``preds`` of shape (n, C), C > 1, are class labels: y = one-hot(target, C) and,
        with ``output_transform="auto"``, h = softmax(preds) (the authors' filtering code does the same). Real
        targets are compared with raw outputs under ``"auto"``. ``"softmax"`` / ``"sigmoid"`` / ``"identity"`` or a
        callable (applied to preds) override the output side. Per-sample shapes beyond the first dim are
        flattened, so (n,), (n, 1) and (n, c) all work.

    Args:
        preds: model outputs, (n,) or (n, ...).
        target: targets, integer labels (n,) or real values with the same per-sample size as ``preds``.
        output_transform: ``"auto"``, ``"softmax"``, ``"sigmoid"``, ``"identity"`` or a callable.

    Raises:
        ValueError: lengths differ, labels out of range, non-finite values, or shapes that do not match.

    Example:
        >>> y, h = prepare_targets(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> y
        tensor([[1., 0.],
                [0., 1.]], dtype=torch.float64)
        >>> h[0]
        tensor([0.8808, 0.1192], dtype=torch.float64)
    """
    check_tensor("preds", preds)
    check_tensor("target", target)
    check_same_length(("preds", "target"), preds, target)
    validate_output_transform(output_transform)
    preds2d = preds.reshape(preds.shape[0], -1)
    check_finite("preds", preds2d)
    is_labels = not target.is_floating_point() and not target.is_complex() and target.ndim == 1 and preds2d.shape[1] > 1
    if is_labels:
        y = _one_hot("target", target, preds2d.shape[1])
    else:
        y = target.reshape(target.shape[0], -1).to(torch.float64)
        check_finite("target", y)
    h = _apply_transform(preds2d, output_transform, softmax_default=is_labels).to(torch.float64)
    if h.shape != y.shape:
        raise ValueError(f"`preds` of per-sample size {h.shape[1]} does not match `target` of per-sample size "
                         f"{y.shape[1]}; the model's outputs must have the targets' shape (or be logits for "
                         "integer class labels).")
    return y, h


def validate_output_transform(output_transform: OutputTransform) -> None:
    """Raise ``ValueError`` naming ``output_transform`` unless it is a known name or a callable."""
    if callable(output_transform):
        return
    if output_transform not in OUTPUT_TRANSFORMS:
        raise ValueError(f"`output_transform` must be one of {OUTPUT_TRANSFORMS} or a callable, "
                         f"got {output_transform!r}.")


def _one_hot(name: str, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"`{name}` holds labels in [{int(labels.min())}, {int(labels.max())}], outside "
                         f"[0, {num_classes - 1}] for {num_classes} outputs.")
    return torch.nn.functional.one_hot(labels, num_classes).to(torch.float64)


def _apply_transform(preds: torch.Tensor, transform: OutputTransform, *, softmax_default: bool) -> torch.Tensor:
    if callable(transform):
        out = transform(preds)
        return out.reshape(out.shape[0], -1)
    if transform == "softmax" or (transform == "auto" and softmax_default):
        return torch.softmax(preds.to(torch.float64), dim=1)
    if transform == "sigmoid":
        return torch.sigmoid(preds.to(torch.float64))
    return preds
