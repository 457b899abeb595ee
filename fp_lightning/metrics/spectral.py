"""``ProjectedSpectralError``: Δ_F(k) of paper Eq. (1) on the inputs' first principal direction, as a Metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fp_lightning.functional.errors import relative_spectral_error
from fp_lightning.functional.projection import PrincipalProjection, principal_projection
from fp_lightning.functional.selection import select_frequencies
from fp_lightning.functional.spectrum import BACKENDS, nufft_spectrum
from fp_lightning.functional.targets import OutputTransform
from fp_lightning.functional.theory import frequency_loss_split
from fp_lightning.metrics._probe import ProbeSetMetric
from fp_lightning.plotting import plot_spectra

__all__ = ["ProjectedSpectralError"]


class ProjectedSpectralError(ProbeSetMetric):
    """Relative error Δ_F(k) between the spectra of targets and outputs along the first principal direction.

    Convention:
        The inputs are projected on their first principal direction and rescaled to [0, 1] (``principal_projection``);
        F[v](k) = Σ_j v_j exp(−2πi k x_j) for k = 0..K−1 (``nufft_spectrum``); Δ_F(k) = ‖F[y](k) − F[h](k)‖ /
        ‖F[y](k)‖ (``relative_spectral_error``). Targets and outputs are compared as ``prepare_targets`` arranges them
        (class axis ``class_dim`` moved last; integer labels one-hot, logits through softmax under
        ``output_transform="auto"``). The theory split L_low / L_high (``frequency_loss_split``) uses the
        cutoff η. The projection, the tracked frequencies and η are fitted on the first ``compute()`` (unless
        given) and then frozen — ``reset()`` keeps them — so values from epoch to epoch are comparable.

    Args:
        n_freqs: K, the number of frequencies k = 0..K−1 of the spectra.
        frequencies: ``"auto"`` (peaks of |F[y]|, see ``select_frequencies``) or an explicit list of k.
        max_freqs: with ``"auto"``, keep at most this many peaks (the largest).
        cutoff: η for the loss split, or ``"auto"``: the median tracked frequency (half of the peaks count as low).
        projection: a fitted ``PrincipalProjection`` to use instead of fitting one.
        backend: NUFFT backend, see ``nufft_spectrum``.
        output_transform: ``"auto"``, ``"softmax"``, ``"sigmoid"``, ``"identity"`` or a callable; ``"auto"`` is
            resolved on the first ``compute()`` and frozen (see ``ProbeSetMetric``).
        class_dim: the class axis of the outputs: 1 for (n, C), (n, C, T), (n, C, H, W) logits, -1 for (n, T, C).
        kwargs: ``warn_auto_choice`` (see ``ProbeSetMetric``) and ``torchmetrics.Metric``'s (e.g. ``sync_on_compute``).

    ``compute()`` returns a dict: ``delta_f`` (M,), ``freqs`` (M,), ``target_spectrum`` and ``output_spectrum``
    (complex (K, c)), ``loss_low``, ``loss_high`` (0-d) and ``cutoff``.

    Example:
        >>> x = torch.linspace(-1, 1, 601).unsqueeze(1)
        >>> y = 0.5 * torch.round(x / 0.5)             # paper Fig. 3 target: f0(x) = x, α = 0.5
        >>> metric = ProjectedSpectralError(n_freqs=40, max_freqs=6)
        >>> metric.update(x, x, y)                    # a network that outputs f0 exactly
        >>> out = metric.compute()
        >>> out["freqs"]
        tensor([ 1,  4,  9, 12, 20, 28])
        >>> bool(out["delta_f"][0] < out["delta_f"][-1])   # f0 holds the low peak, misses the high ones
        True
    """

    def __init__(
        self,
        n_freqs: int = 64,
        frequencies: str | Sequence[int] = "auto",
        max_freqs: int | None = 8,
        cutoff: int | str = "auto",
        projection: PrincipalProjection | None = None,
        backend: str = "auto",
        output_transform: OutputTransform = "auto",
        class_dim: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(output_transform=output_transform, class_dim=class_dim, **kwargs)
        self.n_freqs = _check_n_freqs(n_freqs)
        self.fitted_freqs = _check_frequencies(frequencies, self.n_freqs)
        if max_freqs is not None and (not isinstance(max_freqs, int) or max_freqs < 1):
            raise ValueError(f"`max_freqs` must be None or an int ≥ 1, got {max_freqs!r}.")
        self.max_freqs = max_freqs
        self.fitted_cutoff = _check_cutoff(cutoff, self.n_freqs)
        self.projection = projection
        if backend not in BACKENDS:  # checked here, so a typo fails at construction and not mid-training
            raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}.")
        self.backend = backend
        self._target_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def compute(self) -> dict[str, torch.Tensor]:
        """Δ_F at the tracked frequencies, the two spectra and the loss split on all stored samples."""
        x, y, h = self._gathered()
        if self.projection is None:
            self.projection = principal_projection(x)
        coords = self.projection.transform(x)[:, 0]
        target_spec = self._target_spectrum(coords, y)
        output_spec = nufft_spectrum(coords, h, self.n_freqs, backend=self.backend)
        if self.fitted_freqs is None:
            self.fitted_freqs = select_frequencies(target_spec.abs(), self.max_freqs).cpu()
        if self.fitted_cutoff is None:
            median = int(self.fitted_freqs[(len(self.fitted_freqs) - 1) // 2])
            self.fitted_cutoff = min(median, self.n_freqs - 2)
        freqs = self.fitted_freqs.to(target_spec.device)
        loss_low, loss_high = frequency_loss_split(target_spec, output_spec, self.fitted_cutoff)
        return {
            "delta_f": relative_spectral_error(target_spec[freqs], output_spec[freqs]),
            "freqs": freqs,
            "target_spectrum": target_spec,
            "output_spectrum": output_spec,
            "loss_low": loss_low,
            "loss_high": loss_high,
            "cutoff": torch.tensor(self.fitted_cutoff),
        }

    def _target_spectrum(self, coords: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """F[y], computed once for a probe set and reused while coordinates and targets stay the same."""
        cache = self._target_cache
        if cache is not None and torch.equal(cache[0], coords) and torch.equal(cache[1], y):
            return cache[2]
        spec = nufft_spectrum(coords, y, self.n_freqs, backend=self.backend)
        self._target_cache = (coords, y, spec)
        return spec

    def plot(self, val: dict[str, torch.Tensor] | None = None, ax: Axes | None = None) -> tuple[Figure, Axes]:
        """Draw |F[y]| and |F[h]| with the tracked frequencies marked (paper Fig. 1a).

        Example:
            >>> metric = ProjectedSpectralError(n_freqs=16)
            >>> x = torch.linspace(0, 1, 50).unsqueeze(1)
            >>> metric.update(x, torch.zeros(50, 1), torch.sin(12 * x))
            >>> fig, ax = metric.plot()
        """
        val = self.compute() if val is None else val
        amplitude = _channel_amplitude(val["target_spectrum"])
        output = _channel_amplitude(val["output_spectrum"])
        return plot_spectra(amplitude, output, val["freqs"].reshape(-1).cpu().tolist(), ax=ax)


def _channel_amplitude(spec: torch.Tensor) -> Any:
    amp = spec.abs()
    return (amp.norm(dim=1) if amp.ndim == 2 else amp).cpu().numpy()


def _check_n_freqs(n_freqs: int) -> int:
    if not isinstance(n_freqs, int) or isinstance(n_freqs, bool) or n_freqs < 3:
        raise ValueError(f"`n_freqs` must be an int ≥ 3 (peaks need neighbours), got {n_freqs!r}.")
    return n_freqs


def _check_frequencies(frequencies: str | Sequence[int], n_freqs: int) -> torch.Tensor | None:
    if isinstance(frequencies, str):
        if frequencies != "auto":
            raise ValueError(f"`frequencies` must be 'auto' or a list of ints, got {frequencies!r}.")
        return None
    freqs = list(frequencies)
    if not freqs:
        raise ValueError("`frequencies` must not be empty; pass 'auto' or at least one k.")
    if any(not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < n_freqs for k in freqs):
        raise ValueError(f"`frequencies` must be ints in [0, {n_freqs - 1}] (n_freqs={n_freqs}), got {freqs}.")
    if len(set(freqs)) != len(freqs):
        raise ValueError(f"`frequencies` must not repeat a k, got {freqs}.")
    return torch.tensor(sorted(freqs), dtype=torch.long)


def _check_cutoff(cutoff: int | str, n_freqs: int) -> int | None:
    if cutoff == "auto":
        return None
    if not isinstance(cutoff, int) or isinstance(cutoff, bool) or not 0 <= cutoff < n_freqs - 1:
        raise ValueError(f"`cutoff` must be 'auto' or an int in [0, {n_freqs - 2}], got {cutoff!r}.")
    return cutoff
