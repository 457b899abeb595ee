"""``LowHighFrequencyError``: the Gaussian-filter errors e_low / e_high of the slides, as a Metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from fp_lightning.functional._validation import check_choice, check_int, check_optional_int, check_positive
from fp_lightning.functional.filtering import FILTER_PRECISIONS, FilterPrecision, GaussianFilterBank, default_deltas
from fp_lightning.functional.projection import PrincipalComponents, principal_components
from fp_lightning.functional.targets import OutputTransform
from fp_lightning.metrics._probe import ProbeSetMetric

if TYPE_CHECKING:  # matplotlib is imported by plot(), so that importing the Metrics stays cheap
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["LowHighFrequencyError"]


class LowHighFrequencyError(ProbeSetMetric):
    """Relative errors of the low- and high-frequency parts of the outputs, one pair per filter width δ.

    Convention:
        y^{low,δ}_i = Σ_j G_δ(x_i − x_j) y_j / Σ_j G_δ(x_i − x_j), G_δ(u) = exp(−‖u‖²/(2δ)) on the flattened
        inputs (δ a variance, in squared input units); y^{high,δ} = y − y^{low,δ}; the same for h.
        e_low = ‖h^{low} − y^{low}‖_F / ‖y^{low}‖_F and e_high likewise (``low_high_errors``). The δ values
        (``"auto"``: ``default_deltas`` of the first computed inputs, scale-free) are frozen after the first
        ``compute()``. They are Metric state (``state_dict()`` key ``_fitted_deltas``, an empty tensor while not
        fitted): ``reset()`` keeps them, ``load_state_dict()`` restores them, ``.to(device)`` moves them and keeps
        them float64. Distances, kernels and y^{low} are cached while the stored inputs and targets stay the same,
        so a fixed probe set only pays for filtering the new outputs each epoch.

    Args:
        deltas: ``"auto"`` or a list of δ > 0.
        n_deltas: how many δ ``"auto"`` picks.
        chunk_size: rows of the kernel built at once (``None``: from the filter bank's memory budget).
        filter_precision: working precision of the distances and kernels, ``"float32"`` (default: twice as fast,
            half the cached memory, e_low and e_high within ~1e-6 of float64 at the default δ) or ``"float64"``; sums
            and results are float64 either way (see ``GaussianFilterBank``, whose ``dtype`` it sets). A name, as the
            monitor's argument of the same name, so a YAML config can set it.
        output_transform: ``"auto"``, ``"softmax"``, ``"sigmoid"``, ``"identity"`` or a callable; ``"auto"`` is
            resolved on the first ``compute()`` and frozen (see ``ProbeSetMetric``).
        class_dim: the class axis of the outputs: 1 for (n, C), (n, C, T), (n, C, H, W) logits, -1 for (n, T, C).
        ignore_index: class labels left out of every quantity (default -100, as torch and HF; 255 for
            void pixels; ``None``: all count); see :class:`~fp_lightning.metrics._probe.ProbeSetMetric`.
        input_components: ``None`` (default: exact) or m ≥ 1: filter the raw scores (x − mean) V of the inputs on
            their top m principal directions instead of x (``principal_components``, fitted on the first
            ``compute()`` and frozen like δ; state keys ``_input_mean``, ``_input_directions``,
            ``_input_eigenvalues``). Distances become those of the PCA reconstruction, so the kernels are
            approximate, and the distance products cost m instead of d per pair: faster for large n and d.
            ``"auto"`` δ then come from the reduced inputs. Measured on MNIST and CIFAR-10 in
            ``docs/performance.md`` ("Scale").
        kwargs: ``warn_auto_choice`` (see ``ProbeSetMetric``) and ``torchmetrics.Metric``'s (e.g. ``sync_on_compute``).

    ``compute()`` returns a dict with ``e_low`` (M,), ``e_high`` (M,) and ``deltas`` (M,).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(200, 2, generator=g)
        >>> y = torch.sin(6 * x[:, :1])
        >>> metric = LowHighFrequencyError(deltas=[0.01, 0.1])
        >>> metric.update(x, y, y)                 # a perfect fit
        >>> metric.compute()["e_low"]
        tensor([0., 0.], dtype=torch.float64)
    """

    def __init__(
        self,
        deltas: Literal["auto"] | Sequence[float] = "auto",
        n_deltas: int = 8,
        chunk_size: int | None = None,
        filter_precision: FilterPrecision = "float32",
        output_transform: OutputTransform = "auto",
        class_dim: int = 1,
        ignore_index: int | None = -100,
        *,
        input_components: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(output_transform=output_transform, class_dim=class_dim, ignore_index=ignore_index,
                         **kwargs)
        self.n_deltas = check_int("n_deltas", n_deltas, 1)
        self.chunk_size = check_optional_int("chunk_size", chunk_size, 1)
        self.filter_precision = check_choice("filter_precision", filter_precision, tuple(FILTER_PRECISIONS))
        self._add_fit_state("_fitted_deltas", torch.float64)
        self.fitted_deltas = _check_deltas(deltas)
        self.input_components = check_optional_int("input_components", input_components, 1)
        for name in _REDUCTION_PARTS:
            self._add_fit_state(f"_input_{name}", torch.float64)
        self._reduced: tuple[torch.Tensor, torch.Tensor] | None = None  # (stored inputs, their scores)
        self._bank: GaussianFilterBank | None = None
        self._bank_inputs: torch.Tensor | None = None

    @property
    def filter_dtype(self) -> torch.dtype:
        """The torch dtype that ``filter_precision`` names (the ``dtype`` of the ``GaussianFilterBank``).

        Example:
            >>> LowHighFrequencyError(filter_precision="float64").filter_dtype
            torch.float64
        """
        return FILTER_PRECISIONS[self.filter_precision]

    @property
    def fitted_deltas(self) -> torch.Tensor | None:
        """The filter widths δ (float64), given or fitted on the first ``compute()``; else ``None``.

        Example:
            >>> LowHighFrequencyError(deltas=[0.5, 0.1]).fitted_deltas
            tensor([0.5000, 0.1000], dtype=torch.float64)
            >>> LowHighFrequencyError().fitted_deltas is None   # "auto": chosen by the first compute()
            True
        """
        return self._get_fit("_fitted_deltas")

    @fitted_deltas.setter
    def fitted_deltas(self, deltas: torch.Tensor | Sequence[float] | None) -> None:
        self._set_fit("_fitted_deltas", None if deltas is None else torch.as_tensor(deltas, dtype=torch.float64))

    @property
    def input_reduction(self) -> PrincipalComponents | None:
        """The frozen reduction of the inputs (``input_components`` set and fitted by ``compute()``), else ``None``.

        Example:
            >>> metric = LowHighFrequencyError(deltas=[0.5], input_components=2)
            >>> x = torch.rand(30, 5, generator=torch.Generator().manual_seed(0))
            >>> metric.update(x, torch.zeros(30, 1), x[:, :1])
            >>> _ = metric.compute()
            >>> metric.input_reduction.directions.shape
            torch.Size([5, 2])
        """
        parts = [self._get_fit(f"_input_{name}") for name in _REDUCTION_PARTS]
        if any(part is None for part in parts):
            return None
        return PrincipalComponents(*parts)

    @input_reduction.setter
    def input_reduction(self, reduction: PrincipalComponents | None) -> None:
        for name in _REDUCTION_PARTS:
            self._set_fit(f"_input_{name}", None if reduction is None else getattr(reduction, name))
        self._reduced = None

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        self._reduced = None  # scores of another reduction must not be reused
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _filter_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The inputs themselves, or their scores on the frozen principal directions (fitted here on first use)."""
        if self.input_components is None:
            return x
        cached = self._reduced
        if cached is not None and cached[0].shape == x.shape and torch.equal(cached[0], x):
            return cached[1]  # a fixed probe set is reduced once
        reduction = self.input_reduction
        if reduction is None:
            reduction = principal_components(x, self.input_components)
            self.input_reduction = reduction
        scores = reduction.transform(x)
        self._reduced = (x, scores)
        return scores

    def compute(self) -> dict[str, torch.Tensor]:
        """e_low and e_high for every δ on all stored samples (NaN before any ``update()``)."""
        if not self._has_samples():
            known = self.fitted_deltas if self.fitted_deltas is not None else torch.empty(0, dtype=torch.float64)
            nan = torch.full((len(known),), math.nan, dtype=torch.float64)
            return {"e_low": nan, "e_high": nan.clone(), "deltas": known}
        x, y, h, mask = self._gathered(float64_inputs=False)  # the filter bank centres and converts by block
        x = self._filter_inputs(x)
        deltas = self.fitted_deltas
        if deltas is None:
            deltas = default_deltas(x, self.n_deltas)
            self.fitted_deltas = deltas
        bank = self._filter_bank(x, deltas)
        e_low, e_high = bank.errors(y, h, mask)
        return {"e_low": e_low, "e_high": e_high, "deltas": deltas.to(e_low.device)}

    def _filter_bank(self, x: torch.Tensor, deltas: torch.Tensor) -> GaussianFilterBank:
        """The cached filter bank for these inputs and δ (rebuilt only when either changes)."""
        bank = self._bank
        if (bank is None or self._bank_inputs is None or not torch.equal(self._bank_inputs, x)
                or not torch.equal(bank.deltas.cpu(), deltas.cpu())):
            bank = GaussianFilterBank(x, deltas.to(x.device), chunk_size=self.chunk_size, dtype=self.filter_dtype)
            self._bank, self._bank_inputs = bank, x
        return bank

    def filter_bank_for(self, x: torch.Tensor) -> GaussianFilterBank | None:
        """The filter bank of the last ``compute()`` if it was built on exactly ``x`` (compared by value), else None.

        Another width on the same probe set then reuses its cached distances
        (:meth:`~fp_lightning.functional.GaussianFilterBank.neighbour_sums_at`): the monitor's denoised score does.

        Example:
            >>> metric = LowHighFrequencyError(deltas=[0.5], output_transform="identity")
            >>> x = torch.tensor([[0.0], [1.0], [3.0]])
            >>> metric.update(x, torch.zeros(3, 1), torch.tensor([[0.0], [1.0], [0.0]]))
            >>> _ = metric.compute()
            >>> metric.filter_bank_for(x).n_samples, metric.filter_bank_for(2 * x)
            (3, None)
        """
        bank, inputs = self._bank, self._bank_inputs
        if bank is None or inputs is None or inputs.shape != x.shape or inputs.device != x.device:
            return None
        return bank if torch.equal(inputs, x) else None

    def plot(self, val: dict[str, torch.Tensor] | None = None, ax: Axes | None = None) -> tuple[Figure, Axes]:
        """Draw e_low and e_high against δ (log scale): low-frequency errors on the left, high on the right.

        Example:
            >>> metric = LowHighFrequencyError(deltas=[0.01, 0.1])
            >>> x = torch.linspace(0, 1, 50).unsqueeze(1)
            >>> metric.update(x, torch.zeros(50, 1) + 0.1, torch.sin(12 * x))
            >>> fig, ax = metric.plot()
        """
        from matplotlib.figure import Figure

        val = self.compute() if val is None else val
        if ax is None:
            fig = Figure(figsize=(5.0, 3.5), layout="constrained")
            ax = fig.add_subplot()
        deltas = np.asarray(val["deltas"].cpu(), float)
        ax.plot(deltas, np.asarray(val["e_low"].cpu(), float), "o-", color="tab:red", label="e_low")
        ax.plot(deltas, np.asarray(val["e_high"].cpu(), float), "s--", color="tab:blue", label="e_high")
        ax.set_xscale("log")
        ax.set_xlabel("δ (filter variance)")
        ax.set_ylabel("relative error")
        ax.legend()
        return ax.figure, ax


#: The parts of a ``PrincipalComponents``, in the order of its fields; each is a buffer ``_input_<part>``.
_REDUCTION_PARTS = ("mean", "directions", "eigenvalues")


def _check_deltas(deltas: Literal["auto"] | Sequence[float]) -> torch.Tensor | None:
    if isinstance(deltas, str):
        check_choice("deltas", deltas, ("auto",))
        return None
    values = torch.as_tensor(list(deltas), dtype=torch.float64)
    check_positive("deltas", values)
    return values
