"""The theory paper's quantities (§3.1, Eq. (32)–(44)): the loss split at a cutoff η and how loss and output change.

Convention (stated once; the functions below refer to it):
    On the projected spectrum k = 0 … K − 1 (see :func:`~fp_lightning.functional.nufft_spectrum`), the loss density
    is q(k) = ‖F[h](k) − F[y](k)‖² (squared 2-norm over output channels, Eq. (37)). At a cutoff η the loss splits
    into L⁻_η = Σ_{k ≤ η} q(k) and L⁺_η = Σ_{k > η} q(k), and L = L⁻_η + L⁺_η (Eq. (36); the paper's ball
    B_η = {|ξ| ≤ η} is the low part, its complement the high part). Time derivatives become finite differences
    between recordings: ΔL(t) = L(t) − L(t − 1). The curves over η take η = 0 … K − 2, the K − 1 cutoffs whose high
    part is not empty. Where a denominator is zero the ratio is NaN (no change, no evidence either way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from fp_lightning.functional._validation import (
    check_choice,
    check_finite,
    check_int,
    check_ndim,
    check_spectrum_pair,
)

__all__ = ["frequency_loss_split", "intermediate_stage_ratio", "loss_change_ratio", "loss_density",
           "low_frequency_share", "output_change_ratio"]


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
    q = loss_density(target_spec, output_spec)
    check_int("cutoff", cutoff, 0, q.shape[0] - 2)
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


def loss_density(target_spec: torch.Tensor, output_spec: torch.Tensor) -> torch.Tensor:
    """The loss density q(k) = ‖F[h](k) − F[y](k)‖² at every k (module Convention, Eq. (37)).

    Args:
        target_spec: F[y](k), k = 0..K−1, complex (K,) or (K, c).
        output_spec: F[h](k), same shape.

    Returns:
        (K,) float64 tensor; its sum over k ≤ η is :func:`frequency_loss_split`'s L_low.

    Example:
        >>> y = torch.tensor([1 + 0j, 2 + 0j, 3 + 0j])
        >>> h = torch.tensor([0j, 2 + 0j, 1 + 0j])
        >>> loss_density(y, h).tolist()
        [1.0, 0.0, 4.0]
    """
    check_spectrum_pair(target_spec, output_spec)
    q = (output_spec - target_spec).to(torch.complex128).abs().square()
    return q.sum(dim=1) if q.ndim == 2 else q


def loss_change_ratio(densities: Sequence[Sequence[float]] | torch.Tensor) -> torch.Tensor:
    """|ΔL⁺_η| / |ΔL| at every cutoff η, summed over consecutive recordings (Eq. (38) and its time average (39)).

    Convention:
        module Convention; with T recordings q_1 … q_T of the loss density, ratio(η) = Σ_t |L⁺_η(t) − L⁺_η(t−1)| /
        Σ_t |L(t) − L(t−1)| over t = 2 … T. Two recordings give Eq. (38) with finite differences, more give the
        time-averaged Eq. (39). The ratio may exceed 1 when the low and high parts move in opposite directions
        (L need not decrease: the paper's reason for averaging). The F-Principle predicts it falls as η grows early
        in training (the high part changes little).

    Args:
        densities: (T, K) loss densities q(k) of T ≥ 2 consecutive recordings (:func:`loss_density`).

    Returns:
        (K − 1,) float64 tensor, entry η for cutoff η = 0 … K − 2; NaN everywhere when L did not change.

    Example:
        >>> q = [[4.0, 2.0, 1.0], [1.0, 1.0, 1.0]]   # L: 7 → 3; L⁺_0: 3 → 2; L⁺_1: 1 → 1
        >>> loss_change_ratio(q).tolist()
        [0.25, 0.0]
    """
    q = _densities("densities", densities)
    tails = _tail_sums(q)  # (T, K − 1): L⁺_η for η = 0 … K − 2
    total = q.sum(dim=1)
    numerator = tails.diff(dim=0).abs().sum(dim=0)
    denominator = total.diff().abs().sum()
    return numerator / denominator if denominator > 0 else torch.full_like(numerator, float("nan"))


def output_change_ratio(output_before: torch.Tensor, output_after: torch.Tensor) -> torch.Tensor:
    """‖Δĥ‖ over k > η relative to ‖Δĥ‖ over every k, at every cutoff η (Eq. (40) with a finite difference).

    Convention:
        module Convention; Δĥ(k) = F[h_after](k) − F[h_before](k) on the projected spectrum, ‖·‖ the 2-norm over k
        (and output channels): ratio(η) = sqrt(Σ_{k>η} ‖Δĥ(k)‖²) / sqrt(Σ_k ‖Δĥ(k)‖²). It needs no target, so it
        holds for any loss. Near 0 at large η means the output changed only at low frequencies.

    Args:
        output_before: F[h](k), k = 0..K−1, complex (K,) or (K, c), at the earlier recording.
        output_after: the same at the later recording.

    Returns:
        (K − 1,) float64 tensor for η = 0 … K − 2; NaN everywhere when the output did not change.

    Example:
        >>> before = torch.tensor([0j, 0j, 0j])
        >>> after = torch.tensor([0j, 3 + 0j, 4 + 0j])
        >>> output_change_ratio(before, after).tolist()
        [1.0, 0.8]
    """
    change = loss_density(output_before, output_after)  # ‖Δĥ(k)‖², the same formula as q(k)
    tails = _tail_sums(change[None, :])[0]
    total = change.sum()
    return (tails / total).sqrt() if total > 0 else torch.full_like(tails, float("nan"))


def intermediate_stage_ratio(
    densities: Sequence[Sequence[float]] | torch.Tensor,
    steps: Sequence[int] | torch.Tensor,
    cutoff: int,
    start: int = 0,
    form: Literal["integral", "difference"] = "integral",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The high-frequency ratio of the loss change over [T₁, T₂] against |T₂ − T₁| (Eq. (44), Fig. 1c).

    Convention:
        module Convention; T₁ is the recording ``start``, T₂ runs over every later recording. ``form="integral"`` is
        Eq. (44)'s Σ_{T₁<t≤T₂} |ΔL⁺_η(t)| / Σ_{T₁<t≤T₂} |ΔL(t)| (:func:`loss_change_ratio` on the window);
        ``form="difference"`` is the ratio drawn in the paper's Fig. 1c, |L⁺_η(T₁) − L⁺_η(T₂)| / |L(T₁) − L(T₂)|.
        The paper's bound (44) grows like sqrt(T₂ − T₁): in the intermediate stage the ratio grows with the span.

    Args:
        densities: (T, K) loss densities of the recordings, in order.
        steps: the T training steps (or epochs) of the recordings, increasing.
        cutoff: η, 0 ≤ η ≤ K − 2.
        start: index of the recording T₁ (0 ≤ start ≤ T − 2).
        form: ``"integral"`` (Eq. (44)) or ``"difference"`` (Fig. 1c).

    Returns:
        ``(spans, ratios)``: float64 tensors of length T − 1 − start, spans = steps[T₂] − steps[T₁]; NaN where L
        did not change over the window.

    Example:
        >>> q = [[4.0, 2.0, 1.0], [2.0, 2.0, 1.0], [1.0, 1.0, 1.0]]
        >>> spans, ratios = intermediate_stage_ratio(q, [0, 10, 20], cutoff=0)
        >>> spans.tolist(), ratios.tolist()
        ([10.0, 20.0], [0.0, 0.25])
    """
    q = _densities("densities", densities)
    steps_t = torch.as_tensor(steps, dtype=torch.float64)
    check_ndim("steps", steps_t, (1,))
    if steps_t.shape[0] != q.shape[0]:
        raise ValueError(f"`steps` has {steps_t.shape[0]} entries for {q.shape[0]} recordings in `densities`.")
    if bool((steps_t.diff() <= 0).any()):
        raise ValueError("`steps` must be strictly increasing.")
    check_int("cutoff", cutoff, 0, q.shape[1] - 2)
    check_int("start", start, 0, q.shape[0] - 2)
    check_choice("form", form, ("integral", "difference"))
    high = _tail_sums(q)[start:, cutoff]
    total = q.sum(dim=1)[start:]
    if form == "integral":
        numerator = high.diff().abs().cumsum(0)
        denominator = total.diff().abs().cumsum(0)
    else:
        numerator = (high[1:] - high[0]).abs()
        denominator = (total[1:] - total[0]).abs()
    ratios = torch.where(denominator > 0, numerator / torch.where(denominator > 0, denominator, 1.0),
                         torch.tensor(float("nan"), dtype=torch.float64))
    return steps_t[start + 1:] - steps_t[start], ratios


def _densities(name: str, densities: Sequence[Sequence[float]] | torch.Tensor) -> torch.Tensor:
    q = torch.as_tensor(densities, dtype=torch.float64)
    check_ndim(name, q, (2,))
    if q.shape[0] < 2 or q.shape[1] < 2:
        raise ValueError(f"`{name}` must be (T, K) with T ≥ 2 recordings and K ≥ 2 frequencies, got "
                         f"{tuple(q.shape)}.")
    return check_finite(name, q)


def _tail_sums(q: torch.Tensor) -> torch.Tensor:
    """(T, K − 1): Σ_{k>η} q(k) for η = 0 … K − 2 (reverse cumulative sums)."""
    return q.flip(-1).cumsum(-1).flip(-1)[:, 1:]
