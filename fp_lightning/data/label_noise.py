"""Symmetric label noise: replace an exact fraction of the class labels by random classes, reproducibly."""

from __future__ import annotations

import torch

__all__ = ["corrupt_labels"]


def corrupt_labels(
    labels: torch.Tensor,
    fraction: float,
    num_classes: int,
    *,
    mode: str = "other",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace ``round(fraction · n)`` labels, chosen at random, by symmetric noise.

    Convention:
        Exactly ``m = round(fraction · n)`` positions are chosen uniformly without replacement. With
        ``mode="other"`` each chosen label is replaced by a class drawn uniformly among the ``num_classes − 1``
        *other* classes, so exactly ``m`` labels change. With ``mode="all"`` it is drawn uniformly among all
        ``num_classes`` classes (the "random labels" convention), so about ``m / num_classes`` of the chosen labels
        keep their value. All draws come from ``generator`` (a fresh one seeded with 0 when ``None``); the global
        RNG is never used.

    Args:
        labels: integer class labels in ``0 … num_classes − 1``, shape (n,).
        fraction: share of labels to corrupt, in [0, 1].
        num_classes: number of classes (≥ 2).
        mode: ``"other"`` or ``"all"``.
        generator: a seeded ``torch.Generator`` (CPU).

    Returns:
        ``(noisy_labels, chosen)``: a new tensor like ``labels``, and a bool mask (n,) of the chosen positions.

    Raises:
        ValueError: bad ``fraction``, ``num_classes``, ``mode`` or labels out of range.

    Example:
        >>> y = torch.zeros(10, dtype=torch.long)
        >>> noisy, chosen = corrupt_labels(y, 0.3, 10, generator=torch.Generator().manual_seed(0))
        >>> int(chosen.sum()), int((noisy != y).sum())
        (3, 3)
    """
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"`label_noise` (fraction) must be in [0, 1], got {fraction!r}.")
    if not (isinstance(num_classes, int) and num_classes >= 2):
        raise ValueError(f"`num_classes` must be an int ≥ 2, got {num_classes!r}.")
    if mode not in ("other", "all"):
        raise ValueError(f"`label_noise_mode` must be 'other' or 'all', got {mode!r}.")
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.is_complex():
        raise ValueError(f"`labels` must be a 1-D integer tensor, got {tuple(labels.shape)} {labels.dtype}.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"`labels` must lie in 0..{num_classes - 1}.")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    n = labels.numel()
    m = round(fraction * n)
    chosen = torch.zeros(n, dtype=torch.bool)
    idx = torch.randperm(n, generator=generator)[:m]
    chosen[idx] = True
    noisy = labels.clone().cpu()
    if mode == "other":
        shift = torch.randint(1, num_classes, (m,), generator=generator)
        noisy[idx] = (noisy[idx] + shift) % num_classes
    else:
        noisy[idx] = torch.randint(0, num_classes, (m,), generator=generator).to(noisy.dtype)
    return noisy.to(labels.device), chosen.to(labels.device)
