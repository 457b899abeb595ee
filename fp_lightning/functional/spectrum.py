"""Non-uniform discrete Fourier spectrum of values sampled at points of [0, 1].

Convention
----------
For points ``x_j`` (``coords``) and values ``v_j`` (``values``, possibly with ``c`` channels)::

    F[v](k) = Σ_j v_j · exp(−2πi·k·x_j),    k = 0, 1, …, K − 1   (K = n_freqs),

not normalized (no ``1/n``). Because ``k`` is an integer, ``F`` is 1-periodic in every ``x_j``; the NUFFT
backends use that to fold the points into ``[0, 1)`` (an exact identity, no phase shift), so a point slightly
outside ``[0, 1]`` gives the same result on every backend.

Backends
--------
``"finufft"``
    CPU type-1 NUFFT (`FINUFFT <https://finufft.readthedocs.io>`_, ``isign=-1``) on ``t_j = 2π·x_j ∈ [0, 2π)``:
    ``2K`` centred modes ``−K … K−1`` are requested and the ``k ≥ 0`` half is kept; the ``c`` channels go in one
    call (``n_trans = c``). It runs on one thread below ``2**17`` point-channel pairs (threads only add overhead
    there) and on ``torch.get_num_threads()`` threads above. CUDA tensors are moved to the CPU and back.
``"cufinufft"``
    The same transform on a CUDA device (optional extra: ``pip install fp-lightning[cuda]``); the tensors must be
    on a CUDA device and are handed to cuFINUFFT without a copy, on the current torch stream of their device.
``"direct"``
    The exact sum in float64 torch on any device, chunked over points and frequencies so that no temporary holds
    more than ``chunk_size`` entries (default ``2**22``). It writes ``k = b·q + m`` with ``q ≈ √K`` and evaluates
    ``exp(−2πi(b·q)x) · exp(−2πi·m·x)``, so it costs ``O(n·√K)`` exponentials plus one complex matrix product
    of ``K·n·c`` multiply-adds; every term keeps full float64 accuracy (no recurrence).
``"auto"``
    ``cufinufft`` for CUDA tensors when it is importable, else ``direct`` there; ``finufft`` on the CPU when it is
    importable, else ``direct``.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Literal, get_args

import torch
from torch import Tensor

from fp_lightning.functional._validation import (
    check_choice,
    check_finite,
    check_int,
    check_min_samples,
    check_ndim,
    check_positive,
    check_same_length,
    check_tensor,
    values_as_2d,
)

__all__ = ["BACKENDS", "Backend", "available_backends", "nufft_spectrum"]

#: The names accepted by the ``backend`` argument of :func:`nufft_spectrum` (a ``Literal``: a LightningCLI config
#: naming another backend fails at parsing, before training).
Backend = Literal["auto", "finufft", "cufinufft", "direct"]
#: The same names as a tuple.
BACKENDS: tuple[str, ...] = get_args(Backend)

_DEFAULT_CHUNK = 2**22
# The smallest tolerance FINUFFT accepts in double precision is about 1e-15; smaller requests are raised to it.
_MIN_EPS = 1e-15
# FINUFFT runs single-threaded below this many point-channel pairs, and with torch's thread count above.
_FINUFFT_SERIAL_BELOW = 2**17
_LOW_PRECISION = (torch.float16, torch.bfloat16, torch.float32, torch.complex32, torch.complex64)


@functools.cache
def _finufft_importable() -> bool:
    try:
        import finufft  # noqa: F401
    except Exception:  # pragma: no cover - finufft is a core dependency
        return False
    return True


@functools.cache
def _cufinufft_import_error() -> str | None:
    """Why ``import cufinufft`` fails here (the error's type and text), or ``None`` when it imports."""
    try:
        import cufinufft  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when the CUDA libraries are missing
        return f"{type(exc).__name__}: {exc}"
    return None


def _cufinufft_importable() -> bool:
    return _cufinufft_import_error() is None


@functools.cache
def _log_direct_fallback() -> None:
    """Say once per process that ``backend="auto"`` on a CUDA tensor uses the direct sum, and why."""
    reason = _cufinufft_import_error() or "not importable"
    logging.getLogger(__name__).info(
        "cufinufft is not importable (%s); backend='auto' uses the exact direct sum on the CUDA device instead "
        "(`pip install fp-lightning[cuda]` for the NUFFT).", reason)


def available_backends(device: torch.device | str | None = None) -> tuple[str, ...]:
    """Names of the backends that can run here (``"auto"`` excluded).

    Args:
        device: restrict to the backends usable for tensors on this device; ``None`` lists every backend usable on
            some device of this machine.

    Returns:
        A tuple of backend names among ``"finufft"``, ``"cufinufft"`` and ``"direct"``.

    Example:
        >>> "direct" in available_backends("cpu")
        True
    """
    dev = None if device is None else torch.device(device)
    names = []
    if _finufft_importable():
        names.append("finufft")
    if (dev is None or dev.type == "cuda") and torch.cuda.is_available() and _cufinufft_importable():
        names.append("cufinufft")
    names.append("direct")
    return tuple(names)


def nufft_spectrum(
    coords: Tensor,
    values: Tensor,
    n_freqs: int,
    *,
    backend: Backend = "auto",
    eps: float = 1e-9,
    chunk_size: int | None = None,
) -> Tensor:
    """Fourier spectrum of values at non-uniform points of [0, 1], at frequencies ``k = 0 … n_freqs − 1``.

    Convention:
        ``F[v](k) = Σ_j v_j · exp(−2πi·k·x_j)`` for ``k = 0, 1, …, K − 1`` with ``K = n_freqs``, not normalized.
        On uniform points ``x_j = j/N`` this is ``numpy.fft.fft(v)[k]`` for ``k < N``. The sum is 1-periodic in
        each ``x_j``, so coordinates slightly outside ``[0, 1]`` are fine on every backend (the NUFFT backends fold
        them into ``[0, 1)``, exactly, without any phase shift).

    Precision:
        Computed in float64 (float32 inputs are upcast). The result is complex64 for float32 (or lower precision,
        or complex64) ``values`` and complex128 otherwise, on the device of the inputs. With the default ``eps``
        the NUFFT backends agree with the exact sum to a relative error ``‖a − b‖/‖b‖`` far below ``1e-6``
        (measured about ``5e-10`` for 10⁵ points and 10⁴ frequencies). Inputs are detached: no gradient flows.

    Args:
        coords: points ``x_j``, shape ``(n,)``, finite, nominally in ``[0, 1]``.
        values: ``v_j``, shape ``(n,)`` or ``(n, c)``, finite, real (complex values are accepted too).
        n_freqs: number ``K ≥ 1`` of frequencies.
        backend: ``"auto"``, ``"finufft"``, ``"cufinufft"`` or ``"direct"`` (see the module documentation).
            ``"finufft"`` with CUDA tensors computes on the CPU and moves the result back.
        eps: requested relative tolerance of the NUFFT backends, ``> 0`` (values below ``1e-15`` are raised to
            it); ignored by ``"direct"``.
        chunk_size: ``"direct"`` only: the largest number of entries of a temporary matrix (default ``2**22``).

    Returns:
        Complex tensor of shape ``(n_freqs,)`` for 1-D ``values`` or ``(n_freqs, c)`` for 2-D ``values``.

    Raises:
        TypeError: ``coords``/``values`` are not tensors, or ``n_freqs``/``chunk_size`` are not integers.
        ValueError: a bad argument (the message names it), or an unknown ``backend``.
        ImportError: the requested backend's package is not installed.

    Example:
        >>> import numpy as np
        >>> v = torch.tensor([1.0, 2.0, 0.0, -1.0, 0.5], dtype=torch.float64)
        >>> x = torch.arange(5, dtype=torch.float64) / 5
        >>> F = nufft_spectrum(x, v, 3)
        >>> F.shape, F.dtype
        (torch.Size([3]), torch.complex128)
        >>> bool(np.allclose(F.numpy(), np.fft.fft(v.numpy())[:3], atol=1e-8))
        True
        >>> nufft_spectrum(x, torch.stack([v, 2 * v], 1).float(), 2, backend="direct")
        tensor([[2.5000+0.0000j, 5.0000+0.0000j],
                [2.5816-2.0144j, 5.1631-4.0287j]])
    """
    check_tensor("coords", coords)
    check_tensor("values", values)
    check_ndim("coords", coords, (1,))
    values2d, squeeze = values_as_2d("values", values)
    check_min_samples("coords", coords, 1)
    check_min_samples("values", values2d, 1)
    if values2d.shape[1] == 0:
        raise ValueError(f"`values` must have at least one channel, got shape {tuple(values.shape)}.")
    check_same_length(("coords", "values"), coords, values2d)
    if coords.is_complex():
        raise ValueError("`coords` must be real, got a complex tensor.")
    if coords.device != values.device:
        raise ValueError(f"`coords` (on {coords.device}) and `values` (on {values.device}) must be on one device.")
    check_finite("coords", coords)
    check_finite("values", values)
    K = check_int("n_freqs", n_freqs, 1)
    check_positive("eps", eps)
    chunk = _DEFAULT_CHUNK if chunk_size is None else check_int("chunk_size", chunk_size, 1)
    name = _resolve_backend(backend, values.device)

    out_dtype = torch.complex64 if values.dtype in _LOW_PRECISION else torch.complex128
    x = coords.detach().to(torch.float64)
    v = values2d.detach()
    v = v.to(torch.complex128) if v.is_complex() else v.to(torch.float64)
    tol = max(float(eps), _MIN_EPS)

    if name == "finufft":
        spec = _spectrum_finufft(x, v, K, tol)
    elif name == "cufinufft":
        spec = _spectrum_cufinufft(x, v, K, tol)
    else:
        spec = _spectrum_direct(x, v, K, chunk)
    spec = spec.to(device=values.device, dtype=out_dtype)
    return spec[:, 0] if squeeze else spec


def _resolve_backend(backend: object, device: torch.device) -> str:
    """Turn ``backend`` into one concrete backend for tensors on ``device``, or raise."""
    check_choice("backend", backend, BACKENDS)
    on_cuda = device.type == "cuda"
    if backend == "auto":
        if on_cuda:
            if _cufinufft_importable():
                return "cufinufft"
            _log_direct_fallback()
            return "direct"
        return "finufft" if _finufft_importable() else "direct"
    if backend == "finufft" and not _finufft_importable():
        raise ImportError(
            "backend='finufft' needs the `finufft` package: `pip install finufft` (a dependency of fp-lightning)."
        )
    if backend == "cufinufft":
        if not on_cuda:
            raise ValueError(f"`backend`='cufinufft' needs CUDA tensors; `coords` and `values` are on {device}.")
        if not _cufinufft_importable():
            raise ImportError(
                "backend='cufinufft' needs the `cufinufft` package: install the extra with "
                "`pip install fp-lightning[cuda]`."
            )
    return backend


def _fold_angles(x: Tensor) -> Tensor:
    """Map points to ``t = 2π·(x mod 1) ∈ [0, 2π)``: exact for integer frequencies, inside NUFFT domains."""
    return torch.remainder(x, 1.0).mul_(2.0 * math.pi).contiguous()


def _strengths(v: Tensor) -> Tensor:
    """Values ``(n, c)`` as the contiguous ``(c, n)`` complex128 strengths FINUFFT expects (``(n,)`` if c = 1)."""
    data = v.to(torch.complex128).T.contiguous()
    return data[0] if data.shape[0] == 1 else data


def _spectrum_finufft(x: Tensor, v: Tensor, K: int, eps: float) -> Tensor:
    """Type-1 NUFFT on the CPU; returns ``(K, c)`` complex128 on the CPU."""
    import finufft

    t = _fold_angles(x.cpu()).numpy()
    data = _strengths(v.cpu()).numpy()
    # 2K centred modes -K..K-1 (FINUFFT's default CMCL order): k = 0 sits at index K.
    # Threads cost more than they save on small inputs (an OpenMP barrier per call, dreadful on a busy machine).
    threads = 1 if t.size * v.shape[1] < _FINUFFT_SERIAL_BELOW else torch.get_num_threads()
    modes = finufft.nufft1d1(t, data, n_modes=(2 * K,), eps=eps, isign=-1, nthreads=threads)
    modes = modes.reshape(-1, 2 * K)[:, K:]
    return torch.from_numpy(modes.T.copy())


def _spectrum_cufinufft(x: Tensor, v: Tensor, K: int, eps: float) -> Tensor:  # pragma: no cover - needs a GPU
    """Type-1 NUFFT on the CUDA device of ``x``; returns ``(K, c)`` complex128 there."""
    import cufinufft

    device = x.device
    with torch.cuda.device(device):
        t = _fold_angles(x)
        data = _strengths(v)
        stream = torch.cuda.current_stream(device)
        modes = cufinufft.nufft1d1(
            t,
            data,
            n_modes=(2 * K,),
            eps=eps,
            isign=-1,
            gpu_device_id=device.index if device.index is not None else torch.cuda.current_device(),
            gpu_stream=stream.cuda_stream,
        )
    modes = torch.as_tensor(modes, device=device).reshape(-1, 2 * K)[:, K:]
    return modes.T.contiguous()


def _unit_phasors(freqs: Tensor, x: Tensor) -> Tensor:
    """``exp(−2πi·f·x)`` for every pair, shape ``(len(freqs), len(x))``, with ``f·x`` reduced mod 1 first."""
    turns = torch.outer(freqs, x)
    turns.sub_(torch.round(turns)).mul_(-2.0 * math.pi)
    return torch.polar(torch.ones_like(turns), turns)


def _spectrum_direct(x: Tensor, v: Tensor, K: int, chunk: int) -> Tensor:
    """Exact float64 sum, ``(K, c)`` complex128 on the device of ``x``; temporaries hold ≤ ``chunk`` entries.

    With ``k = b·q + m`` (``0 ≤ m < q``): ``F(b·q + m) = Σ_j T[m, j] · W[j, b]`` where ``T[m, j] = exp(−2πi·m·x_j)``
    and ``W[j, b] = v_j · exp(−2πi·b·q·x_j)``: a complex matrix product over points, in blocks.
    """
    n, c = v.shape
    device = x.device
    q = max(1, min(math.isqrt(K - 1) + 1, chunk))  # about √K rows in the table T
    n_blocks = -(-K // q)
    p = min(n, max(1, chunk // max(q, c)))  # points per chunk: T (q × p) and one block of W (p × c) fit
    group = max(1, min(n_blocks, chunk // (p * c)))  # blocks of frequencies per product: W is p × (group·c)
    m = torch.arange(q, dtype=torch.float64, device=device)
    vc = v.to(torch.complex128)
    out = torch.zeros(n_blocks * q, c, dtype=torch.complex128, device=device)
    for start in range(0, n, p):
        xs = x[start : start + p]
        table = _unit_phasors(m, xs)  # (q, p)
        vs = vc[start : start + p]
        for b0 in range(0, n_blocks, group):
            g = min(group, n_blocks - b0)
            offsets = torch.arange(b0, b0 + g, dtype=torch.float64, device=device) * q
            mod = _unit_phasors(offsets, xs).T  # (p, g)
            w = (mod.unsqueeze(2) * vs.unsqueeze(1)).reshape(xs.shape[0], g * c)  # (p, g·c)
            part = (table @ w).reshape(q, g, c).transpose(0, 1).reshape(g * q, c)
            out[b0 * q : (b0 + g) * q] += part
    return out[:K]
