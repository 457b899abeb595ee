"""Prediction changes: how many predicted classes moved between two recordings (the signal of Label Wave).

Label Wave (Yuan, Feng, Liu, "Early Stopping Against Label Noise Without Validation Data", ICLR 2025) counts the
training samples whose predicted class changes from one epoch to the next. While a network fits what the labels
agree on, the count falls; when it starts to memorize the noisy labels, the predictions of the samples it fights
over flip back and forth and the count rises again. Its first local minimum marks the stop.
"""

from __future__ import annotations

import torch

from fp_lightning.functional._validation import check_tensor
from fp_lightning.functional.targets import check_class_dim

__all__ = ["predicted_classes", "prediction_changes"]


def predicted_classes(outputs: torch.Tensor, class_dim: int = 1) -> torch.Tensor:
    """The predicted class of every sample (and position): the argmax of ``outputs`` over ``class_dim``.

    Convention:
        ``outputs`` are class scores (logits or probabilities, any monotone transform gives the same argmax) with
        the classes on ``class_dim``: (n, C), (n, C, T), (n, C, H, W) for ``class_dim=1`` (torch's
        ``cross_entropy``), (n, T, C) for ``class_dim=-1``. Integer tensors are taken as classes already and
        returned unchanged. Ties go to the lowest class index (``torch.argmax``).

    Args:
        outputs: (n, ...) floating class scores, or integer classes.
        class_dim: the class axis (not 0, the sample axis).

    Returns:
        int64 classes, ``outputs``' shape without the class axis.

    Example:
        >>> predicted_classes(torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]]))
        tensor([1, 0])
    """
    check_tensor("outputs", outputs)
    if not outputs.is_floating_point():
        return outputs.long()
    class_dim = check_class_dim(class_dim)
    if outputs.ndim < 2:
        raise ValueError(f"`outputs` must have a class axis (n, C, ...), got shape {tuple(outputs.shape)}.")
    return outputs.argmax(dim=class_dim)


def prediction_changes(
    previous: torch.Tensor,
    current: torch.Tensor,
    class_dim: int = 1,
    target: torch.Tensor | None = None,
    ignore_index: int | None = -100,
) -> torch.Tensor:
    """The fraction of predictions whose class changed between two recordings of the same samples.

    Convention:
        c = #{i : argmax h_prev(i) ≠ argmax h_cur(i), i kept} / #{i kept}, over samples (and positions, for
        per-position outputs such as (n, C, T)); a position is kept unless its ``target`` equals ``ignore_index``
        (all are kept without ``target``). Classes come from :func:`predicted_classes` (floating scores) or are
        given (integer tensors). Label Wave's count is n · c.

    Args:
        previous: outputs (or classes) of the earlier recording.
        current: outputs (or classes) of this recording, the same samples in the same order.
        class_dim: the class axis of floating outputs.
        target: the labels, (n, ...) like the classes, to leave ``ignore_index`` positions out.
        ignore_index: label value left out (``None``: every position counts).

    Returns:
        0-d float64 tensor in [0, 1]; NaN when no position is kept.

    Raises:
        ValueError: the classes of ``previous`` and ``current`` (or ``target``) differ in shape (names the argument).

    Example:
        >>> before = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 5.0]])
        >>> after = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [0.0, 5.0]])
        >>> float(prediction_changes(before, after))   # one of four predictions flipped
        0.25
        >>> float(prediction_changes(before, after, target=torch.tensor([-100, 1, 0, 1])))  # sample 0 ignored
        0.0
    """
    old = predicted_classes(previous, class_dim)
    new = predicted_classes(current, class_dim)
    if old.shape != new.shape:
        raise ValueError(f"`previous` and `current` must predict the same samples: classes of shape "
                         f"{tuple(old.shape)} and {tuple(new.shape)}.")
    changed = old.to(new.device) != new
    if target is not None:
        check_tensor("target", target)
        if tuple(target.shape) != tuple(new.shape):
            raise ValueError(f"`target` must have the classes' shape {tuple(new.shape)}, got {tuple(target.shape)}.")
        if ignore_index is not None:
            kept = target.to(new.device) != ignore_index
            changed = changed[kept]
    if changed.numel() == 0:
        return torch.tensor(float("nan"), dtype=torch.float64)
    return changed.double().mean()
