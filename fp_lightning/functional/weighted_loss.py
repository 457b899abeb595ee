"""The frequency-weighted loss L_wf of the F-Principle paper (Eq. (4), Fig. 5) and its symmetric masks.

On N samples of a uniform grid (in grid order) the paper rewrites the mean squared error L_s of Eq. (3) in the
frequency domain, L_wf = (1/N) Σ_γ w(γ) |F[f](γ) − F[T](γ)|² (Eq. (4)), and trains with weights w that keep only
low (or only high) frequencies. Here the DFT indices γ = 0 … N − 1 are those of ``numpy.fft.fft`` /
``torch.fft.fft``, F[v](γ) = Σ_j v_j exp(−2πi·γ·j/N), and the constant is fixed by Parseval so that w ≡ 1 gives
the mean squared error exactly (the paper's footnote 4 leaves that constant out).

For inputs of any dimension, :func:`projected_frequency_weighted_loss` weights the spectrum of the error along the
inputs' first principal direction (paper §2.1), differentiably.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fp_lightning.functional._validation import check_finite, check_int, check_min_samples, check_tensor, values_as_2d
from fp_lightning.functional.projection import PrincipalProjection, principal_projection
from fp_lightning.functional.spectrum import _unit_phasors

__all__ = [
    "frequency_weighted_loss",
    "high_pass_weights",
    "low_pass_weights",
    "projected_frequency_weighted_loss",
]

_DEFAULT_CHUNK = 2**22


def frequency_weighted_loss(preds: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """L_wf = 1/(N²·c) · Σ_γ w(γ) · ‖F[h](γ) − F[y](γ)‖² over the N DFT indices of N uniform samples (paper Eq. (4)).

    Convention:
        ``preds`` h and ``target`` y hold N samples of a uniform grid **in grid order** (a full batch, not shuffled),
        with c channels. F[v](γ) = Σ_j v_j exp(−2πi·γ·j/N) for γ = 0 … N − 1 (``torch.fft.fft``, the numpy and
        authors' convention), ‖·‖ is the norm over channels. By Parseval, Σ_γ |F[v](γ)|² = N · Σ_j |v_j|², so the
        factor 1/(N²·c) makes w ≡ 1 equal ``torch.mean((preds − target) ** 2)`` exactly; the paper's Eq. (4) writes
        1/N and ignores that constant. Frequencies γ and N − γ are the same frequency |γ| of a real signal; give
        them equal weights (as :func:`low_pass_weights` and :func:`high_pass_weights` do) to weight frequencies,
        not the two halves of the spectrum. Differentiable in ``preds`` (and ``target``).

    Args:
        preds: network outputs h, shape (N,) or (N, c), real floating point.
        target: targets y, the same shape as ``preds`` ((N,) against (N, 1) is accepted too).
        weights: w(γ) for γ = 0 … N − 1, shape (N,), finite and ≥ 0.

    Returns:
        A 0-d tensor in ``preds``' dtype.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: a shape mismatch, a complex or non-finite input, or negative ``weights`` (the message names
            the argument).

    Example:
        >>> h = torch.tensor([1.0, 2.0, 0.0, -1.0], dtype=torch.float64)
        >>> y = torch.zeros(4, dtype=torch.float64)
        >>> float(frequency_weighted_loss(h, y, torch.ones(4)))  # Parseval: the mean squared error
        1.5
        >>> float(frequency_weighted_loss(h, y, low_pass_weights(4, 0)))  # only the mean: (Σ h / N)²
        0.25
    """
    h, y = _validated_pair(preds, target)
    n, channels = h.shape
    w = _validated_weights(weights, n, h)
    power = torch.fft.fft(h - y, dim=0).abs().square()  # (N, c); F is linear, so F[h] − F[y] = F[h − y]
    return (w.unsqueeze(1) * power).sum() / (n * n * channels)


def low_pass_weights(
    n_samples: int, k_max: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """w(γ) = 1 where the frequency |γ| = min(γ, N − γ) is ≤ ``k_max``, else 0, for γ = 0 … N − 1 (paper Fig. 5a).

    Convention:
        The paper sets w(γ) = 1 for 0 ≤ γ ≤ γ_i and 0 above on "the first half" of the DFT indices and fills "the
        second half by symmetry": index N − γ carries the frequency −γ, the mirror of γ, and gets γ's weight.

    Args:
        n_samples: N ≥ 1, the number of uniform samples (length of the DFT).
        k_max: the highest frequency kept, an int ≥ 0.
        dtype: the weights' dtype (default: torch's default floating dtype).
        device: the weights' device.

    Returns:
        A (N,) tensor of zeros and ones.

    Example:
        >>> low_pass_weights(8, 2)
        tensor([1., 1., 1., 0., 0., 0., 1., 1.])
    """
    return (_frequency_of_index(n_samples, device) <= check_int("k_max", k_max, 0)).to(_float_dtype(dtype))


def high_pass_weights(
    n_samples: int, k_min: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """w(γ) = 1 where the frequency |γ| = min(γ, N − γ) is ≥ ``k_min``, else 0, for γ = 0 … N − 1 (paper Fig. 5b).

    Convention:
        As :func:`low_pass_weights`: the weights of the first half, w(γ) = 0 for 0 ≤ γ < γ_i and 1 above, are
        mirrored onto the second half (index N − γ gets γ's weight). ``k_min = 0`` keeps every frequency.

    Args:
        n_samples: N ≥ 1, the number of uniform samples (length of the DFT).
        k_min: the lowest frequency kept, an int ≥ 0.
        dtype: the weights' dtype (default: torch's default floating dtype).
        device: the weights' device.

    Returns:
        A (N,) tensor of zeros and ones.

    Example:
        >>> high_pass_weights(7, 2)
        tensor([0., 0., 1., 1., 1., 1., 0.])
    """
    return (_frequency_of_index(n_samples, device) >= check_int("k_min", k_min, 0)).to(_float_dtype(dtype))


def projected_frequency_weighted_loss(
    x: Tensor,
    preds: Tensor,
    target: Tensor,
    weights: Tensor,
    *,
    projection: PrincipalProjection | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Eq. (4) along the inputs' first principal direction: a differentiable weighted spectral loss for any inputs.

    Convention:
        The inputs are projected as in ``principal_projection`` (paper §2.1): x_j = pᵀx_j rescaled to
        [0, (n − 1)/n], with ``projection`` (a frozen fit, e.g. on the whole training set) or, when it is ``None``,
        a projection fitted on this ``x``. With e = h − y and
        F[e](k) = Σ_j e_j exp(−2πi·k·x_j) (the convention of ``nufft_spectrum``, summed exactly in float64 and
        differentiable), for the K = ``len(weights)`` frequencies k = 0 … K − 1:

            L = 1/(n²·c) · Σ_{|k| < K} w(|k|) ‖F[e](k)‖² = 1/(n²·c) · (w(0)‖F[e](0)‖² + 2 Σ_{k=1}^{K−1} w(k)‖F[e](k)‖²),

        the frequencies ±k weighted alike, as :func:`low_pass_weights` does on a uniform grid.

    What Parseval gives here, and what it does not:
        With w ≡ 1, L = 1/(n²·c) Σ_{j,l} e_j·e_l D_K(x_j − x_l) with the Dirichlet kernel
        D_K(u) = Σ_{|k|<K} exp(2πi·k·u). Only when the points are the DFT grid j/n (an evenly spaced 1-D set),
        with n odd and K = (n + 1)/2, is D_K(x_j − x_l) = n·[j = l], so that L is the mean squared error. Projected
        points are in general not a uniform grid: then w ≡ 1 is **not** the MSE (errors at nearby points add
        coherently at low k, and frequencies above K − 1 are not seen at all), and masks do not split the MSE
        into exact low and high parts.

    Args:
        x: inputs (n, ...), any trailing shape (flattened), n ≥ 2.
        preds: network outputs h, (n,) or (n, c), real floating point.
        target: targets y, the same shape as ``preds``.
        weights: w(k) for k = 0 … K − 1, shape (K,), finite and ≥ 0.
        projection: a fitted :class:`PrincipalProjection` to apply to ``x`` (``None``: fit one on ``x``).
        chunk_size: the largest number of phasors held at once (default ``2**22``).

    Returns:
        A 0-d tensor in ``preds``' dtype; gradients flow to ``preds`` (and ``target``), not to ``x``.

    Raises:
        TypeError: an argument is not a tensor.
        ValueError: a shape mismatch, non-finite values or negative ``weights`` (the message names the argument).

    Example:
        >>> x = torch.linspace(-1.0, 1.0, 5, dtype=torch.float64).unsqueeze(1)  # projects onto the grid j/5
        >>> h = torch.tensor([1.0, 2.0, 0.0, -1.0, 0.5], dtype=torch.float64)
        >>> y = torch.zeros(5, dtype=torch.float64)
        >>> loss = projected_frequency_weighted_loss(x, h, y, torch.ones(3))  # n = 5 odd, K = 3: the MSE
        >>> round(float(loss), 12), round(float(torch.mean(h ** 2)), 12)
        (1.25, 1.25)
    """
    check_tensor("x", x)
    e_pred, e_target = _validated_pair(preds, target)
    check_min_samples("x", x, 2)
    if x.shape[0] != e_pred.shape[0]:
        raise ValueError(f"`x` has {x.shape[0]} samples and `preds` {e_pred.shape[0]}; they must be equal.")
    check_tensor("weights", weights)
    if weights.ndim != 1 or weights.shape[0] < 1:
        raise ValueError(f"`weights` must have shape (K,) with K ≥ 1, got {tuple(weights.shape)}.")
    w = _validated_weights(weights, weights.shape[0], e_pred).to(torch.float64)
    coords = (principal_projection(x).coords if projection is None else projection.transform(x))[:, 0]
    coords = coords.to(e_pred.device)
    error = (e_pred - e_target).to(torch.complex128)  # (n, c); the sum runs in float64 like nufft_spectrum's
    n, channels = error.shape
    chunk = _DEFAULT_CHUNK if chunk_size is None else check_int("chunk_size", chunk_size, 1)
    block = max(1, chunk // n)
    freqs = torch.arange(w.shape[0], dtype=torch.float64, device=coords.device)
    mirrored = torch.where(freqs == 0, 1.0, 2.0) * w  # ±k weighted alike
    total = error.real.new_zeros(())
    for start in range(0, w.shape[0], block):
        spec = _unit_phasors(freqs[start:start + block], coords) @ error  # (block, c), exact F[e](k)
        total = total + (mirrored[start:start + block].unsqueeze(1) * spec.abs().square()).sum()
    return (total / (n * n * channels)).to(e_pred.dtype)


# ---------------------------------------------------------------------------------------------------- helpers
def _validated_pair(preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``preds`` and ``target`` as (N, c) real tensors of ``preds``' dtype, validated."""
    check_tensor("preds", preds)
    check_tensor("target", target)
    h, _ = values_as_2d("preds", preds)
    if not h.is_floating_point():
        raise ValueError(f"`preds` must be a real floating-point tensor, got {preds.dtype}.")
    if target.is_complex():
        raise ValueError("`target` must be real, got a complex tensor.")
    if target.shape != preds.shape and not (target.ndim in (1, 2) and target.numel() == h.numel()
                                            and target.shape[0] == h.shape[0]):
        raise ValueError(f"`target` shape {tuple(target.shape)} must equal `preds` shape {tuple(preds.shape)}.")
    check_min_samples("preds", h, 1)
    if h.shape[1] == 0:
        raise ValueError(f"`preds` must have at least one channel, got shape {tuple(preds.shape)}.")
    y = target.reshape(h.shape).to(device=h.device, dtype=h.dtype)
    check_finite("preds", h.detach())
    check_finite("target", y.detach())
    return h, y


def _validated_weights(weights: Tensor, n: int, like: Tensor) -> Tensor:
    """``weights`` as a (n,) tensor of ``like``'s dtype and device, or a ValueError naming ``weights``."""
    check_tensor("weights", weights)
    if weights.shape != (n,):
        raise ValueError(f"`weights` must have shape ({n},), one weight per DFT index of the {n} samples, got "
                         f"{tuple(weights.shape)}. Build them with low_pass_weights / high_pass_weights.")
    if weights.is_complex():
        raise ValueError("`weights` must be real, got a complex tensor.")
    w = weights.detach().to(device=like.device, dtype=like.dtype)
    check_finite("weights", w)
    if bool((w < 0).any()):
        raise ValueError("`weights` must be ≥ 0 (a negative weight rewards an error at that frequency).")
    return w


def _frequency_of_index(n_samples: int, device: torch.device | str | None) -> Tensor:
    """min(γ, N − γ) for γ = 0 … N − 1: the frequency that DFT index γ carries for a real signal."""
    n = check_int("n_samples", n_samples, 1)
    index = torch.arange(n, device=device)
    return torch.minimum(index, n - index)



def _float_dtype(dtype: torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"`dtype` must be a floating-point torch.dtype, got {dtype!r}.")
    return dtype
