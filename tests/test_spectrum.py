"""Tests of ``fp_lightning.functional.spectrum.nufft_spectrum`` against independent numpy sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fp_lightning.functional import spectrum as spectrum_module
from fp_lightning.functional.spectrum import BACKENDS, available_backends, nufft_spectrum

CPU_BACKENDS = [b for b in ("finufft", "direct") if b in available_backends("cpu")]
HAS_CUDA = torch.cuda.is_available()
HAS_CUFINUFFT = "cufinufft" in available_backends()


def numpy_direct(x: np.ndarray, v: np.ndarray, K: int) -> np.ndarray:
    """The definition, written independently: F(k) = Σ_j v_j exp(−2πi k x_j)."""
    k = np.arange(K, dtype=np.float64)
    return np.exp(-2j * np.pi * np.outer(k, x)) @ v


def rel_err(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a = np.asarray(a.cpu() if isinstance(a, torch.Tensor) else a, dtype=np.complex128)
    b = np.asarray(b.cpu() if isinstance(b, torch.Tensor) else b, dtype=np.complex128)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def random_inputs(n: int, c: int | None, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, generator=g, dtype=torch.float64).to(dtype)
    shape = (n,) if c is None else (n, c)
    v = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
    return x, v


# --------------------------------------------------------------------------------------------------- correctness


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 64, 10**9])
def test_direct_matches_numpy_sum(chunk_size):
    x, v = random_inputs(37, 2, seed=1)
    K = 29
    got = nufft_spectrum(x, v, K, backend="direct", chunk_size=chunk_size)
    ref = numpy_direct(x.numpy(), v.numpy(), K)
    assert got.shape == (K, 2)
    assert got.dtype == torch.complex128
    assert rel_err(got, ref) < 1e-12


def test_direct_chunks_bound_the_temporary_matrices(monkeypatch):
    sizes = []
    original = spectrum_module._unit_phasors

    def recording(freqs, x):
        out = original(freqs, x)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(spectrum_module, "_unit_phasors", recording)
    x, v = random_inputs(300, 3, seed=2)
    got = nufft_spectrum(x, v, 200, backend="direct", chunk_size=500)
    assert sizes and max(sizes) <= 500
    assert len(sizes) > 2  # it really had to split the work
    assert rel_err(got, numpy_direct(x.numpy(), v.numpy(), 200)) < 1e-12


@pytest.mark.parametrize("backend", [*CPU_BACKENDS, "auto"])
@pytest.mark.parametrize("K", [1, 17, 64])
def test_uniform_points_give_the_fft(backend, K):
    N = 64
    x = torch.arange(N, dtype=torch.float64) / N
    v = torch.randn(N, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = nufft_spectrum(x, v, K, backend=backend)
    ref = np.fft.fft(v.numpy())[:K]
    assert got.shape == (K,)
    assert np.allclose(got.numpy(), ref, rtol=0, atol=1e-8 * np.abs(v.numpy()).sum())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_points_outside_unit_interval(backend):
    x, v = random_inputs(50, 2, seed=4)
    x = x * 1.5 - 0.2  # in [-0.2, 1.3]
    got = nufft_spectrum(x, v, 40, backend=backend)
    assert rel_err(got, numpy_direct(x.numpy(), v.numpy(), 40)) < 1e-8


@pytest.fixture(scope="module")
def extreme_problem():
    """n = 1e5 points, K = 1e4 frequencies, c = 3 channels, float64, with its exact spectrum (computed once)."""
    x, v = random_inputs(100_000, 3, seed=5)
    K = 10_000
    return x, v, K, nufft_spectrum(x, v, K, backend="direct")


@pytest.mark.skipif("finufft" not in CPU_BACKENDS, reason="finufft not installed")
@pytest.mark.parametrize("c", [None, 3])
def test_finufft_matches_direct_at_the_stated_extreme(extreme_problem, c):
    x, v, K, exact = extreme_problem
    if c is None:  # 1-D values: the first channel
        v, exact = v[:, 0], exact[:, 0]
    fast = nufft_spectrum(x, v, K, backend="finufft")
    assert fast.shape == exact.shape == ((K,) if c is None else (K, c))
    assert fast.dtype == exact.dtype == torch.complex128
    assert rel_err(fast, exact) <= 1e-6
    if c is not None:
        for ch in range(c):  # every channel, not only the pooled norm
            assert rel_err(fast[:, ch], exact[:, ch]) <= 1e-6


def test_direct_at_the_stated_extreme_against_numpy(extreme_problem):
    """Spot-check the reference itself: a few k (up to K − 1) by an independent numpy sum."""
    x, v, K, exact = extreme_problem
    ks = np.array([0, 1, 2, 997, 5003, K - 2, K - 1])
    ref = np.exp(-2j * np.pi * np.outer(ks, x.numpy())) @ v.numpy()
    assert rel_err(exact[ks], ref) < 1e-10


@pytest.mark.skipif("finufft" not in CPU_BACKENDS, reason="finufft not installed")
def test_finufft_float32_input():
    x32, v32 = random_inputs(20_000, 3, seed=6, dtype=torch.float32)
    K = 2_000
    got = nufft_spectrum(x32, v32, K, backend="finufft")
    assert got.dtype == torch.complex64
    exact = nufft_spectrum(x32.double(), v32.double(), K, backend="direct")  # the float32 inputs, exactly
    assert rel_err(got, exact) <= 1e-6


@pytest.mark.skipif("finufft" not in CPU_BACKENDS, reason="finufft not installed")
def test_eps_reaches_finufft():
    x, v = random_inputs(5_000, None, seed=7)
    exact = nufft_spectrum(x, v, 500, backend="direct")
    tight = rel_err(nufft_spectrum(x, v, 500, backend="finufft", eps=1e-12), exact)
    loose = rel_err(nufft_spectrum(x, v, 500, backend="finufft", eps=1e-3), exact)
    assert tight < 1e-10
    assert 1e-8 < loose < 1e-2


def test_complex_values_are_supported():
    x, v = random_inputs(40, 2, seed=8)
    vc = torch.complex(v, torch.flip(v, [0]))
    ref = numpy_direct(x.numpy(), vc.numpy(), 25)
    for backend in CPU_BACKENDS:
        got = nufft_spectrum(x, vc, 25, backend=backend)
        assert got.dtype == torch.complex128
        assert rel_err(got, ref) < 1e-8


# --------------------------------------------------------------------------------------------------- properties

n_points = st.integers(min_value=1, max_value=40)
finite = st.floats(min_value=-10, max_value=10, allow_nan=False, allow_infinity=False)
unit = st.floats(min_value=0, max_value=1, allow_nan=False, allow_infinity=False)


@st.composite
def problems(draw, channels: bool = False):
    n = draw(n_points)
    c = draw(st.integers(1, 3)) if channels else None
    x = draw(hnp.arrays(np.float64, n, elements=unit))
    shape = (n,) if c is None else (n, c)
    y = draw(hnp.arrays(np.float64, shape, elements=finite))
    h = draw(hnp.arrays(np.float64, shape, elements=finite))
    K = draw(st.integers(1, 30))
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(h), K


def _scale(*values: torch.Tensor) -> float:
    return sum(float(v.abs().sum()) for v in values) + 1e-300  # ≥ |F| at every k


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(prob=problems(channels=True), a=finite, b=finite)
def test_linearity_in_values(backend, prob, a, b):
    x, u, w, K = prob
    lhs = nufft_spectrum(x, a * u + b * w, K, backend=backend)
    rhs = a * nufft_spectrum(x, u, K, backend=backend) + b * nufft_spectrum(x, w, K, backend=backend)
    assert float((lhs - rhs).abs().max()) <= 1e-7 * _scale(a * u, b * w)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(prob=problems(channels=True), s=st.floats(min_value=-1, max_value=1))
def test_shift_is_a_phase_and_leaves_delta_f_unchanged(backend, prob, s):
    x, y, h, K = prob
    Fy, Fh = (nufft_spectrum(x, v, K, backend=backend) for v in (y, h))
    Gy, Gh = (nufft_spectrum(x + s, v, K, backend=backend) for v in (y, h))
    phase = torch.exp(-2j * math.pi * s * torch.arange(K, dtype=torch.float64)).unsqueeze(1)
    assert float((Gy - phase * Fy).abs().max()) <= 1e-7 * _scale(y)
    assert float((Gh - phase * Fh).abs().max()) <= 1e-7 * _scale(h)

    # Δ_F(k) = ‖F[y](k) − F[h](k)‖ / ‖F[y](k)‖ (norm over channels), computed here directly.
    def delta_f(Ty, Th):
        return torch.linalg.vector_norm(Ty - Th, dim=1) / torch.linalg.vector_norm(Ty, dim=1)

    keep = torch.linalg.vector_norm(Fy, dim=1) > 1e-3 * _scale(y)
    if keep.any():
        d0, d1 = delta_f(Fy, Fh)[keep], delta_f(Gy, Gh)[keep]
        assert torch.allclose(d1, d0, rtol=1e-4, atol=1e-4 * (1 + _scale(h) / _scale(y)))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@settings(max_examples=25, deadline=None)
@given(prob=problems(channels=False))
def test_one_dimensional_and_single_channel_agree(backend, prob):
    x, y, _, K = prob
    flat = nufft_spectrum(x, y, K, backend=backend)
    column = nufft_spectrum(x, y.unsqueeze(1), K, backend=backend)
    assert flat.shape == (K,) and column.shape == (K, 1)
    assert torch.equal(flat, column[:, 0])
    ref = numpy_direct(x.numpy(), y.numpy(), K)
    assert np.abs(flat.numpy() - ref).max() <= 1e-7 * _scale(y)


# --------------------------------------------------------------------------------------------------- errors

X = torch.rand(10, dtype=torch.float64)
V = torch.randn(10, dtype=torch.float64)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_freqs": 0}, "n_freqs"),
        ({"n_freqs": -3}, "n_freqs"),
        ({"coords": torch.rand(9, dtype=torch.float64)}, "coords"),
        ({"values": torch.randn(11, dtype=torch.float64)}, "values"),
        ({"coords": torch.rand(10, 1, dtype=torch.float64)}, "coords"),
        ({"coords": torch.tensor(0.5)}, "coords"),
        ({"values": torch.randn(10, 2, 2, dtype=torch.float64)}, "values"),
        ({"coords": torch.where(torch.arange(10) == 3, torch.nan, X)}, "coords"),
        ({"coords": torch.where(torch.arange(10) == 3, torch.inf, X)}, "coords"),
        ({"values": torch.where(torch.arange(10) == 0, -torch.inf, V)}, "values"),
        ({"coords": torch.empty(0), "values": torch.empty(0)}, "coords"),
        ({"values": torch.empty(10, 0)}, "values"),
        ({"coords": torch.complex(X, X)}, "coords"),
        ({"eps": 0.0}, "eps"),
        ({"eps": -1e-9}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"backend": "fftw"}, "backend"),
        ({"backend": "cufinufft"}, "backend"),  # CPU tensors
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(kwargs, name):
    args = {"coords": X, "values": V, "n_freqs": 5, **kwargs}
    coords, values, n_freqs = args.pop("coords"), args.pop("values"), args.pop("n_freqs")
    with pytest.raises(ValueError, match=f"`{name}`"):
        nufft_spectrum(coords, values, n_freqs, **args)


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match="backend") as info:
        nufft_spectrum(X, V, 5, backend="numpy")
    for valid in BACKENDS:
        assert repr(valid) in str(info.value)


@pytest.mark.parametrize(
    ("coords", "n_freqs", "name"),
    [([0.1, 0.2], 5, "coords"), (X, 2.5, "n_freqs"), (X, True, "n_freqs")],
)
def test_wrong_types_raise_type_error(coords, n_freqs, name):
    with pytest.raises(TypeError, match=f"`{name}`"):
        nufft_spectrum(coords, V[:2] if isinstance(coords, list) else V, n_freqs)


def test_integer_like_n_freqs_is_accepted():
    ref = nufft_spectrum(X, V, 5, backend="direct")
    assert torch.equal(nufft_spectrum(X, V, np.int64(5), backend="direct"), ref)


def test_missing_cufinufft_asks_for_the_cuda_extra(monkeypatch):
    monkeypatch.setattr(spectrum_module, "_cufinufft_importable", lambda: False)
    with pytest.raises(ImportError, match=r"pip install fp-lightning\[cuda\]"):
        spectrum_module._resolve_backend("cufinufft", torch.device("cuda", 0))
    assert spectrum_module._resolve_backend("auto", torch.device("cuda", 0)) == "direct"


def test_missing_finufft(monkeypatch):
    monkeypatch.setattr(spectrum_module, "_finufft_importable", lambda: False)
    with pytest.raises(ImportError, match="finufft"):
        nufft_spectrum(X, V, 5, backend="finufft")
    got = nufft_spectrum(X, V, 5)  # auto falls back to the exact sum
    assert rel_err(got, numpy_direct(X.numpy(), V.numpy(), 5)) < 1e-12


@pytest.mark.skipif("finufft" not in CPU_BACKENDS, reason="finufft not installed")
def test_auto_uses_finufft_on_cpu(monkeypatch):
    calls = []
    original = spectrum_module._spectrum_finufft

    def recording(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(spectrum_module, "_spectrum_finufft", recording)
    nufft_spectrum(X, V, 5)
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------------- dtype, device


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float64, torch.complex128),
        (torch.float32, torch.complex64),
        (torch.complex64, torch.complex64),
        (torch.complex128, torch.complex128),
    ],
)
def test_dtype_round_trip_on_cpu(backend, dtype, expected):
    x, v = random_inputs(30, 2, seed=9)
    v = v.to(dtype)
    x_before, v_before = x.clone(), v.clone()
    got = nufft_spectrum(x, v, 12, backend=backend)
    assert got.dtype == expected and got.device == v.device and got.shape == (12, 2)
    assert torch.equal(x, x_before) and torch.equal(v, v_before)  # inputs untouched
    ref = numpy_direct(x.numpy(), v.to(torch.complex128).numpy(), 12)
    assert rel_err(got, ref) < (1e-6 if expected == torch.complex64 else 1e-8)


def test_inputs_requiring_grad_are_accepted():
    x, v = random_inputs(20, None, seed=10)
    v.requires_grad_(True)
    got = nufft_spectrum(x, v, 8, backend="direct")
    assert not got.requires_grad
    assert rel_err(got, numpy_direct(x.numpy(), v.detach().numpy(), 8)) < 1e-12


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["auto", "direct", "finufft"])
def test_device_round_trip_on_cuda(backend):
    for dtype, expected in ((torch.float64, torch.complex128), (torch.float32, torch.complex64)):
        x, v = random_inputs(500, 2, seed=11, dtype=dtype)
        ref = numpy_direct(x.double().numpy(), v.double().numpy(), 64)
        got = nufft_spectrum(x.cuda(), v.cuda(), 64, backend=backend)
        assert got.is_cuda and got.dtype == expected
        assert rel_err(got, ref) < (1e-6 if dtype == torch.float32 else 1e-8)


@pytest.mark.skipif(not (HAS_CUDA and HAS_CUFINUFFT), reason="needs CUDA and cufinufft")
@pytest.mark.gpu
@pytest.mark.parametrize("c", [None, 3])
def test_cufinufft_matches_direct(c):
    x, v = random_inputs(100_000, c, seed=12)
    K = 10_000
    xc, vc = x.cuda(), v.cuda()
    got = nufft_spectrum(xc, vc, K, backend="cufinufft")
    exact = nufft_spectrum(xc, vc, K, backend="direct")
    assert got.is_cuda and got.dtype == torch.complex128 and got.shape == exact.shape
    assert rel_err(got, exact) <= 1e-6
    N = 256  # uniform points: the FFT
    xu = torch.arange(N, dtype=torch.float64, device="cuda") / N
    vu = torch.randn(N, dtype=torch.float64, device="cuda")
    fft = np.fft.fft(vu.cpu().numpy())[:100]
    assert rel_err(nufft_spectrum(xu, vu, 100, backend="cufinufft"), fft) < 1e-8
    x32, v32 = xc.float(), vc.float()
    got32 = nufft_spectrum(x32, v32, K, backend="cufinufft")
    exact32 = nufft_spectrum(x32.double(), v32.double(), K, backend="direct")  # the rounded inputs, exactly
    assert got32.is_cuda and got32.dtype == torch.complex64 and rel_err(got32, exact32) <= 1e-6
