"""Choice of the frequencies to track: the peaks of the target's spectrum (paper Fig. 1 and Fig. 3, black dots)."""

from __future__ import annotations

import torch

from fp_lightning.functional._validation import check_finite, check_ndim, check_optional_int, check_tensor

__all__ = ["select_frequencies"]


def select_frequencies(amplitude: torch.Tensor, max_freqs: int | None = None) -> torch.Tensor:
    """Return the strict local maxima of ``amplitude`` over 1 ≤ k ≤ K − 2, the ``max_freqs`` largest, in ascending k.

    Convention:
        k is a peak when |F|(k) > |F|(k − 1) and |F|(k) > |F|(k + 1) for 2 ≤ k ≤ K − 2. k = 1 counts when
        |F|(1) > |F|(2): k = 0 is the mean, never tracked, so it is no neighbour to beat. k = K − 1 is never a peak:
        its right neighbour |F|(K) was not computed, so whether it is a maximum is unknown. Of the peaks, the
        ``max_freqs`` with the largest amplitude are kept (ties broken towards low k) and returned sorted by k. A
        flat plateau of equal values is not a strict maximum and gives no peak.

    Args:
        amplitude: |F[y](k)| for k = 0..K−1, shape (K,), or (K, c) for c channels (then the norm over channels).
        max_freqs: keep at most this many peaks (``None`` keeps all).

    Returns:
        LongTensor of selected k, ascending, on ``amplitude``'s device.

    Raises:
        ValueError: ``amplitude`` is not (K,) / (K, c), not finite, K < 3, ``max_freqs`` < 1, or no peak exists.

    Example:
        >>> amp = torch.tensor([9.0, 5.0, 1.0, 3.0, 0.5, 2.0, 0.2, 4.0])
        >>> select_frequencies(amp)  # k = 7 is the last computed frequency: not a peak
        tensor([1, 3, 5])
        >>> select_frequencies(amp, max_freqs=2)
        tensor([1, 3])
    """
    check_tensor("amplitude", amplitude)
    check_ndim("amplitude", amplitude, (1, 2))
    amp = amplitude.abs().to(torch.float64)
    amp = amp.norm(dim=1) if amp.ndim == 2 else amp
    check_finite("amplitude", amp)
    if amp.shape[0] < 3:
        raise ValueError(f"`amplitude` needs at least 3 frequencies to find peaks, got {amp.shape[0]}.")
    max_freqs = check_optional_int("max_freqs", max_freqs, 1)
    # candidates k = 1 … K−2; k = 1 only needs to beat k = 2 (the mean at k = 0 is no competitor)
    inner = amp[1:-1]
    left = torch.cat([amp.new_tensor([float("-inf")]), amp[1:-2]])
    is_peak = (inner > left) & (inner > amp[2:])
    peaks = is_peak.nonzero().flatten() + 1
    if peaks.numel() == 0:
        raise ValueError("`amplitude` has no local maximum for 1 ≤ k ≤ K − 2; pass an explicit list of frequencies.")
    if max_freqs is not None and peaks.numel() > max_freqs:
        # stable sort on −amplitude keeps the lower k first among equal amplitudes
        order = torch.sort(-amp[peaks], stable=True).indices[:max_freqs]
        peaks = peaks[order]
    return torch.sort(peaks).values
