"""Relative spectral error Δ_F(k) between target and output spectra (paper Eq. (1))."""

from __future__ import annotations

import torch

from fp_lightning.functional._validation import check_spectrum_pair

__all__ = ["relative_spectral_error"]


def relative_spectral_error(target_spec: torch.Tensor, output_spec: torch.Tensor) -> torch.Tensor:
    """Δ_F(k) = ‖F[y](k) − F[h](k)‖₂ / ‖F[y](k)‖₂, the norm over channels.

    Convention:
        The difference is taken between complex coefficients, not magnitudes (paper Eq. (1)); with c channels the
        2-norm runs over the c complex numbers at each k. For c = 1 this is |F[y](k) − F[h](k)| / |F[y](k)|.

    Args:
        target_spec: F[y] at the chosen frequencies, complex (K,) or (K, c).
        output_spec: F[h] at the same frequencies, same shape.

    Returns:
        Real tensor (K,) of Δ_F, float64 for complex128 input (float32 for complex64).

    Raises:
        ValueError: shapes differ, non-finite entries, or ‖F[y](k)‖ = 0 at some k (Δ_F undefined there).

    Example:
        >>> y = torch.tensor([2 + 0j, 1j])
        >>> h = torch.tensor([1 + 0j, 0j])
        >>> relative_spectral_error(y, h)
        tensor([0.5000, 1.0000])
    """
    check_spectrum_pair(target_spec, output_spec)
    reduce_dims = (1,) if target_spec.ndim == 2 else ()
    denominator = _channel_norm(target_spec, reduce_dims)
    if bool((denominator == 0).any()):
        zeros = (denominator == 0).nonzero().flatten().tolist()
        raise ValueError(f"`target_spec` is zero at position(s) {zeros}: Δ_F is undefined there; track other "
                         "frequencies (e.g. the peaks from select_frequencies).")
    return _channel_norm(target_spec - output_spec, reduce_dims) / denominator


def _channel_norm(spec: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return spec.abs() if not dims else torch.linalg.vector_norm(spec, dim=dims)
