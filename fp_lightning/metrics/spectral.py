"""``ProjectedSpectralError``: Δ_F(k) of paper Eq. (1) on the inputs' first principal direction, as a Metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch

from fp_lightning.functional._validation import check_choice, check_int, check_optional_int
from fp_lightning.functional.errors import relative_spectral_error
from fp_lightning.functional.projection import PrincipalProjection, principal_projection
from fp_lightning.functional.selection import select_frequencies
from fp_lightning.functional.spectrum import BACKENDS, Backend, nufft_spectrum
from fp_lightning.functional.targets import OutputTransform
from fp_lightning.functional.theory import frequency_loss_split
from fp_lightning.metrics._probe import ProbeSetMetric

if TYPE_CHECKING:  # matplotlib is imported by plot(), so that importing the Metrics stays cheap
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
        given) and then frozen — ``reset()`` keeps them — so values from epoch to epoch are comparable. They are
        Metric state: ``state_dict()`` saves them (keys ``_projection_*``, ``_fitted_freqs``, ``_fitted_cutoff``;
        empty tensors while not fitted), ``load_state_dict()`` restores them without refitting, ``.to(device)``
        moves them and keeps them float64 (the projection) and int64 (k and η).

    Names: ``frequencies`` is the argument (what to track: ``"auto"`` or a list of k); ``freqs`` is what was
    tracked, in the results (``compute()["freqs"]``, ``fitted_freqs``) and in the monitor's history file.

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
        ignore_index: class labels left out of every quantity (default -100, as torch and HF; 255 for
            void pixels; ``None``: all count); see :class:`~fp_lightning.metrics._probe.ProbeSetMetric`.
        share_window: recordings over which a monitor reports the low share of the loss change of this
            split (``fp/low_share``, theory paper Eq. (39)); the Metric itself does not use it.
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
        frequencies: Literal["auto"] | Sequence[int] = "auto",
        max_freqs: int | None = 8,
        cutoff: int | Literal["auto"] = "auto",
        projection: PrincipalProjection | None = None,
        backend: Backend = "auto",
        output_transform: OutputTransform = "auto",
        class_dim: int = 1,
        ignore_index: int | None = -100,
        share_window: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(output_transform=output_transform, class_dim=class_dim, ignore_index=ignore_index,
                         **kwargs)
        self.n_freqs = check_int("n_freqs", n_freqs, 3)  # 3: a peak needs a neighbour on each side
        self.max_freqs = check_optional_int("max_freqs", max_freqs, 1)
        self.share_window = check_int("share_window", share_window, 2)
        # checked here, so a typo fails at construction and not mid-training
        self.backend = check_choice("backend", backend, BACKENDS)
        for name in _PROJECTION_PARTS:
            # the fitted samples' coordinates are not needed to go on, so a checkpoint does not carry them
            self._add_fit_state(f"_projection_{name}", torch.float64, persistent=name != "coords")
        self._add_fit_state("_fitted_freqs", torch.long)
        self._add_fit_state("_fitted_cutoff", torch.long)
        self._projection_view: PrincipalProjection | None = None
        self.fitted_freqs = _check_frequencies(frequencies, self.n_freqs)
        self.fitted_cutoff = _check_cutoff(cutoff, self.n_freqs)
        self.projection = projection
        self._target_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def projection(self) -> PrincipalProjection | None:
        """The frozen projection onto the first principal direction (``None`` before the first ``compute()``).

        Set it to a fitted ``PrincipalProjection`` to use that one; ``None`` makes the next ``compute()`` fit anew.

        Example:
            >>> from fp_lightning.functional import principal_projection
            >>> metric = ProjectedSpectralError(n_freqs=8)
            >>> metric.projection is None
            True
            >>> metric.projection = principal_projection(torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]]))
            >>> metric.state_dict()["_projection_directions"]
            tensor([[0.4472],
                    [0.8944]], dtype=torch.float64)
        """
        parts = tuple(self._buffers[f"_projection_{name}"] for name in _PROJECTION_PARTS)
        if parts[0] is None or parts[0].numel() == 0:
            return None
        view = self._projection_view
        if view is None or any(mine is not theirs for mine, theirs in zip(parts, _projection_parts(view))):
            # rebuilt only when the buffers changed (a fit, a load, a move), so repeated reads give one object
            view = PrincipalProjection(*parts)
            self._projection_view = view
        return view

    @projection.setter
    def projection(self, projection: PrincipalProjection | None) -> None:
        if projection is not None and not isinstance(projection, PrincipalProjection):
            raise ValueError(f"`projection` must be None or a fitted PrincipalProjection, got {projection!r}.")
        parts = _projection_parts(projection) if projection is not None else (None,) * len(_PROJECTION_PARTS)
        for name, value in zip(_PROJECTION_PARTS, parts):
            self._set_fit(f"_projection_{name}", value)

    @property
    def fitted_freqs(self) -> torch.Tensor | None:
        """The tracked frequencies k (int64, ascending), given or fitted on the first ``compute()``; else ``None``.

        Example:
            >>> ProjectedSpectralError(n_freqs=16, frequencies=[9, 2]).fitted_freqs
            tensor([2, 9])
        """
        return self._get_fit("_fitted_freqs")

    @fitted_freqs.setter
    def fitted_freqs(self, freqs: torch.Tensor | Sequence[int] | None) -> None:
        self._set_fit("_fitted_freqs", None if freqs is None else torch.as_tensor(freqs, dtype=torch.long))

    @property
    def fitted_cutoff(self) -> int | None:
        """η of the loss split, given or fitted on the first ``compute()``; else ``None``.

        Example:
            >>> ProjectedSpectralError(n_freqs=16, cutoff=5).fitted_cutoff
            5
        """
        cutoff = self._get_fit("_fitted_cutoff")
        return None if cutoff is None else int(cutoff)

    @fitted_cutoff.setter
    def fitted_cutoff(self, cutoff: int | None) -> None:
        self._set_fit("_fitted_cutoff", None if cutoff is None else torch.tensor(int(cutoff), dtype=torch.long))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # the coordinates of the samples of another fit would not belong to the loaded direction
        if prefix + "_projection_directions" in state_dict:
            self._set_fit("_projection_coords", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def compute(self) -> dict[str, torch.Tensor]:
        """Δ_F at the tracked frequencies, the two spectra and the loss split on all stored samples."""
        # x in its stored dtype (e.g. uint8 images): the projection converts it to float64 block by block
        x, y, h, _ = self._gathered(float64_inputs=False)  # ignored entries are 0 in y and h: out of the sums
        projection = self.projection
        if projection is None:
            projection = principal_projection(x)
            self.projection = projection
        coords = projection.transform(x)[:, 0]
        target_spec = self._target_spectrum(coords, y)
        output_spec = nufft_spectrum(coords, h, self.n_freqs, backend=self.backend)
        fitted = self.fitted_freqs
        if fitted is None:
            fitted = select_frequencies(target_spec.abs(), self.max_freqs)
            self.fitted_freqs = fitted
        cutoff = self.fitted_cutoff
        if cutoff is None:
            cutoff = min(int(fitted[(len(fitted) - 1) // 2]), self.n_freqs - 2)  # the median tracked k
            self.fitted_cutoff = cutoff
        freqs = fitted.to(target_spec.device)
        loss_low, loss_high = frequency_loss_split(target_spec, output_spec, cutoff)
        return {
            "delta_f": relative_spectral_error(target_spec[freqs], output_spec[freqs]),
            "freqs": freqs,
            "target_spectrum": target_spec,
            "output_spectrum": output_spec,
            "loss_low": loss_low,
            "loss_high": loss_high,
            "cutoff": torch.tensor(cutoff),
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
        from fp_lightning.plotting import plot_spectra

        val = self.compute() if val is None else val
        amplitude = _channel_amplitude(val["target_spectrum"])
        output = _channel_amplitude(val["output_spectrum"])
        return plot_spectra(amplitude, output, val["freqs"].reshape(-1).cpu().tolist(), ax=ax)


def _channel_amplitude(spec: torch.Tensor) -> Any:
    amp = spec.abs()
    return (amp.norm(dim=1) if amp.ndim == 2 else amp).cpu().numpy()


#: The parts of a ``PrincipalProjection``, in the order of its fields; each is a buffer ``_projection_<part>``.
_PROJECTION_PARTS = ("directions", "offset", "scale", "coords", "eigenvalues")


def _projection_parts(projection: PrincipalProjection) -> tuple[torch.Tensor, ...]:
    return tuple(getattr(projection, name) for name in _PROJECTION_PARTS)


def _check_frequencies(frequencies: Literal["auto"] | Sequence[int], n_freqs: int) -> torch.Tensor | None:
    if isinstance(frequencies, str):
        check_choice("frequencies", frequencies, ("auto",))
        return None
    freqs = [check_int("frequencies", k) for k in frequencies]
    if not freqs:
        raise ValueError("`frequencies` must not be empty; pass 'auto' or at least one k.")
    if any(not 0 <= k < n_freqs for k in freqs):
        raise ValueError(f"`frequencies` must be ints in [0, {n_freqs - 1}] (n_freqs={n_freqs}), got {freqs}.")
    if len(set(freqs)) != len(freqs):
        raise ValueError(f"`frequencies` must not repeat a k, got {freqs}.")
    return torch.tensor(sorted(freqs), dtype=torch.long)


def _check_cutoff(cutoff: int | Literal["auto"], n_freqs: int) -> int | None:
    if isinstance(cutoff, str):
        check_choice("cutoff", cutoff, ("auto",))
        return None
    return check_int("cutoff", cutoff, 0, n_freqs - 2)  # η = K − 1 would leave L_high empty
