"""The paper's 1-D tasks: staircase targets (Eq. (2), Figs. 3, 4, 6) and the theory paper's sine series (§3.3).

Inputs are ``float32`` of shape (n, 1), targets ``float32`` of shape (n, 1); values are computed in float64 and then
cast. Evenly spaced grids include both ends of the range and are exact: the k-th of n points in [a, b] is
``(a·(n−1−k) + b·k) / (n−1)``, so e.g. x = −0.75 is exactly a grid point of the Fig. 3 task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "F0_FUNCTIONS",
    "STAIRCASE_PRESETS",
    "SineSeries1DDataModule",
    "Staircase1DDataModule",
    "evenly_spaced",
    "quantize",
    "sine_series",
    "staircase",
]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


def _sin3(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) + 2 * torch.sin(3 * x) + 3 * torch.sin(5 * x)


#: The smooth functions f0 of the paper's Eq. (2) by name: ``x``, ``sin``, ``sin3`` (= sin x + 2 sin 3x + 3 sin 5x,
#: Fig. 4), ``abs`` (|x|) and ``square`` (x²).
F0_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "x": _identity,
    "sin": torch.sin,
    "sin3": _sin3,
    "abs": torch.abs,
    "square": torch.square,
}

#: Settings of the paper's figures for :class:`Staircase1DDataModule` (``preset=`` or ``from_preset``).
STAIRCASE_PRESETS: dict[str, dict[str, Any]] = {
    # Fig. 3: f0(x) = x, α = 0.5, 601 evenly spaced points in [−1, 1]
    "fig3": {"f0": "x", "alpha": 0.5, "n_train": 601, "x_range": (-1.0, 1.0), "noise_std": 0.0, "n_test": 0},
    # Fig. 4: f0 = sin x + 2 sin 3x + 3 sin 5x, α = 2, 600 evenly spaced points in [−10, 10]
    "fig4": {"f0": "sin3", "alpha": 2.0, "n_train": 600, "x_range": (-10.0, 10.0), "noise_std": 0.0, "n_test": 0},
    # Fig. 6: f0 = sin x, α = 0.5, noise sd 0.1; 300 training and 6000 test points evenly spaced in [−10, 10]
    "fig6": {"f0": "sin", "alpha": 0.5, "n_train": 300, "x_range": (-10.0, 10.0), "noise_std": 0.1, "n_test": 6000},
}


def quantize(values: torch.Tensor, alpha: float) -> torch.Tensor:
    """Return ``α · round(values / α)``, or ``values`` unchanged when α = 0 (the paper's Eq. (2)).

    ``round`` is :func:`torch.round`, i.e. to the nearest integer with ties to even (as ``numpy.round``): with
    α = 0.5, f0 = 0.25 gives 0 and f0 = 0.75 gives 1.

    Example:
        >>> quantize(torch.tensor([0.1, 0.3, -0.8, 0.75, 1.2]), 0.5)
        tensor([ 0.0000,  0.5000, -1.0000,  1.0000,  1.0000])
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"`alpha` must be a finite number ≥ 0, got {alpha!r}.")
    if alpha == 0:
        return values.clone()
    return alpha * torch.round(values / alpha)


def staircase(f0: str | Callable[[torch.Tensor], torch.Tensor], alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return the target y(x) = α · round(f0(x) / α) of the paper's Eq. (2) (y = f0 when α = 0).

    Args:
        f0: a name from :data:`F0_FUNCTIONS` or a callable on tensors.
        alpha: step height α ≥ 0.

    Example:
        >>> y = staircase("x", 0.5)
        >>> y(torch.tensor([-1.0, -0.3, 0.2, 0.3, 1.0]))
        tensor([-1.0000, -0.5000,  0.0000,  0.5000,  1.0000])
        >>> staircase("sin3", 2.0)(torch.tensor([math.pi / 2]))  # 1 − 2 + 3 = 2
        tensor([2.])
    """
    fn = _resolve_f0(f0)
    quantize(torch.zeros(1), alpha)  # validates alpha now

    def target(x: torch.Tensor) -> torch.Tensor:
        return quantize(fn(x), alpha)

    return target


def sine_series(x: torch.Tensor, n_terms: int = 500, scale: float = 10.0) -> torch.Tensor:
    """Return f(x) = Σ_{j=1}^{n_terms} sin(j·x / scale) / j (theory paper §3.3: 500 terms, scale 10).

    Example:
        >>> sine_series(torch.tensor([0.0, math.pi]), n_terms=2, scale=1.0)  # sin x + sin(2x)/2
        tensor([0., 0.])
        >>> float(sine_series(torch.tensor([10 * math.pi / 2]), n_terms=3))  # 1 + 0 − 1/3
        0.666...
    """
    if not (isinstance(n_terms, int) and n_terms >= 1):
        raise ValueError(f"`n_terms` must be an int ≥ 1, got {n_terms!r}.")
    j = torch.arange(1, n_terms + 1, dtype=x.dtype if x.is_floating_point() else torch.float64, device=x.device)
    phase = x.unsqueeze(-1) * j / scale
    return (torch.sin(phase) / j).sum(-1)


def evenly_spaced(x_min: float, x_max: float, n: int) -> torch.Tensor:
    """Return n evenly spaced float64 points from ``x_min`` to ``x_max``, both included (exact grid, see module).

    Example:
        >>> evenly_spaced(-1.0, 1.0, 5)
        tensor([-1.0000, -0.5000,  0.0000,  0.5000,  1.0000], dtype=torch.float64)
    """
    if n == 1:
        return torch.tensor([0.5 * (x_min + x_max)], dtype=torch.float64)
    k = torch.arange(n, dtype=torch.float64)
    return (x_min * (n - 1 - k) + x_max * k) / (n - 1)


def _resolve_f0(f0: str | Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(f0):
        return f0
    if f0 not in F0_FUNCTIONS:
        raise ValueError(f"`f0` must be one of {sorted(F0_FUNCTIONS)} or a callable, got {f0!r}.")
    return F0_FUNCTIONS[f0]


class _OneDDataModule(pl.LightningDataModule):
    """Shared logic: sampling, noise, tensors and loaders of a 1-D regression task."""

    def _init_common(
        self,
        n_train: int,
        x_range: tuple[float, float],
        sampling: str,
        n_test: int,
        noise_std: float,
        batch_size: int | None,
        seed: int,
    ) -> None:
        if not (isinstance(n_train, int) and n_train >= 1):
            raise ValueError(f"`n_train` must be an int ≥ 1, got {n_train!r}.")
        if not (isinstance(n_test, int) and n_test >= 0):
            raise ValueError(f"`n_test` must be an int ≥ 0, got {n_test!r}.")
        lo, hi = (float(v) for v in x_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"`x_range` must be (low, high) with low < high, got {x_range!r}.")
        if sampling not in ("grid", "random"):
            raise ValueError(f"`sampling` must be 'grid' or 'random', got {sampling!r}.")
        if not (isinstance(noise_std, (int, float)) and noise_std >= 0):
            raise ValueError(f"`noise_std` must be ≥ 0, got {noise_std!r}.")
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"`batch_size` must be None (full batch) or an int ≥ 1, got {batch_size!r}.")
        self.n_train, self.x_range, self.sampling, self.n_test = n_train, (lo, hi), sampling, n_test
        self.noise_std, self.batch_size, self.seed = float(noise_std), batch_size, seed

    def _clean(self, x: torch.Tensor) -> torch.Tensor:
        """Return the noise-free function before any rounding (float64 in, float64 out)."""
        raise NotImplementedError

    def _finish(self, values: torch.Tensor) -> torch.Tensor:
        """Map (possibly noisy) clean values to targets (rounding for the staircase)."""
        return values

    def _generator(self, offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def _make(self, n: int, sampling: str, offset: int, noisy: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.x_range
        if sampling == "grid":
            x = evenly_spaced(lo, hi, n)
        else:
            u = torch.rand(n, generator=self._generator(offset), dtype=torch.float64)
            x = torch.sort(lo + (hi - lo) * u).values
        values = self._clean(x)
        if noisy and self.noise_std > 0:
            noise = torch.randn(n, generator=self._generator(offset + 1), dtype=torch.float64)
            values = values + self.noise_std * noise
        y = self._finish(values)
        return x.to(torch.float32).unsqueeze(1), y.to(torch.float32).unsqueeze(1)

    def _build(self, noise_on_test: bool = True) -> None:
        self.x_train, self.y_train = self._make(self.n_train, self.sampling, offset=10, noisy=True)
        self.train_dataset = TensorDataset(self.x_train, self.y_train)
        self.x_test: torch.Tensor | None = None
        self.y_test: torch.Tensor | None = None
        self.test_dataset: TensorDataset | None = None
        if self.n_test > 0:
            self.x_test, self.y_test = self._make(self.n_test, "grid", offset=20, noisy=noise_on_test)
            self.test_dataset = TensorDataset(self.x_test, self.y_test)
            self.val_dataloader = self._test_dataloader
            self.test_dataloader = self._test_dataloader

    def target_function(self, x: torch.Tensor) -> torch.Tensor:
        """Return the noise-free target at ``x`` (any shape), computed in float64 and returned in ``x``'s dtype."""
        return self._finish(self._clean(x.to(torch.float64))).to(x.dtype)

    def setup(self, stage: str | None = None) -> None:
        """Nothing to do: the tensors are built at construction (they are small and need no I/O)."""

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> DataLoader:
        n = len(dataset)
        bs = n if self.batch_size is None else min(self.batch_size, n)
        shuffle = shuffle and bs < n
        return DataLoader(dataset, batch_size=bs, shuffle=shuffle, generator=self._generator(30) if shuffle else None)

    def train_dataloader(self) -> DataLoader:
        """Return the training set, as one full batch when ``batch_size`` is None (the paper), else shuffled batches."""
        return self._loader(self.train_dataset, shuffle=True)

    def _test_dataloader(self) -> DataLoader:
        """Return the test set; bound as ``val_dataloader`` and ``test_dataloader`` when ``n_test`` > 0.

        Lightning runs the validation / test loops only when these methods exist, so with ``n_test = 0`` there are
        none. The validation loop on the test set gives the paper's "test loss" curve (Fig. 6b).
        """
        return self._loader(self.test_dataset, shuffle=False)


class Staircase1DDataModule(_OneDDataModule):
    """The paper's staircase task y = α · round(f0(x) / α) (Eq. (2)), optionally with noise, as a DataModule.

    Every argument left as ``None`` takes its value from ``preset`` (one of :data:`STAIRCASE_PRESETS`: ``"fig3"``,
    ``"fig4"``, ``"fig6"``), or from the Fig. 3 settings when no preset is given; explicit values win.

    Noise (Fig. 6): each point's f0(x) gets its own Gaussian draw N(0, noise_std²) *before* rounding; the draws come
    from generators seeded by ``seed`` (training and test sets use different ones). The test set is noisy too unless
    ``noise_on_test=False`` (the paper samples the test set like the training set).

    Args:
        preset: ``"fig3"``, ``"fig4"``, ``"fig6"`` or ``None``.
        f0: name in :data:`F0_FUNCTIONS` (``"x"``, ``"sin"``, ``"sin3"``, ``"abs"``, ``"square"``).
        alpha: step height α ≥ 0 (0: no rounding).
        n_train: number of training points.
        x_range: (low, high) of the inputs.
        noise_std: standard deviation of the noise added to f0 before rounding.
        n_test: number of evenly spaced test points (0: no test set); served by the val and test loaders.
        sampling: ``"grid"`` (evenly spaced training points, both ends included) or ``"random"`` (uniform, sorted).
        batch_size: ``None`` for full-batch training (the paper), else the mini-batch size.
        seed: seeds random sampling and noise.
        noise_on_test: add noise to the test targets too.

    Example:
        >>> dm = Staircase1DDataModule(preset="fig3")
        >>> dm.x_train.shape, dm.y_train.shape, float(dm.x_train.min()), float(dm.x_train.max())
        (torch.Size([601, 1]), torch.Size([601, 1]), -1.0, 1.0)
        >>> sorted(set(dm.y_train.flatten().tolist()))
        [-1.0, -0.5, 0.0, 0.5, 1.0]
        >>> x, y = next(iter(dm.train_dataloader()))  # one full batch
        >>> x.shape
        torch.Size([601, 1])
    """

    _defaults: ClassVar[dict[str, Any]] = {**STAIRCASE_PRESETS["fig3"], "sampling": "grid"}

    def __init__(
        self,
        preset: str | None = None,
        f0: str | None = None,
        alpha: float | None = None,
        n_train: int | None = None,
        x_range: tuple[float, float] | None = None,
        noise_std: float | None = None,
        n_test: int | None = None,
        sampling: str | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        noise_on_test: bool = True,
    ) -> None:
        super().__init__()
        if preset is not None and preset not in STAIRCASE_PRESETS:
            raise ValueError(f"`preset` must be one of {sorted(STAIRCASE_PRESETS)} or None, got {preset!r}.")
        self.save_hyperparameters()
        base = {**self._defaults, **(STAIRCASE_PRESETS[preset] if preset else {})}
        given = {
            "f0": f0,
            "alpha": alpha,
            "n_train": n_train,
            "x_range": x_range,
            "noise_std": noise_std,
            "n_test": n_test,
            "sampling": sampling,
        }
        cfg = {k: (v if v is not None else base[k]) for k, v in given.items()}
        self.preset = preset
        self.f0 = cfg["f0"]
        self._f0_fn = _resolve_f0(self.f0)
        self.alpha = float(cfg["alpha"])
        quantize(torch.zeros(1), self.alpha)  # validates alpha
        self._init_common(
            cfg["n_train"], cfg["x_range"], cfg["sampling"], cfg["n_test"], cfg["noise_std"], batch_size, seed
        )
        self.noise_on_test = noise_on_test
        self._build(noise_on_test)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> Staircase1DDataModule:
        """Build the task of one of the paper's figures (``"fig3"``, ``"fig4"``, ``"fig6"``), with overrides.

        Example:
            >>> dm = Staircase1DDataModule.from_preset("fig6")
            >>> len(dm.train_dataset), len(dm.test_dataset), dm.noise_std
            (300, 6000, 0.1)
        """
        return cls(preset=name, **overrides)

    def _clean(self, x: torch.Tensor) -> torch.Tensor:
        return self._f0_fn(x)

    def _finish(self, values: torch.Tensor) -> torch.Tensor:
        return quantize(values, self.alpha)


class SineSeries1DDataModule(_OneDDataModule):
    """The theory paper's target f(x) = Σ_{j=1}^{500} sin(jx/10)/j (§3.3) as a DataModule.

    Defaults follow §3.3: 300 training points sampled uniformly from [−3.14, 3.14]. The paper does not say whether
    "uniformly sampled" means an even grid or uniform random draws; the default is the even grid (both ends
    included, matching its DFT analysis), ``sampling="random"`` gives seeded uniform draws.

    Args:
        n_train: number of training points.
        x_range: (low, high) of the inputs.
        n_terms: number of terms of the series.
        scale: the 10 in sin(jx/10).
        sampling: ``"grid"`` or ``"random"``.
        n_test: number of evenly spaced test points (0: none), served by the val and test loaders.
        noise_std: standard deviation of Gaussian noise added to each target (0 in the paper).
        batch_size: ``None`` for full batch (the paper), else the mini-batch size.
        seed: seeds random sampling and noise.

    Example:
        >>> dm = SineSeries1DDataModule()
        >>> dm.x_train.shape, round(float(dm.x_train[0]), 2), round(float(dm.x_train[-1]), 2)
        (torch.Size([300, 1]), -3.14, 3.14)
    """

    def __init__(
        self,
        n_train: int = 300,
        x_range: tuple[float, float] = (-3.14, 3.14),
        n_terms: int = 500,
        scale: float = 10.0,
        sampling: str = "grid",
        n_test: int = 0,
        noise_std: float = 0.0,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not (isinstance(n_terms, int) and n_terms >= 1):
            raise ValueError(f"`n_terms` must be an int ≥ 1, got {n_terms!r}.")
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"`scale` must be > 0, got {scale!r}.")
        self.save_hyperparameters()
        self.n_terms, self.scale = n_terms, float(scale)
        self._init_common(n_train, x_range, sampling, n_test, noise_std, batch_size, seed)
        self._build(noise_on_test=True)

    def _clean(self, x: torch.Tensor) -> torch.Tensor:
        return sine_series(x, self.n_terms, self.scale)
