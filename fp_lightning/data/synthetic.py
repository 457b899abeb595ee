"""The paper's synthetic tasks: 1-D staircases (Eq. (2), Figs. 3–8), a sine series (theory §3.3), an image (Fig. 2).

Inputs are ``float32`` of shape (n, 1) ((n, 2) pixel coordinates for the image), targets ``float32`` of shape
(n, 1); values are computed in float64 and then cast. Evenly spaced grids include both ends of the range and are
exact: the k-th of n points in [a, b] is ``(a·(n−1−k) + b·k) / (n−1)``, so e.g. x = −0.75 is exactly a grid point of
the Fig. 3 task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = [
    "COORDINATE_SCALES",
    "F0_FUNCTIONS",
    "SAMPLINGS",
    "STAIRCASE_PRESETS",
    "TRAIN_COLUMNS",
    "ImageRegression2DDataModule",
    "SineSeries1DDataModule",
    "Staircase1DDataModule",
    "evenly_spaced",
    "load_grey_image",
    "pixel_coordinates",
    "quantize",
    "sample_image_path",
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

#: Ways to place the training points of a 1-D task: ``"grid"`` (evenly spaced, both ends included), ``"random"``
#: (uniform draws, sorted) and ``"grid_subset"`` (``n_train`` distinct points drawn at random from ``grid_size``
#: evenly spaced ones, sorted: the paper's Fig. 7b, 600 of 3000 points in [−1, 1]).
SAMPLINGS = ("grid", "random", "grid_subset")

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
        grid_size: int | None = None,
    ) -> None:
        if not (isinstance(n_train, int) and n_train >= 1):
            raise ValueError(f"`n_train` must be an int ≥ 1, got {n_train!r}.")
        if not (isinstance(n_test, int) and n_test >= 0):
            raise ValueError(f"`n_test` must be an int ≥ 0, got {n_test!r}.")
        lo, hi = (float(v) for v in x_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"`x_range` must be (low, high) with low < high, got {x_range!r}.")
        if sampling not in SAMPLINGS:
            raise ValueError(f"`sampling` must be one of {SAMPLINGS}, got {sampling!r}.")
        if sampling == "grid_subset" and not (isinstance(grid_size, int) and grid_size >= n_train):
            raise ValueError(f"`sampling='grid_subset'` draws `n_train` = {n_train} of `grid_size` evenly spaced "
                             f"points; `grid_size` must be an int ≥ n_train, got {grid_size!r}.")
        if not (isinstance(noise_std, (int, float)) and noise_std >= 0):
            raise ValueError(f"`noise_std` must be ≥ 0, got {noise_std!r}.")
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"`batch_size` must be None (full batch) or an int ≥ 1, got {batch_size!r}.")
        self.n_train, self.x_range, self.sampling, self.n_test = n_train, (lo, hi), sampling, n_test
        self.noise_std, self.batch_size, self.seed = float(noise_std), batch_size, seed
        self.grid_size = grid_size

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
        elif sampling == "grid_subset":
            assert self.grid_size is not None  # checked in _init_common
            chosen = torch.randperm(self.grid_size, generator=self._generator(offset))[:n]
            x = evenly_spaced(lo, hi, self.grid_size)[torch.sort(chosen).values]
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
        sampling: ``"grid"`` (evenly spaced training points, both ends included), ``"random"`` (uniform, sorted) or
            ``"grid_subset"`` (``n_train`` of ``grid_size`` evenly spaced points, drawn without replacement, sorted;
            the paper's Fig. 7b). See :data:`SAMPLINGS`.
        batch_size: ``None`` for full-batch training (the paper), else the mini-batch size.
        seed: seeds random sampling and noise.
        noise_on_test: add noise to the test targets too.
        grid_size: size of the grid that ``sampling="grid_subset"`` draws from (ignored otherwise).

    Example:
        >>> dm = Staircase1DDataModule(preset="fig3")
        >>> dm.x_train.shape, dm.y_train.shape, float(dm.x_train.min()), float(dm.x_train.max())
        (torch.Size([601, 1]), torch.Size([601, 1]), -1.0, 1.0)
        >>> sorted(set(dm.y_train.flatten().tolist()))
        [-1.0, -0.5, 0.0, 0.5, 1.0]
        >>> x, y = next(iter(dm.train_dataloader()))  # one full batch
        >>> x.shape
        torch.Size([601, 1])

        The paper's Fig. 7b: 600 of 3000 evenly spaced points, every one on the grid (step 2/2999):

        >>> dm = Staircase1DDataModule(preset="fig3", n_train=600, sampling="grid_subset", grid_size=3000)
        >>> steps = (dm.x_train.double() + 1) * 2999 / 2
        >>> len(dm.x_train), bool((steps - steps.round()).abs().max() < 1e-3), bool((steps.diff() >= 1).all())
        (600, True, True)
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
        grid_size: int | None = None,
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
            cfg["n_train"], cfg["x_range"], cfg["sampling"], cfg["n_test"], cfg["noise_std"], batch_size, seed,
            grid_size,
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
        sampling: ``"grid"``, ``"random"`` or ``"grid_subset"`` (see :data:`SAMPLINGS`).
        n_test: number of evenly spaced test points (0: none), served by the val and test loaders.
        noise_std: standard deviation of Gaussian noise added to each target (0 in the paper).
        batch_size: ``None`` for full batch (the paper), else the mini-batch size.
        seed: seeds random sampling and noise.
        grid_size: size of the grid that ``sampling="grid_subset"`` draws from (ignored otherwise).

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
        grid_size: int | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(n_terms, int) and n_terms >= 1):
            raise ValueError(f"`n_terms` must be an int ≥ 1, got {n_terms!r}.")
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"`scale` must be > 0, got {scale!r}.")
        self.save_hyperparameters()
        self.n_terms, self.scale = n_terms, float(scale)
        self._init_common(n_train, x_range, sampling, n_test, noise_std, batch_size, seed, grid_size)
        self._build(noise_on_test=True)

    def _clean(self, x: torch.Tensor) -> torch.Tensor:
        return sine_series(x, self.n_terms, self.scale)


# ------------------------------------------------------------------------------------------------ 2-D: an image
#: Which pixel columns :class:`ImageRegression2DDataModule` trains on (0-based column index j).
TRAIN_COLUMNS = ("odd", "even", "all")
#: How :func:`pixel_coordinates` scales the inputs: ``"pixel"`` (the indices j, i) or ``"unit"`` ([−1, 1]).
COORDINATE_SCALES = ("pixel", "unit")


def sample_image_path() -> str:
    """Return the path of the photograph that ships with matplotlib (``grace_hopper.jpg``, public domain).

    It stands in for the paper's Fig. 2 eye: a 600 × 512 RGB portrait of Grace Hopper in matplotlib's sample data.

    Example:
        >>> sample_image_path().endswith("grace_hopper.jpg")
        True
    """
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def load_grey_image(
    image: str | torch.Tensor | None = None,
    crop: tuple[int, int, int, int] | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Return an image as grey values in [0, 1], float64 of shape (height, width).

    Conventions: an RGB(A) image becomes the luma 0.299·R + 0.587·G + 0.114·B (ITU-R BT.601, alpha dropped); 8-bit
    values are divided by 255. ``crop = (top, left, height, width)`` in pixels of the original image is applied
    first, then ``size = (height, width)`` resamples by area averaging (each output pixel is the mean of the input
    pixels it covers; exact block means when the sizes divide).

    Args:
        image: a file path (read with matplotlib), a tensor (H, W) or (H, W, 3|4) of values in [0, 1] or 8-bit
            integers, or ``None`` for :func:`sample_image_path`.
        crop: ``(top, left, height, width)`` of the region to keep, or ``None`` for the whole image.
        size: ``(height, width)`` after resampling, or ``None`` to keep the (cropped) size.

    Example:
        >>> rgb = torch.zeros(4, 4, 3, dtype=torch.uint8)
        >>> rgb[:2, :, 0] = 255  # top half pure red
        >>> load_grey_image(rgb, size=(2, 1))  # block means: 0.299 on top, 0 below
        tensor([[0.2990],
                [0.0000]], dtype=torch.float64)
        >>> load_grey_image(crop=(100, 128, 256, 256), size=(48, 48)).shape
        torch.Size([48, 48])
    """
    pixels = _read_pixels(image)
    if pixels.ndim == 3:
        if pixels.shape[2] not in (3, 4):
            raise ValueError(f"`image` must be (H, W), (H, W, 3) or (H, W, 4), got shape {tuple(pixels.shape)}.")
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
        pixels = pixels[..., :3] @ luma
    elif pixels.ndim != 2:
        raise ValueError(f"`image` must be (H, W), (H, W, 3) or (H, W, 4), got shape {tuple(pixels.shape)}.")
    if crop is not None:
        top, left, height, width = (int(v) for v in crop)
        if not (top >= 0 and left >= 0 and height >= 1 and width >= 1 and top + height <= pixels.shape[0]
                and left + width <= pixels.shape[1]):
            raise ValueError(f"`crop` = (top, left, height, width) = {tuple(crop)} must lie inside the "
                             f"{pixels.shape[0]} × {pixels.shape[1]} image.")
        pixels = pixels[top:top + height, left:left + width]
    if size is not None:
        height, width = (int(v) for v in size)
        if height < 1 or width < 1:
            raise ValueError(f"`size` must be (height, width) with both ≥ 1, got {tuple(size)}.")
        pixels = torch.nn.functional.interpolate(pixels[None, None], size=(height, width), mode="area")[0, 0]
    return pixels.contiguous()


def _read_pixels(image: str | torch.Tensor | None) -> torch.Tensor:
    if image is None or isinstance(image, str):
        import matplotlib.image

        array = matplotlib.image.imread(sample_image_path() if image is None else image)
        pixels = torch.as_tensor(array.copy())
    elif isinstance(image, torch.Tensor):
        pixels = image
    else:
        raise ValueError(f"`image` must be None, a file path or a tensor, got {type(image).__name__}.")
    if pixels.dtype == torch.uint8:
        return pixels.to(torch.float64) / 255.0
    return pixels.to(torch.float64)


def pixel_coordinates(height: int, width: int, scale: str = "pixel") -> torch.Tensor:
    """Return the (x, y) input of every pixel, float64 of shape (height, width, 2).

    Convention: x follows the column j and y the row i (y grows downwards, as in the image array). ``scale="pixel"``
    gives the indices themselves, (x, y) = (j, i) (the paper's "position (x, y)"); ``scale="unit"`` maps both to
    [−1, 1] (x = −1 at j = 0, +1 at j = width − 1; exact evenly spaced grids, :func:`evenly_spaced`).

    Example:
        >>> pixel_coordinates(2, 3)[..., 0]  # x = j
        tensor([[0., 1., 2.],
                [0., 1., 2.]], dtype=torch.float64)
        >>> pixel_coordinates(2, 3, scale="unit")[:, 0, 1]  # y down the first column
        tensor([-1.,  1.], dtype=torch.float64)
    """
    if scale not in COORDINATE_SCALES:
        raise ValueError(f"`scale` must be one of {COORDINATE_SCALES}, got {scale!r}.")
    if scale == "unit":
        ys, xs = evenly_spaced(-1.0, 1.0, height), evenly_spaced(-1.0, 1.0, width)
    else:
        ys, xs = torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1)


class ImageRegression2DDataModule(pl.LightningDataModule):
    """A grey-scale image as a regression task (x, y) → grey value, trained on every other column (paper Fig. 2).

    The paper fits a photograph of an eye "from position (x, y) to gray scale strength", trained on "all pixels
    whose horizontal indexes are odd". Here: inputs are :func:`pixel_coordinates` (x by column, y by row; the
    pixel indices themselves by default), targets the grey value in [0, 1] (:func:`load_grey_image`), shape
    (n, 1). With ``train_columns="odd"`` the training pixels are the columns j = 1, 3, 5, … (0-based) and the
    held-out pixels, served by the val and test loaders, the other columns: the network's error there is its
    generalization error. Pixels are listed row by row (row-major, as ``image[i, j]``), so the training pixels of
    one row are consecutive and evenly spaced.

    The default image is matplotlib's sample photograph of Grace Hopper (:func:`sample_image_path`, public domain),
    cropped to her face and shrunk.

    Args:
        image: an image file path, or ``None`` for the sample photograph (read by :func:`load_grey_image`).
        crop: ``(top, left, height, width)`` in the original image, ``None`` for all of it.
        size: ``(height, width)`` after area resampling, ``None`` to keep the cropped size.
        train_columns: ``"odd"`` (paper), ``"even"`` or ``"all"`` (then nothing is held out).
        probe_row: the row i whose training pixels :meth:`row_data` returns (the paper's red dashed line);
            ``None``: the middle row.
        coordinates: ``"pixel"`` (inputs (j, i), the default) or ``"unit"`` (both scaled to [−1, 1]). The scale
            matters with a Gaussian initialization of fixed std: with pixel indices the first layer's
            pre-activations are ~ init_std · width at initialization, which is what lets the small-init network of
            Fig. 2 leave the flat start within a CPU budget.
        batch_size: ``None`` for full-batch training, else the mini-batch size (shuffled with ``seed``).
        seed: seeds the shuffling.

    Example:
        >>> dm = ImageRegression2DDataModule(crop=(100, 128, 256, 256), size=(48, 48), probe_row=25)
        >>> dm.image.shape, dm.x_train.shape, dm.x_test.shape  # 24 odd columns trained, 24 even held out
        (torch.Size([48, 48]), torch.Size([1152, 2]), torch.Size([1152, 2]))
        >>> x_row, y_row = dm.row_data()
        >>> x_row.shape, bool((y_row[:, 0] == dm.image[25, 1::2].float()).all())
        (torch.Size([24, 2]), True)
    """

    def __init__(
        self,
        image: str | None = None,
        crop: tuple[int, int, int, int] | None = (100, 128, 256, 256),
        size: tuple[int, int] | None = (48, 48),
        train_columns: str = "odd",
        probe_row: int | None = None,
        coordinates: str = "pixel",
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if train_columns not in TRAIN_COLUMNS:
            raise ValueError(f"`train_columns` must be one of {TRAIN_COLUMNS}, got {train_columns!r}.")
        if coordinates not in COORDINATE_SCALES:
            raise ValueError(f"`coordinates` must be one of {COORDINATE_SCALES}, got {coordinates!r}.")
        if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"`batch_size` must be None (full batch) or an int ≥ 1, got {batch_size!r}.")
        self.save_hyperparameters()
        self.image = load_grey_image(image, crop, size).to(torch.float32)
        height, width = self.image.shape
        if probe_row is None:
            probe_row = height // 2
        if not (isinstance(probe_row, int) and 0 <= probe_row < height):
            raise ValueError(f"`probe_row` must be a row index in [0, {height - 1}], got {probe_row!r}.")
        if train_columns != "all" and width < 2:
            raise ValueError(f"`train_columns={train_columns!r}` needs an image at least 2 pixels wide.")
        self.train_columns, self.probe_row, self.batch_size, self.seed = train_columns, probe_row, batch_size, seed
        self.coordinates = pixel_coordinates(height, width, coordinates).to(torch.float32)
        self.train_mask = self.column_mask(train_columns, width).expand(height, width)
        self.x_train, self.y_train = self._pixels(self.train_mask)
        self.train_dataset = TensorDataset(self.x_train, self.y_train)
        self.x_test: torch.Tensor | None = None
        self.y_test: torch.Tensor | None = None
        self.test_dataset: TensorDataset | None = None
        if train_columns != "all":
            self.x_test, self.y_test = self._pixels(~self.train_mask)
            self.test_dataset = TensorDataset(self.x_test, self.y_test)
            self.val_dataloader = self._test_dataloader
            self.test_dataloader = self._test_dataloader

    @staticmethod
    def column_mask(train_columns: str, width: int) -> torch.Tensor:
        """Return a bool (width,) mask of the training columns (``"odd"``: j = 1, 3, …; ``"even"``: j = 0, 2, …).

        Example:
            >>> ImageRegression2DDataModule.column_mask("odd", 5)
            tensor([False,  True, False,  True, False])
        """
        j = torch.arange(width)
        if train_columns == "all":
            return torch.ones(width, dtype=torch.bool)
        return (j % 2 == 1) if train_columns == "odd" else (j % 2 == 0)

    def _pixels(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.coordinates[mask], self.image[mask].unsqueeze(1)

    def grid_inputs(self) -> torch.Tensor:
        """Return the inputs of every pixel, row-major, shape (height · width, 2): predict on them to draw an image."""
        return self.coordinates.reshape(-1, 2)

    def row_data(self, row: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the inputs (m, 2) and targets (m, 1) of the training pixels of ``row`` (default ``probe_row``).

        They are evenly spaced along x, so their DFT is the paper's Fig. 2b spectrum of that line.
        """
        row = self.probe_row if row is None else row
        mask = torch.zeros_like(self.train_mask)
        mask[row] = self.train_mask[row]
        return self._pixels(mask)

    def setup(self, stage: str | None = None) -> None:
        """Nothing to do: the tensors are built at construction (a small image, read once)."""

    def _loader(self, dataset: TensorDataset, shuffle: bool) -> DataLoader:
        n = len(dataset)
        bs = n if self.batch_size is None else min(self.batch_size, n)
        shuffle = shuffle and bs < n
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=bs, shuffle=shuffle, generator=generator)

    def train_dataloader(self) -> DataLoader:
        """Return the training pixels, one full batch when ``batch_size`` is None, else shuffled batches."""
        return self._loader(self.train_dataset, shuffle=True)

    def _test_dataloader(self) -> DataLoader:
        """Return the held-out pixels; bound as ``val_dataloader`` and ``test_dataloader`` when some are held out."""
        return self._loader(self.test_dataset, shuffle=False)
