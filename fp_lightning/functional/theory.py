"""Low/high-frequency split of the loss (theory paper §3.1, Eq. (32)–(39)) and the low share of its decrease."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fp_lightning.functional._validation import check_finite, check_int, check_ndim, check_tensor

__all__ = ["frequency_loss_split", "low_frequency_share"]


def frequency_loss_split(
    target_spec: torch.Tensor, output_spec: torch.Tensor, cutoff: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the spectral loss at the cutoff η into L_low = Σ_{k≤η} q(k) and L_high = Σ_{η<k<K} q(k).

    Convention:
        q(k) = ‖F[h](k) − F[y](k)‖² (squared 2-norm over channels) on the full spectra k = 0..K−1 of the projected
        line; no normalization (divide both by the same constant if you need one: the low share is unchanged).

    Args:
        target_spec: F[y](k), k = 0..K−1, complex (K,) or (K, c).
        output_spec: F[h](k), same shape.
        cutoff: η, an int with 0 ≤ η < K − 1 so that both parts are non-empty.

    Returns:
        ``(L_low, L_high)`` as 0-d float64 tensors.

    Example:
        >>> y = torch.tensor([1 + 0j, 2 + 0j, 3 + 0j])
        >>> h = torch.tensor([0j, 2 + 0j, 1 + 0j])
        >>> low, high = frequency_loss_split(y, h, cutoff=1)
        >>> float(low), float(high)
        (1.0, 4.0)
    """
    check_tensor("target_spec", target_spec)
    check_tensor("output_spec", output_spec)
    check_ndim("target_spec", target_spec, (1, 2))
    if output_spec.shape != target_spec.shape:
        raise ValueError(f"`output_spec` shape {tuple(output_spec.shape)} must equal `target_spec` shape "
                         f"{tuple(target_spec.shape)}.")
    check_finite("target_spec", target_spec)
    check_finite("output_spec", output_spec)
    n_freqs = target_spec.shape[0]
    check_int("cutoff", cutoff, 0, n_freqs - 2)
    diff = (output_spec - target_spec).to(torch.complex128)
    q = diff.abs().square()
    q = q.sum(dim=1) if q.ndim == 2 else q
    return q[: cutoff + 1].sum(), q[cutoff + 1 :].sum()


def low_frequency_share(
    loss_low: Sequence[float] | torch.Tensor, loss_high: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Share of the loss change over a window that comes from low frequencies.

    Convention:
        share = Σ|ΔL_low| / (Σ|ΔL_low| + Σ|ΔL_high|), the sums over consecutive differences of the recorded
        values within the window (theory paper Eq. (39)–(40) compare the decrements of the two parts). A share near
        1 means training is still fitting low frequencies; near 0, the fit has turned to high frequencies.

    Args:
        loss_low: L_low at ≥ 2 consecutive recordings.
        loss_high: L_high at the same recordings.

    Returns:
        0-d float64 tensor in [0, 1]; 0.5 by convention when neither part changed (no evidence either way).

    Example:
        >>> float(low_frequency_share([4.0, 2.0, 1.0], [1.0, 0.5, 0.5]))
        0.857142...
    """
    low = torch.as_tensor(loss_low, dtype=torch.float64)
    high = torch.as_tensor(loss_high, dtype=torch.float64)
    check_ndim("loss_low", low, (1,))
    if high.shape != low.shape:
        raise ValueError(f"`loss_high` shape {tuple(high.shape)} must equal `loss_low` shape {tuple(low.shape)}.")
    if low.shape[0] < 2:
        raise ValueError(f"`loss_low` needs at least 2 recordings to form a change, got {low.shape[0]}.")
    check_finite("loss_low", low)
    check_finite("loss_high", high)
    d_low = low.diff().abs().sum()
    d_high = high.diff().abs().sum()
    total = d_low + d_high
    return torch.where(total > 0, d_low / torch.where(total > 0, total, 1.0), torch.tensor(0.5, dtype=torch.float64))
