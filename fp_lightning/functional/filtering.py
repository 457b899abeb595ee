"""Gaussian low-pass filtering in input space: the "filtering method" of the F-Principle slides.

A Gaussian kernel in the (flattened) input space splits any function sampled on the probe set, the targets y
or the network outputs h, into a low-frequency part (a kernel-weighted average over nearby inputs) and the
high-frequency rest. Comparing the parts of h and y gives e_low and e_high per filter width δ.

Implementation notes (shared by every function here, see :class:`GaussianFilterBank`):

* The n × n kernel is never built whole. The sample range is cut into blocks of ``chunk_size``; only the tiles
  (I, J) with J ≥ I are computed, one at a time, and each tile serves twice because the kernel is symmetric:
  K_IJ @ v_J updates rows I and K_IJᵀ @ v_I updates rows J. This halves the distance products and the
  exponentials, and bounds the temporaries by 2·chunk_size² + 2·chunk_size·d numbers (256 MB by default),
  besides the (M, n, c) result.
* One distance tile serves every δ, and the denominators come out of the same matrix product as the numerators
  (a column of ones is appended to the values, zero-padded to a multiple of 12 columns, where the small products
  run about twice as fast).
* Only the off-diagonal sums S_i = Σ_{j≠i} G_δ(x_i − x_j) v_j and T_i = Σ_{j≠i} G_δ(x_i − x_j) are accumulated (the
  diagonal of each kernel tile is zeroed); the self term G_δ(0) = 1 is added exactly in float64:
  v^{low}_i = (v_i + S_i)/(1 + T_i) and v^{high}_i = (v_i·T_i − S_i)/(1 + T_i). The high part therefore never
  comes from subtracting two nearly equal numbers (v − v^{low} when δ is small), and its error is relative to
  the neighbours' weight T, not to v.
* Distances and kernels are computed in ``dtype`` (float32 by default: the distance products run twice as fast
  and the kernels take half the memory); the sums over tiles accumulate in float64. Squared distances are
  ‖a‖² + ‖b‖² − 2a·b on mean-centred inputs (centring, done in float64, removes the cancellation that large
  offsets would cause and leaves the distances unchanged), clamped at 0, with the diagonal set to exactly 0.
  In float32 a squared distance is off by about 1e-7·(‖a‖² + ‖b‖²) (centred norms), so a kernel entry by that
  over 2δ relatively. Measured against a dense float64 oracle on MNIST and CIFAR-10 from δ = m/100 to m/4: e_low
  within 4e-8, e_high within 1.1e-5 (where ‖y^{high}‖ is 2.5e-5 of ‖y‖) and within 1.2e-6 from a share of 1e-3 up.
  Pass ``dtype=torch.float64`` for δ far below the squared norms of the centred inputs.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from typing import Literal

import torch

from fp_lightning.functional._validation import (
    check_dtype,
    check_finite,
    check_int,
    check_min_samples,
    check_number,
    check_optional_int,
    check_positive,
    check_same_length,
    check_tensor,
    values_as_2d,
)

__all__ = ["FILTER_PRECISIONS", "FilterPrecision", "GaussianFilterBank", "default_deltas", "gaussian_lowpass",
           "low_high_errors"]

#: Bytes of temporaries one tile may use by default (distance tile, kernel tile, two centred input blocks).
DEFAULT_TEMP_BUDGET = 256 * 2**20
#: Bytes a :class:`GaussianFilterBank` may keep for its cached squared distances by default.
DEFAULT_CACHE_BUDGET = 2**30
#: Largest default tile edge on CPU. Measured on 2 cores (CIFAR, n = 5000, d = 3072), all tiles J ≥ I: 512-row
#: blocks took 0.45 s in float32 (0.87 s float64) against 0.48 s (0.95 s) at 1024, because larger tiles waste
#: more of the symmetric saving (a fraction (k + 1)/(2k) of the n² pairs for k blocks); a 512 × 512 float32
#: kernel (1 MB) also stays in the L2 cache between its exponential and its two products.
_CPU_MAX_CHUNK = 512
#: ‖y_low‖ or ‖y_high‖ below this fraction of ‖y‖ counts as zero: the part is then at the level of the rounding
#: noise of the kernel sums in that dtype (≈ 1e-7 in float32, 1e-16 in float64, relative to ‖y‖), and the ratio
#: it divides would be meaningless.
_DEGENERATE_RATIO = {torch.float32: 1e-6, torch.float64: 1e-10}

DeltaLike = float | Sequence[float] | torch.Tensor
#: Working precision of the filter as a name. The Metric and the monitor take these strings (``filter_precision``:
#: a YAML config can set them); the functions and ``GaussianFilterBank`` of this module take the torch dtype
#: (``dtype``), as torch functions do.
FilterPrecision = Literal["float32", "float64"]
#: ``filter_precision`` names and the dtypes they stand for.
FILTER_PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


def _as_deltas(deltas: DeltaLike, name: str = "deltas") -> tuple[torch.Tensor, bool]:
    """Return the δ values as a 1-D float64 CPU tensor, and whether a single scalar was given."""
    if isinstance(deltas, torch.Tensor):
        if deltas.is_complex():
            raise ValueError(f"`{name}` must be real, got dtype {deltas.dtype}.")
        if deltas.ndim > 1:
            raise ValueError(f"`{name}` must be a number or a 1-D sequence, got shape {tuple(deltas.shape)}.")
        scalar = deltas.ndim == 0
        values = deltas.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    else:
        scalar = isinstance(deltas, numbers.Real)
        try:
            values = torch.as_tensor([deltas] if scalar else list(deltas), dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"`{name}` must be a number or a 1-D sequence of numbers, got {deltas!r}.") from err
        if values.ndim != 1:
            raise ValueError(f"`{name}` must be a number or a 1-D sequence, got shape {tuple(values.shape)}.")
    check_positive(name, values)
    return values, scalar


def _check_real(name: str, value: torch.Tensor) -> None:
    if value.is_complex():
        raise ValueError(f"`{name}` must be real, got dtype {value.dtype}.")


def _flatten_inputs(x: torch.Tensor) -> torch.Tensor:
    """Validate ``x`` (n, ...) and view it as (n, d) (``(n,)`` becomes (n, 1)); no copy when possible."""
    check_tensor("x", x)
    _check_real("x", x)
    check_min_samples("x", x, 2)
    flat = x.reshape(x.shape[0], -1)
    if flat.is_floating_point():  # integers are finite; their sum would first cast the whole x to int64
        check_finite("x", flat)  # one reduction, no full-size temporary
    return flat


def _as_values(name: str, values: torch.Tensor, n: int, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Validate ``values`` (n,) or (n, c) against n samples; return float64 (n, c) on ``device`` and the 1-D flag."""
    check_tensor(name, values)
    _check_real(name, values)
    values2d, squeeze = values_as_2d(name, values)
    if values2d.shape[0] != n:
        raise ValueError(f"Mismatched number of samples: `x` has {n}, `{name}` has {values2d.shape[0]}; "
                         "they must be equal.")
    check_finite(name, values2d)
    return values2d.to(device=device, dtype=torch.float64), squeeze


def _default_chunk(n: int, d: int, device: torch.device, itemsize: int, budget: int = DEFAULT_TEMP_BUDGET) -> int:
    """Tile edge b with 2·b² (distance and kernel tile) + 2·b·d (centred inputs) numbers ≤ ``budget`` bytes."""
    numbers = budget / itemsize
    b = int((-d + math.sqrt(d * d + 2 * numbers)) / 2)  # root of 2b² + 2bd = numbers
    if device.type == "cpu":
        b = min(b, _CPU_MAX_CHUNK)
    return max(1, min(n, b))


class GaussianFilterBank:
    """Gaussian low-pass filters of several widths δ on a fixed set of inputs, cached across calls.

    Convention:
        y^{low,δ}_i = Σ_j G_δ(x_i − x_j) y_j / Σ_j G_δ(x_i − x_j), with G_δ(u) = exp(−‖u‖²/(2δ)) on the
        flattened inputs (δ is a variance, in squared input units); y^{high,δ} = y − y^{low,δ}, the same for h.
        e_low = ‖h^{low} − y^{low}‖_F / ‖y^{low}‖_F and e_high = ‖h^{high} − y^{high}‖_F / ‖y^{high}‖_F, the
        Frobenius norms over samples × channels. By linearity h^{low} − y^{low} = (h − y)^{low}, which is how the
        numerators are computed (no cancellation between two nearly equal filtered arrays).

    What is kept between calls (the inputs of a probe set do not change between epochs):

    * the flattened inputs (a view of ``x``, not a copy: do not modify ``x`` in place afterwards), their mean and
      the squared norms of the centred rows;
    * the kernel tiles of every δ of the upper block triangle, if they fit ``memory_budget`` (about
      M·n²·itemsize/2 bytes: 2·M·n² in float32), so later passes are matrix products only; else the
      squared-distance tiles (about n²·itemsize/2 bytes), so later passes only evaluate exponentials and
      products; else nothing, and every pass recomputes them tile by tile. Beside the kernels the distance tiles
      are kept too when both fit (about (M + 1)·n²·itemsize/2 bytes), so that a width outside ``deltas``
      (:meth:`neighbour_sums_at`, the leave-one-out labels of the denoised score) needs no second distance pass.
      The cache is filled during the first pass over the tiles, whichever method makes it;
    * for :meth:`errors`, the norms of y^{low} and y^{high} of the last target seen (recognised by its values),
      so each epoch only filters h − y.

    Nothing here is differentiable: all computations run under ``torch.no_grad()``.

    Numerical stability: each row's kernel is not shifted by its minimum distance because that minimum is the
    self-distance, exactly 0, so the self term G_δ(0) = 1 already keeps every denominator ≥ 1 however small δ is
    (distant terms may underflow to 0, which is then their correct value to the working precision) and no term
    exceeds 1. The self term is added exactly in float64 and the high part is formed as (v·T − S)/(1 + T) from the
    off-diagonal sums (see the module notes), so a small δ does not turn y^{high} into rounding noise.

    Args:
        x: inputs (n, ...), n ≥ 2, flattened per sample; any real dtype and device (the computation runs there).
        deltas: one δ > 0 or a 1-D sequence/tensor of them.
        chunk_size: tile edge (rows and columns of the kernel built at once). ``None``: the largest tile whose
            temporaries stay within 256 MB (at most 512 on CPU).
        memory_budget: bytes the bank may keep between calls (default 1 GiB): the kernels of all M widths (about
            M·n²·itemsize/2 bytes; later passes are then matrix products only) if they fit, and the squared
            distances beside them if those fit too (about n²·itemsize/2 bytes more), else the squared distances
            alone, else nothing; 0 disables caching.
        dtype: working precision of the distances, kernels and their products, ``torch.float32`` (default: twice
            as fast, half the memory; relative error about 1e-7·‖x − x̄‖²/δ per kernel entry) or
            ``torch.float64``. Sums over tiles, the self term and the results are float64 either way.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
        >>> bank = GaussianFilterBank(x, [0.5, 1e6])
        >>> bank.lowpass(torch.tensor([1.0, 1.0, 1.0, 1.0]))   # constants pass unchanged
        tensor([[1., 1., 1., 1.],
                [1., 1., 1., 1.]], dtype=torch.float64)
        >>> bank.lowpass(torch.tensor([0.0, 0.0, 0.0, 4.0]))[1]  # a huge δ gives the mean
        tensor([1.0000, 1.0000, 1.0000, 1.0000], dtype=torch.float64)
        >>> e_low, e_high = bank.errors(torch.tensor([0.0, 1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0, 1.0]))
        >>> e_low
        tensor([0., 0.], dtype=torch.float64)
    """

    @torch.no_grad()
    def __init__(
        self,
        x: torch.Tensor,
        deltas: DeltaLike,
        *,
        chunk_size: int | None = None,
        memory_budget: int = DEFAULT_CACHE_BUDGET,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        flat = _flatten_inputs(x)
        self._deltas, _ = _as_deltas(deltas)
        self.dtype = check_dtype("dtype", dtype, tuple(_DEGENERATE_RATIO))
        chunk_size = check_optional_int("chunk_size", chunk_size, 1)
        if memory_budget != math.inf:  # "no limit" is a valid budget
            check_number("memory_budget", memory_budget, 0)
        n, d = flat.shape
        itemsize = self.dtype.itemsize
        self._x = flat
        self._device = flat.device
        self.chunk_size = (int(chunk_size) if chunk_size is not None
                           else _default_chunk(n, d, flat.device, itemsize))
        self._blocks = [(start, min(start + self.chunk_size, n)) for start in range(0, n, self.chunk_size)]
        # −log2(e)/(2δ) per δ: the kernel tile is exp2(coef · D) = exp(−D/(2δ)). torch's exp2 ran 2.7× (float64) to
        # 3× (float32) faster than its exp on 512 × 512 tiles here, at the same accuracy (1 ulp).
        self._coefs = (-0.5 * math.log2(math.e) / self._deltas).to(device=self._device, dtype=self.dtype)
        self._mean = torch.zeros(d, dtype=torch.float64, device=self._device)
        for start, stop in self._blocks:
            self._mean += flat[start:stop].to(torch.float64).sum(dim=0)
        self._mean /= n
        self._sqnorms = torch.cat([self._centred64(start, stop).square_().sum(dim=1)
                                   for start, stop in self._blocks]).to(self.dtype)
        cache_bytes = itemsize * sum((b1 - b0) * (c1 - c0) for i, (b0, b1) in enumerate(self._blocks)
                                     for c0, c1 in self._blocks[i:])
        # What to keep, best first: the kernels of every δ (later passes are then matrix products only), else
        # the squared distances (later passes skip the distance products), else nothing (bounded memory).
        keep_kernels = cache_bytes * self._coefs.numel() <= memory_budget
        self._kernels: dict[tuple[int, int], torch.Tensor] | None = {} if keep_kernels else None
        # the distances too when they fit beside the kernels: one more width (the denoised score's, through
        # :meth:`neighbour_sums_at`) then costs no second distance pass
        keep_distances = cache_bytes * (self._coefs.numel() + 1 if keep_kernels else 1) <= memory_budget
        self._cache: dict[tuple[int, int], torch.Tensor] | None = {} if keep_distances else None
        self._n_tiles = len(self._blocks) * (len(self._blocks) + 1) // 2
        self._kernels_complete = False
        self._target_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def deltas(self) -> torch.Tensor:
        """The filter widths δ, (M,) float64 on CPU."""
        return self._deltas.clone()

    @property
    def n_samples(self) -> int:
        """Number of probe inputs n."""
        return self._x.shape[0]

    @property
    def caches_distances(self) -> bool:
        """Whether the squared distances (or the kernels made from them) are kept between calls."""
        return self._cache is not None or self._kernels is not None

    @property
    def caches_kernels(self) -> bool:
        """Whether the kernels of every δ are kept between calls (they fit ``memory_budget``)."""
        return self._kernels is not None

    @torch.no_grad()
    def lowpass(self, values: torch.Tensor) -> torch.Tensor:
        """Low-pass ``values`` (n,) or (n, c) with every δ at once: returns (M, n) or (M, n, c) float64.

        Example:
            >>> bank = GaussianFilterBank(torch.tensor([0.0, 1.0]), [2.0], dtype=torch.float64)
            >>> bank.lowpass(torch.tensor([0.0, 1.0]))   # weights 1 and exp(-1/4)
            tensor([[0.4378, 0.5622]], dtype=torch.float64)
        """
        v, squeeze = _as_values("values", values, self.n_samples, self._device)
        sums, weights = self.neighbour_sums(v)
        low = sums.add_(v).div_(weights.add_(1.0))  # (v + S) / (1 + T), in place: no second (M, n, c) array
        return low[..., 0].contiguous() if squeeze else low.contiguous()

    @torch.no_grad()
    def errors(self, target: torch.Tensor, output: torch.Tensor,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """e_low and e_high, (M,) float64 each, of ``output`` h against ``target`` y, both (n,) or (n, c).

        The norms of y^{low} and y^{high} are cached for the last target seen (compared by value), so calling
        this every epoch with the same target only filters h − y.

        ``mask`` (shaped like ``target``, 1 = kept, 0 = ignored, e.g. padding labels) leaves entries out: each
        column is filtered over its kept samples only, v^{low}_i = Σ_{j kept} G_ij v_j / Σ_{j kept} G_ij, and the
        norms run over the kept entries only.

        Raises:
            ValueError: shapes differ, non-finite values, or y^{low} or y^{high} is (numerically) zero for some δ
                (‖·‖_F ≤ 1e-10·‖y‖_F in float64, 1e-6·‖y‖_F in float32, e.g. a zero or constant target, or a δ so
                small that the filter leaves y unchanged), where the ratio is undefined.

        Example:
            >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
            >>> y = torch.tensor([0.0, 1.0, 0.0, 1.0])
            >>> e_low, e_high = GaussianFilterBank(x, [0.5]).errors(y, torch.zeros(4))
            >>> e_low, e_high   # h = 0 misses all of y at every frequency
            (tensor([1.], dtype=torch.float64), tensor([1.], dtype=torch.float64))
        """
        check_tensor("target", target)
        check_tensor("output", output)
        check_same_length(("target", "output"), target, output)
        if target.shape != output.shape:
            raise ValueError(f"`output` shape {tuple(output.shape)} must equal `target` shape {tuple(target.shape)}.")
        y, _ = _as_values("target", target, self.n_samples, self._device)
        h, _ = _as_values("output", output, self.n_samples, self._device)
        diff = h - y  # by linearity (h − y)^{low} = h^{low} − y^{low}: no cancellation between filtered arrays
        if mask is not None:
            return self._masked_errors(y, diff, mask)
        cached = self._target_cache
        if cached is not None and cached[0].shape == y.shape and torch.equal(cached[0], y):
            y_low_norm, y_high_norm = cached[1], cached[2]
            diff_low_norm, diff_high_norm = self._part_norms(diff, *self.neighbour_sums(diff))
        else:
            c = y.shape[1]
            sums, weights = self.neighbour_sums(torch.cat([y, diff], dim=1))
            y_low_norm, y_high_norm = self._part_norms(y, sums[..., :c], weights)
            diff_low_norm, diff_high_norm = self._part_norms(diff, sums[..., c:], weights)
            self._check_target_parts(y, y_low_norm, y_high_norm)
            self._target_cache = (y.clone(), y_low_norm, y_high_norm)
        return diff_low_norm / y_low_norm, diff_high_norm / y_high_norm

    def _masked_errors(self, y: torch.Tensor, diff: torch.Tensor,
                       mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``errors`` over the kept entries only (normalized convolution: the weights are summed over kept j)."""
        keep, _ = _as_values("mask", mask.to(torch.float64), self.n_samples, self._device)
        if keep.shape != y.shape:
            raise ValueError(f"`mask` shape {tuple(mask.shape)} must equal `target` shape {tuple(y.shape)}.")
        y, diff, c = y * keep, diff * keep, y.shape[1]
        sums, _ = self.neighbour_sums(torch.cat([y, diff, keep], dim=1))
        weights = keep + sums[..., 2 * c:]  # Σ_{j kept} G_ij, self term included
        safe = torch.where(weights > 0, weights, torch.ones_like(weights))
        norms = []
        for v, s in ((y, sums[..., :c]), (diff, sums[..., c:2 * c])):
            low = (v + s) / safe * keep  # v is 0 where not kept, so (v_i + S_i) sums the kept j only
            high = (v * sums[..., 2 * c:] - s) / safe * keep  # = v − v^{low} on kept entries
            norms.append((torch.linalg.vector_norm(low, dim=(1, 2)), torch.linalg.vector_norm(high, dim=(1, 2))))
        (y_low, y_high), (diff_low, diff_high) = norms
        self._check_target_parts(y, y_low, y_high)
        return diff_low / y_low, diff_high / y_high

    def _check_target_parts(self, y: torch.Tensor, low_norm: torch.Tensor, high_norm: torch.Tensor) -> None:
        ratio = _DEGENERATE_RATIO[self.dtype]
        floor = ratio * float(torch.linalg.vector_norm(y))
        for part, norms, hint in (
            ("low", low_norm, "a zero target, or a zero-mean target with a δ so large that y_low is its mean"),
            ("high", high_norm, "a constant target, or a δ so small that the filter leaves the target unchanged"),
        ):
            bad = (norms <= floor).nonzero().flatten().tolist()
            if bad:
                widths = [float(self._deltas[i]) for i in bad]
                raise ValueError(f"`target` has no {part}-frequency part at delta={widths} (‖y_{part}‖_F ≤ "
                                 f"{ratio:g}·‖y‖_F in {self.dtype}): e_{part} would divide by zero. Typical "
                                 f"causes: {hint}. Check `target` or choose other `deltas`.")

    # ----------------------------------------------------------------------------------------------- internals
    @staticmethod
    def _part_norms(v: torch.Tensor, sums: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """‖v^{low}‖_F and ‖v^{high}‖_F per δ from the off-diagonal sums S (M, n, c) and T (M, n, 1)."""
        scale = weights + 1.0
        low = (v + sums) / scale
        high = (v * weights - sums) / scale  # = v − v^{low}, without the cancellation
        return torch.linalg.vector_norm(low, dim=(1, 2)), torch.linalg.vector_norm(high, dim=(1, 2))

    def _centred64(self, start: int, stop: int) -> torch.Tensor:
        rows = self._x[start:stop]
        block = rows.to(torch.float64)
        # centre the fresh float64 copy in place (one block-sized temporary less for uint8 or float32 images); a
        # float64 x is not copied by .to(), so it is centred into a new array instead of being modified
        return block - self._mean if block.data_ptr() == rows.data_ptr() else block.sub_(self._mean)

    def _centred_inputs(self) -> torch.Tensor | None:
        """All centred inputs in ``dtype`` for one pass, if they fit the temporaries' budget (else None: per block).

        Converting once per pass, rather than once per tile, saves (number of blocks − 1) conversions of each
        column block.
        """
        n, d = self._x.shape
        if n * d * self.dtype.itemsize > DEFAULT_TEMP_BUDGET:
            return None
        centred = torch.empty((n, d), dtype=self.dtype, device=self._device)
        for start, stop in self._blocks:
            centred[start:stop] = self._centred64(start, stop)
        return centred

    def _block(self, centred: torch.Tensor | None, start: int, stop: int) -> torch.Tensor:
        return centred[start:stop] if centred is not None else self._centred64(start, stop).to(self.dtype)

    def _distance_tile(self, i: int, j: int, rows: torch.Tensor | None, cols: torch.Tensor | None) -> torch.Tensor:
        """Squared distances between blocks i and j (j ≥ i), in ``dtype``, ≥ 0, zero diagonal when i == j."""
        if self._cache is not None and (i, j) in self._cache:
            return self._cache[(i, j)]
        (r0, r1), (c0, c1) = self._blocks[i], self._blocks[j]
        assert rows is not None and cols is not None
        tile = rows @ cols.T
        tile.mul_(-2.0).add_(self._sqnorms[r0:r1, None]).add_(self._sqnorms[None, c0:c1]).clamp_(min=0.0)
        if i == j:
            tile.fill_diagonal_(0.0)
        if self._cache is not None:
            self._cache[(i, j)] = tile
        return tile

    def _add_products(self, acc: torch.Tensor, kernel: torch.Tensor, w: torch.Tensor,
                      rows: tuple[int, int], cols: tuple[int, int]) -> None:
        """acc[.., rows] += K @ w[cols] and, off the block diagonal, acc[.., cols] += Kᵀ @ w[rows].

        ``kernel`` is one tile (P, Q) with ``acc`` (n, width), or a stack (M, P, Q) with ``acc`` (M, n, width).
        The products run in ``dtype``; the float64 accumulator adds them up.
        """
        (r0, r1), (c0, c1) = rows, cols
        acc[..., r0:r1, :] += kernel @ w[c0:c1]
        if rows != cols:  # the same tile, transposed, serves rows c0:c1; wᵀ @ K reads K in its own layout
            acc[..., c0:c1, :] += (w[r0:r1].T @ kernel).transpose(-1, -2)

    def _kernel_products(self, dist: torch.Tensor, rows: tuple[int, int], cols: tuple[int, int],
                         w: torch.Tensor, acc: torch.Tensor) -> None:
        """Add every δ's off-diagonal products of one distance tile, caching the kernels when the bank keeps them."""
        diagonal = rows == cols
        if self._kernels is None:  # one reusable buffer per tile: memory stays bounded
            kernel = torch.empty(dist.shape, dtype=dist.dtype, device=dist.device)
            for m, coef in enumerate(self._coefs.tolist()):
                torch.mul(dist, coef, out=kernel).exp2_()
                if diagonal:
                    kernel.fill_diagonal_(0.0)  # the self term is added exactly, in float64
                self._add_products(acc[m], kernel, w, rows, cols)
            return
        stacked = torch.exp2(dist.unsqueeze(0) * self._coefs.view(-1, 1, 1))
        if diagonal:
            stacked.diagonal(dim1=1, dim2=2).zero_()
        self._kernels[(rows[0], cols[0])] = stacked
        self._add_products(acc, stacked, w, rows, cols)

    def neighbour_sums(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Off-diagonal sums of float64 (n, c) ``v`` for all δ, float64: S_i = Σ_{j≠i} K_ij v_j and T_i = Σ_{j≠i} K_ij.

        K_ij = exp(−‖x_i − x_j‖²/(2δ)) with the self term left out: S / T is the leave-one-out low-pass of ``v``
        (``leave_one_out_lowpass`` uses it). Returns S (M, n, c) and T (M, n, 1), from one pass over the upper block
        triangle (or the cached kernels).

        Example:
            >>> bank = GaussianFilterBank(torch.tensor([[0.0], [1.0], [5.0]]), torch.tensor([0.5]))
            >>> sums, weights = bank.neighbour_sums(torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64))
            >>> round(float(sums[0, 0, 0] / weights[0, 0, 0]), 6)   # sample 0's neighbours, weighted: mostly x = 1
            2.0
        """
        n, c = v.shape
        # A column of ones gives T from the same products as S; zero columns pad the width to a multiple of 12:
        # MKL's products of a 256 × 256 block with 12, 24 or 36 columns ran at 30–45 GFLOP/s on one core, against
        # 10–25 for the widths in between (8, 16, 20, 28, 32).
        width = -(-(c + 1) // 12) * 12
        w = torch.cat([v, v.new_ones(n, 1), v.new_zeros(n, width - c - 1)], dim=1).to(self.dtype)
        acc = v.new_zeros(self._coefs.numel(), n, width)  # float64: acc[m, i] = Σ_{j≠i} K^δm_ij w_j
        if self._kernels is not None and self._kernels_complete:
            for (p0, q0), stacked in self._kernels.items():
                self._add_products(acc, stacked, w, (p0, p0 + stacked.shape[1]), (q0, q0 + stacked.shape[2]))
            return acc[..., :c], acc[..., c:c + 1]
        for dist, rows, cols in self._distance_tiles():
            self._kernel_products(dist, rows, cols, w, acc)
        self._kernels_complete = self._kernels is not None
        return acc[..., :c], acc[..., c:c + 1]

    @torch.no_grad()
    def neighbour_sums_at(self, v: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Off-diagonal sums of float64 (n, c) ``v`` at one width δ that need not be among the bank's ``deltas``.

        S_i = Σ_{j≠i} K_ij v_j and T_i = Σ_{j≠i} K_ij with K_ij = exp(−‖x_i − x_j‖²/(2δ)), returned as (n, c) and
        (n, 1) float64. The squared distances are this bank's (in ``dtype``; the cached ones when the bank keeps
        them, so no distance product is repeated), the kernel and the products are float64 whatever ``dtype``: a
        kernel entry stays representable up to ‖x_i − x_j‖²/(2δ) ≈ 745 (≈ 103 in float32), which matters at the
        small δ of the leave-one-out labels (``leave_one_out_lowpass``). Nothing of δ is cached.

        Example:
            >>> bank = GaussianFilterBank(torch.tensor([[0.0], [1.0], [5.0]]), [1.0, 2.0])
            >>> sums, weights = bank.neighbour_sums_at(torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64), 0.5)
            >>> round(float(sums[0, 0] / weights[0, 0]), 6)   # the same as neighbour_sums of a bank at δ = 0.5
            2.0
        """
        delta_value, _ = _as_deltas(delta, "delta")
        if delta_value.numel() != 1:
            raise ValueError(f"`delta` must be one number > 0, got {delta!r}.")
        coef = -0.5 * math.log2(math.e) / float(delta_value[0])  # as the bank's own widths: exp2(coef · D)
        n, c = v.shape
        w = torch.cat([v, v.new_ones(n, 1)], dim=1).to(device=self._device, dtype=torch.float64)
        acc = w.new_zeros(n, c + 1)
        for dist, rows, cols in self._distance_tiles():
            kernel = dist.to(torch.float64).mul_(coef).exp2_()
            if rows == cols:
                kernel.fill_diagonal_(0.0)
            self._add_products(acc, kernel, w, rows, cols)
        return acc[:, :c], acc[:, c:]

    def _distance_tiles(self) -> Iterator[tuple[torch.Tensor, tuple[int, int], tuple[int, int]]]:
        """Every squared-distance tile of the upper block triangle (cached, or computed and cached if kept)."""
        need_inputs = self._cache is None or len(self._cache) < self._n_tiles
        centred = self._centred_inputs() if need_inputs else None
        for i, (r0, r1) in enumerate(self._blocks):
            rows = self._block(centred, r0, r1) if need_inputs else None
            for j in range(i, len(self._blocks)):
                c0, c1 = self._blocks[j]
                cached = self._cache is not None and (i, j) in self._cache
                cols = None if cached or not need_inputs else (rows if j == i else self._block(centred, c0, c1))
                yield self._distance_tile(i, j, rows, cols), (r0, r1), (c0, c1)


def gaussian_lowpass(
    x: torch.Tensor,
    values: torch.Tensor,
    delta: DeltaLike,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Gaussian low-pass filter of ``values`` sampled at the inputs ``x``.

    Convention:
        v^{low,δ}_i = Σ_j G_δ(x_i − x_j) v_j / Σ_j G_δ(x_i − x_j), G_δ(u) = exp(−‖u‖²/(2δ)), on the flattened
        inputs (δ is a variance in the squared units of x). The high-frequency part is ``values − result``.

    Args:
        x: inputs (n, ...), flattened per sample.
        values: (n,) or (n, c) samples of the function to filter.
        delta: one δ > 0 (result shaped like ``values``) or a sequence/1-D tensor of M values (result stacked along
            a new leading dim, (M, n) or (M, n, c); a 1-element sequence gives M = 1).
        chunk_size: tile edge of the kernel built at once (``None``: from a 256 MB budget of temporaries).
        dtype: working precision of distances and kernels (see :class:`GaussianFilterBank`); sums are float64.

    Returns:
        The low-pass, accumulated in float64 and returned in ``values``' dtype when that is a floating dtype (float64
        otherwise), on the device of ``x``.

    Raises:
        ValueError: fewer than 2 samples, mismatched lengths, wrong dims, non-finite values, δ ≤ 0 or no δ.

    Example:
        >>> x = torch.tensor([0.0, 1.0, 5.0])
        >>> gaussian_lowpass(x, torch.tensor([0.0, 2.0, 4.0]), 0.5)
        tensor([0.5379, 1.4621, 4.0000])
        >>> gaussian_lowpass(x, torch.tensor([0.0, 2.0, 4.0]), [0.5, 1e9]).shape
        torch.Size([2, 3])
    """
    deltas, scalar = _as_deltas(delta, "delta")
    low = GaussianFilterBank(x, deltas, chunk_size=chunk_size, memory_budget=0, dtype=dtype).lowpass(values)
    if values.is_floating_point():
        low = low.to(values.dtype)
    return low[0] if scalar else low


def low_high_errors(
    x: torch.Tensor,
    target: torch.Tensor,
    output: torch.Tensor,
    deltas: DeltaLike,
    *,
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative errors e_low and e_high of ``output`` against ``target`` after a Gaussian low-pass in input space.

    Convention:
        y^{low,δ} = G_δ-weighted average as in :func:`gaussian_lowpass`, y^{high,δ} = y − y^{low,δ}, the same for
        h = ``output``; e_low = ‖h^{low} − y^{low}‖_F / ‖y^{low}‖_F, e_high = ‖h^{high} − y^{high}‖_F /
        ‖y^{high}‖_F, Frobenius norms over samples × channels (slides, "Decompose frequency domain by filtering").
        For repeated calls on the same inputs use :class:`GaussianFilterBank`, which caches kernels or distances.

    Args:
        x: inputs (n, ...), flattened per sample.
        target: y, (n,) or (n, c) (e.g. one-hot labels).
        output: h, the same shape (e.g. softmax outputs).
        deltas: one δ > 0 or a sequence/1-D tensor of M of them (see :func:`default_deltas`).
        chunk_size: tile edge of the kernel built at once (``None``: from a 256 MB budget of temporaries).
        dtype: working precision of distances and kernels, float32 (default) or float64 (see
            :class:`GaussianFilterBank`); sums and results are float64.

    Returns:
        ``(e_low, e_high)``, each (M,) float64 on the device of ``x`` (M = 1 for a single δ).

    Raises:
        ValueError: bad shapes or lengths, non-finite values, δ ≤ 0, fewer than 2 samples, or a target whose
            low- or high-frequency part is (numerically) zero for some δ.

    Example:
        >>> x = torch.linspace(0, 1, 50)
        >>> y = torch.sin(2 * torch.pi * x) + 0.3 * torch.sin(40 * torch.pi * x)
        >>> h = torch.sin(2 * torch.pi * x)                       # learnt only the low frequency
        >>> e_low, e_high = low_high_errors(x, y, h, [1e-3])
        >>> bool(e_low < 0.1), bool(e_high > 0.9)
        (True, True)
    """
    bank = GaussianFilterBank(x, deltas, chunk_size=chunk_size, memory_budget=0, dtype=dtype)
    return bank.errors(target, output)


@torch.no_grad()
def default_deltas(
    x: torch.Tensor,
    n_deltas: int = 20,
    *,
    low_fraction: float = 0.03,
    high_fraction: float = 0.25,
    max_pairs: int = 100_000,
    seed: int = 0,
) -> torch.Tensor:
    """Scale-free default filter widths δ: log-spaced fractions of the median pairwise squared distance.

    Convention:
        m = (lower) median of ‖x_i − x_j‖² over the pairs i < j of the flattened inputs: all pairs when
        n(n−1)/2 ≤ ``max_pairs``, else all pairs among a random subset of the inputs just large enough to give
        ``max_pairs`` pairs, drawn by a ``torch.Generator`` seeded with ``seed`` (the global RNG is never
        touched, and the same x always gives the same δ). δ_k = m · f_k with f_k log-spaced from
        ``low_fraction`` to ``high_fraction`` (a single δ: their geometric mean). Scaling x by s scales every δ by
        s² (bit-exact when s is a power of 2, up to rounding otherwise): only a distance order statistic and
        fixed fractions enter.

    Why these fractions: G_δ weighs a pair at the median distance by exp(−m/(2δ)). At δ = m/4 that is e^{−2}:
    the filter averages over a large part of the set and y^{low} is close to, not yet equal to, the mean. At
    δ = m/33 it is e^{−16.5}: only near neighbours count and y^{low} is close to, not yet equal to, y.
    Measured on MNIST and CIFAR-10 (n = 300 … 5000, one-hot targets), the high-frequency share
    ‖y^{high}‖_F / ‖y − ȳ‖_F is about 5e-6 … 1e-2 at m/100 and 0.92 … 0.98 at m/4, and crosses 1/2 between
    m/30 and m/12. The range starts at m/33, not lower, because below that y^{high} is so small that e_high
    (a ratio over ‖y^{high}‖) blows up: 9 to 30 at m/100 in MNIST runs, which reads as noise, not as signal.
    (The authors' CIFAR-10 script uses δ from 2 to 100 with m ≈ 340, i.e. m/170 … m/3.4.)
    A pair-distance scale rather than a nearest-neighbour one keeps
    δ independent of n; the median, unlike a small quantile, does not collapse to 0 when a few inputs repeat.

    Args:
        x: probe inputs (n, ...), n ≥ 2, flattened per sample.
        n_deltas: how many δ (≥ 1).
        low_fraction: smallest δ as a fraction of m (> 0).
        high_fraction: largest δ as a fraction of m (> ``low_fraction``).
        max_pairs: about how many pairs the median is taken over (fixes the subset size for large n).
        seed: seed of the private generator that draws the pairs.

    Returns:
        (n_deltas,) float64 CPU tensor, ascending, all > 0.

    Raises:
        ValueError: fewer than 2 samples, non-finite x, bad counts or fractions, or a median distance of 0 (more
            than half of the sampled pairs are identical inputs: no scale to derive δ from).

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])   # median squared distance of the 6 pairs: 1 (lower)
        >>> default_deltas(x, 3)
        tensor([0.0300, 0.0866, 0.2500], dtype=torch.float64)
        >>> default_deltas(2 * x, 3) / default_deltas(x, 3)
        tensor([4., 4., 4.], dtype=torch.float64)
    """
    flat = _flatten_inputs(x)
    n_deltas = check_int("n_deltas", n_deltas, 1)
    max_pairs = check_int("max_pairs", max_pairs, 1)
    seed = check_int("seed", seed)
    check_positive("low_fraction", low_fraction)
    check_positive("high_fraction", high_fraction)
    if not high_fraction > low_fraction:
        raise ValueError(f"`high_fraction` ({high_fraction}) must be > `low_fraction` ({low_fraction}).")
    median = _median_pair_distance(flat, max_pairs, seed)
    if not median > 0:
        raise ValueError("`x` has a median pairwise squared distance of 0 (most inputs are identical): there is no "
                         "scale to derive default deltas from; pass explicit deltas.")
    if n_deltas == 1:
        fractions = torch.tensor([math.sqrt(low_fraction * high_fraction)], dtype=torch.float64)
    else:
        fractions = torch.exp(torch.linspace(math.log(low_fraction), math.log(high_fraction), n_deltas,
                                             dtype=torch.float64))
    return median * fractions


def _centred_gram(sub: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram matrix (m, m) and squared norms (m,) of the mean-centred rows of ``sub`` (m, d), in float64.

    Rows whose float64 copy fits the temporaries' budget are converted at once (as before); wider inputs (448
    ImageNet-size images: 540 MB in float64) are converted and centred a slice of columns at a time, so only
    (m, slice) float64 numbers exist at once. The Gram matrix is a sum over features, so the slices add up.
    """
    m, d = sub.shape
    width = max(1, min(d, DEFAULT_TEMP_BUDGET // (2 * 8 * m)))  # the float64 slice and its centred copy
    gram = torch.zeros(m, m, dtype=torch.float64, device=sub.device)
    sq = torch.zeros(m, dtype=torch.float64, device=sub.device)
    for start in range(0, d, width):
        block = sub[:, start:start + width].to(torch.float64)
        block = block - block.mean(dim=0)
        gram += block @ block.T
        sq += block.square().sum(dim=1)
    return gram, sq


def _median_pair_distance(flat: torch.Tensor, max_pairs: int, seed: int) -> float:
    """Lower median of ‖x_i − x_j‖² over the pairs i < j of all inputs, or of a seeded random subset of them.

    The subset has the fewest inputs m with m(m−1)/2 ≥ ``max_pairs`` (448 for 100,000 pairs), drawn without
    replacement by a private ``torch.Generator``; one m × m product then gives all its pairs.
    """
    n = flat.shape[0]
    m = math.ceil((1 + math.sqrt(1 + 8 * max_pairs)) / 2)
    if n > m:
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m].to(flat.device)
        sub = flat[rows]
    else:
        sub = flat
    gram, sq = _centred_gram(sub)
    dist = (sq[:, None] + sq[None, :] - 2.0 * gram).clamp_(min=0.0)
    first, second = torch.triu_indices(sub.shape[0], sub.shape[0], offset=1, device=flat.device)
    return float(dist[first, second].median())
