"""Gaussian low-pass filtering (fp_lightning.functional.filtering) against a dense float64 numpy oracle."""

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fp_lightning.functional.filtering as filtering
from fp_lightning.functional.filtering import GaussianFilterBank, default_deltas, gaussian_lowpass, low_high_errors
from tests._data import cifar_test_subset, mnist_test_subset

HAS_CUDA = torch.cuda.is_available()
# The oracle, property and cache tests run in float64, where agreement to ~1e-10 is expected; the float32 default
# has its own tests (section "float32") with tolerances set by its rounding.
lowpass64 = functools.partial(gaussian_lowpass, dtype=torch.float64)
errors64 = functools.partial(low_high_errors, dtype=torch.float64)
Bank64 = functools.partial(GaussianFilterBank, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------- the oracle
def _dense_sq_distances(x: np.ndarray) -> np.ndarray:
    """Exact squared distances from explicit differences (no norm expansion), float64."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    return np.stack([((flat - row) ** 2).sum(axis=1) for row in flat])


def _dense_lowpass(dist: np.ndarray, values: np.ndarray, delta: float) -> np.ndarray:
    kernel = np.exp(-dist / (2.0 * delta))
    denominator = kernel.sum(axis=1)
    return kernel @ values / (denominator[:, None] if values.ndim == 2 else denominator)


def _dense_errors(dist, y, h, deltas):
    e_low, e_high = [], []
    for delta in deltas:
        y_low, h_low = _dense_lowpass(dist, y, delta), _dense_lowpass(dist, h, delta)
        e_low.append(np.linalg.norm(h_low - y_low) / np.linalg.norm(y_low))
        e_high.append(np.linalg.norm((h - h_low) - (y - y_low)) / np.linalg.norm(y - y_low))
    return np.array(e_low), np.array(e_high)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def mnist():
    images, labels = mnist_test_subset(300)
    y = np.eye(10)[labels]
    # an "output" that got part of the way: mostly the labels, plus seeded noise through a softmax
    logits = 4.0 * y + np.random.default_rng(0).normal(size=y.shape)
    return images, y, _softmax(logits), _dense_sq_distances(images)


MNIST_DELTAS = [2.0, 5.0, 15.0, 50.0]  # the high-frequency share of y runs from ~2e-3 to ~0.96 over these


# ------------------------------------------------------------------------------------ agreement with the oracle
def test_lowpass_matches_dense_kernel_on_mnist(mnist):
    images, y, _, dist = mnist
    x = torch.from_numpy(images)
    for delta in MNIST_DELTAS:
        got = lowpass64(x, torch.from_numpy(y), delta)
        assert got.shape == y.shape and got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), _dense_lowpass(dist, y, delta), rtol=1e-10, atol=1e-300)
    stacked = lowpass64(x, torch.from_numpy(y), MNIST_DELTAS)
    assert stacked.shape == (len(MNIST_DELTAS), *y.shape)
    for m, delta in enumerate(MNIST_DELTAS):
        np.testing.assert_allclose(stacked[m].numpy(), _dense_lowpass(dist, y, delta), rtol=1e-10, atol=1e-300)
    # 1-D values: 1-D result
    got1 = lowpass64(x, torch.from_numpy(y[:, 3]), 3.0)
    np.testing.assert_allclose(got1.numpy(), _dense_lowpass(dist, y[:, 3], 3.0), rtol=1e-10, atol=1e-300)


def test_errors_match_dense_kernel_on_mnist(mnist):
    images, y, h, dist = mnist
    e_low, e_high = errors64(torch.from_numpy(images), torch.from_numpy(y), torch.from_numpy(h),
                                    MNIST_DELTAS)
    ref_low, ref_high = _dense_errors(dist, y, h, MNIST_DELTAS)
    assert e_low.dtype == torch.float64 and e_low.shape == (len(MNIST_DELTAS),)
    np.testing.assert_allclose(e_low.numpy(), ref_low, rtol=1e-10)
    np.testing.assert_allclose(e_high.numpy(), ref_high, rtol=1e-10)
    # the errors are informative here: neither 0 nor identical across δ
    assert np.all(ref_low > 1e-3) and np.ptp(ref_high) > 0.05


@pytest.mark.slow
def test_chunked_equals_unchunked(mnist):
    images, y, h, _ = mnist
    n = 100  # 14 full blocks of 7 and a ragged one of 2
    x, yt, ht = torch.from_numpy(images[:n]), torch.from_numpy(y[:n]), torch.from_numpy(h[:n])
    whole = lowpass64(x, yt, MNIST_DELTAS, chunk_size=n)
    chunked = lowpass64(x, yt, MNIST_DELTAS, chunk_size=7)
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-300)
    e_whole = errors64(x, yt, ht, MNIST_DELTAS)
    e_chunked = errors64(x, yt, ht, MNIST_DELTAS, chunk_size=7)
    for a, b in zip(e_chunked, e_whole):  # e_high divides by a small y_high: rounding is amplified
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)


def test_errors_match_dense_kernel_on_cifar():
    images, labels = cifar_test_subset(200)
    y = np.eye(10)[labels]
    h = _softmax(np.random.default_rng(1).normal(size=y.shape))
    x = torch.from_numpy(images)
    deltas = default_deltas(x, 5)
    dist = _dense_sq_distances(images)
    e_low, e_high = errors64(x, torch.from_numpy(y), torch.from_numpy(h), deltas, chunk_size=64)
    ref_low, ref_high = _dense_errors(dist, y, h, deltas.tolist())
    np.testing.assert_allclose(e_low.numpy(), ref_low, rtol=1e-10)
    np.testing.assert_allclose(e_high.numpy(), ref_high, rtol=1e-10)
    low = lowpass64(x.float(), torch.from_numpy(y).float(), float(deltas[2]))
    assert low.dtype == torch.float32  # the values' floating dtype is kept
    np.testing.assert_allclose(low.numpy(), _dense_lowpass(dist, y, float(deltas[2])), rtol=1e-5, atol=1e-7)


# -------------------------------------------------------------------------------------------------- float32
@pytest.mark.parametrize("dataset", ["mnist", "cifar"])
def test_float32_default_matches_dense_float64_oracle(dataset):
    images, labels = mnist_test_subset(300) if dataset == "mnist" else cifar_test_subset(200)
    y = np.eye(10)[labels]
    h = _softmax(4.0 * y + np.random.default_rng(0).normal(size=y.shape))
    x = torch.from_numpy(images).float()
    dist = _dense_sq_distances(images)
    # from m/100 (high-frequency share of y ~1e-5 on MNIST, ~2e-4 on CIFAR) to m/4 (share ~0.9)
    deltas = default_deltas(x, 12, low_fraction=0.01)
    e_low, e_high = low_high_errors(x, torch.from_numpy(y), torch.from_numpy(h), deltas)
    ref_low, ref_high = _dense_errors(dist, y, h, deltas.tolist())
    assert e_low.dtype == torch.float64
    np.testing.assert_allclose(e_low.numpy(), ref_low, rtol=1e-6)
    # e_high divides by ‖y_high‖, 1e-5 of ‖y‖ at the smallest δ: subtracting a float32 y_low from y would leave
    # errors of ~1e-7/1e-5 = 1e-2 there; the off-diagonal form (y·T − S)/(1 + T) keeps them at ~1e-5
    np.testing.assert_allclose(e_high.numpy(), ref_high, rtol=1e-4)
    np.testing.assert_allclose(e_high.numpy()[4:], ref_high[4:], rtol=1e-6)  # shares ≥ 1e-3
    low = gaussian_lowpass(x, torch.from_numpy(y).float(), deltas)
    assert low.dtype == torch.float32 and low.is_contiguous()
    for m, delta in enumerate(deltas.tolist()):
        np.testing.assert_allclose(low[m].numpy(), _dense_lowpass(dist, y, delta), rtol=0, atol=1e-6)


def test_float32_degenerate_floor_is_its_rounding_level():
    x, y, h = _problem(30, 3, 0)
    with pytest.raises(ValueError, match="1e-06"):  # a constant target: y_high is float32 rounding noise
        low_high_errors(x, torch.full_like(y, 0.7), h, 1.0)
    # a tiny but real high part (7e-6 of ‖y‖ at δ = 1e-4) is above the floor, and accurate in float32
    for a, b in zip(low_high_errors(x, y, h, 1e-4), errors64(x, y, h, 1e-4)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=0)


# ----------------------------------------------------------------------------------------------- properties
def _problem(n: int, d: int, seed: int, channels: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    w = torch.randn(d, channels, generator=g, dtype=torch.float64)
    y = torch.sin(4.0 * x @ w) + 0.5 * torch.randn(n, channels, generator=g, dtype=torch.float64)
    h = y + 0.3 * torch.randn(n, channels, generator=g, dtype=torch.float64)
    return x, y, h


problems = st.tuples(st.integers(3, 40), st.integers(1, 4), st.integers(0, 10_000))
deltas_st = st.lists(st.floats(0.5, 20.0), min_size=1, max_size=3)


@settings(max_examples=25, deadline=None)
@given(prob=problems, deltas=deltas_st)
def test_perfect_output_has_zero_errors(prob, deltas):
    x, y, _ = _problem(*prob)
    e_low, e_high = errors64(x, y, y.clone(), deltas)
    assert torch.equal(e_low, torch.zeros(len(deltas), dtype=torch.float64))
    assert torch.equal(e_high, torch.zeros(len(deltas), dtype=torch.float64))


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(prob=problems, deltas=deltas_st, s=st.floats(1e-3, 1e3))
def test_errors_invariant_to_scaling_target_and_output(prob, deltas, s):
    x, y, h = _problem(*prob)
    ref = errors64(x, y, h, deltas)
    got = errors64(x, s * y, s * h, deltas)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=0)


@settings(max_examples=25, deadline=None)
@given(prob=problems, deltas=deltas_st, s=st.floats(1e-2, 1e2))
def test_errors_invariant_to_scaling_inputs_with_deltas(prob, deltas, s):
    x, y, h = _problem(*prob)
    ref = errors64(x, y, h, deltas)
    got = errors64(s * x, y, h, [s * s * delta for delta in deltas])
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=0)


@settings(max_examples=25, deadline=None)
@given(prob=problems)
def test_huge_delta_gives_the_mean(prob):
    x, y, _ = _problem(*prob)
    low = lowpass64(x, y, 1e13)
    torch.testing.assert_close(low, y.mean(dim=0).expand_as(y), rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(prob=problems, delta=st.floats(1e-6, 1e6), value=st.floats(-1e3, 1e3))
def test_constants_pass_unchanged(prob, delta, value):
    x, _, _ = _problem(*prob)
    low = lowpass64(x, torch.full((x.shape[0], 3), value, dtype=torch.float64), delta, chunk_size=5)
    torch.testing.assert_close(low, torch.full_like(low, value), rtol=1e-14, atol=1e-300)


def test_tiny_delta_is_the_identity_without_nan():
    x, y, _ = _problem(20, 5, 0)
    # every off-diagonal weight underflows to 0 and only the self term G(0) = 1 remains; with inputs of norm ~1e8
    # the expanded ‖a‖² + ‖a‖² − 2a·a is rounding noise of order 1, which must not reach the self weight
    for scale, delta in ((1.0, 1e-12), (1e8, 1e-3)):
        low = lowpass64(scale * x, y, delta, chunk_size=8)
        assert torch.equal(low, y)


# --------------------------------------------------------------------------------------------- the cached bank
@pytest.mark.slow
def test_bank_caches_give_fresh_numbers_and_filter_only_outputs(mnist, monkeypatch):
    images, y, h, _ = mnist
    x, yt = torch.from_numpy(images), torch.from_numpy(y)
    bank = Bank64(x, MNIST_DELTAS, chunk_size=64)
    assert bank.caches_distances
    widths = []
    original = bank.neighbour_sums
    monkeypatch.setattr(bank, "neighbour_sums", lambda v: widths.append(v.shape[1]) or original(v))
    outputs = [torch.from_numpy(h), torch.from_numpy(np.roll(h, 1, axis=1)), torch.from_numpy(0.5 * y + 0.5 * h)]
    for out in outputs:
        got = bank.errors(yt.clone(), out)  # a new tensor with the same values hits the cache
        fresh = errors64(x, yt, out, MNIST_DELTAS)
        for a, b in zip(got, fresh):  # equal up to the rounding of differently shaped products
            torch.testing.assert_close(a, b, rtol=1e-10, atol=0)
    assert widths == [20, 10, 10]  # y and h − y on the first call, then h − y only
    other = torch.from_numpy(np.roll(y, 1, axis=0))
    got = bank.errors(other, outputs[0])  # a different target is filtered again
    for a, b in zip(got, errors64(x, other, outputs[0], MNIST_DELTAS)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)
    assert widths[-1] == 20
    torch.testing.assert_close(bank.lowpass(yt), lowpass64(x, yt, MNIST_DELTAS), rtol=1e-12, atol=1e-300)


def test_bank_without_distance_cache_gives_the_same_numbers(mnist):
    images, y, h, _ = mnist
    x, yt, ht = torch.from_numpy(images), torch.from_numpy(y), torch.from_numpy(h)
    cached = Bank64(x, MNIST_DELTAS, chunk_size=50)
    uncached = Bank64(x, MNIST_DELTAS, chunk_size=50, memory_budget=0)
    assert cached.caches_distances and not uncached.caches_distances
    for _ in range(2):  # second pass reads the cached distance tiles
        torch.testing.assert_close(cached.lowpass(yt), uncached.lowpass(yt), rtol=1e-13, atol=1e-300)
    for a, b in zip(cached.errors(yt, ht), uncached.errors(yt, ht)):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)


def test_default_tiles_are_bounded_for_large_n():
    x = torch.zeros(1, 64).expand(60_000, 64)  # a view: nothing n × n is built
    bank = GaussianFilterBank(x, [1.0])
    assert 1 <= bank.chunk_size <= 512
    assert not bank.caches_distances  # 60,000² / 2 float32 squared distances exceed the 1 GiB default
    for device in (torch.device("cpu"), torch.device("cuda")):  # the rule only (no GPU needed)
        for n, d in ((60_000, 3072), (60_000, 784), (10_000, 1)):
            for itemsize in (4, 8):
                b = filtering._default_chunk(n, d, device, itemsize)
                assert 1 <= b <= n and itemsize * (2 * b * b + 2 * b * d) <= filtering.DEFAULT_TEMP_BUDGET
                assert device.type == "cuda" or b <= 512
    assert filtering._default_chunk(60_000, 3072, torch.device("cuda"), 4) > 2000  # GPUs get large tiles


# ------------------------------------------------------------------------------------------------ default δ
def test_default_deltas_scale_free_sorted_positive(mnist):
    images = torch.from_numpy(mnist[0])
    ref = default_deltas(images, 12)
    assert ref.shape == (12,) and ref.dtype == torch.float64
    assert bool((ref > 0).all()) and bool((ref[1:] > ref[:-1]).all())
    for s in (2.0, 0.25, 1024.0):  # powers of two: bit-exact
        assert torch.equal(default_deltas(s * images, 12), s * s * ref)
    torch.testing.assert_close(default_deltas(3.0 * images, 12), 9.0 * ref, rtol=1e-13, atol=0)
    # subsampled pairs (n(n−1)/2 > max_pairs): still scale-free, deterministic, and the global RNG is untouched
    state = torch.random.get_rng_state()
    sub = default_deltas(images, 5, max_pairs=500)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(sub, default_deltas(images, 5, max_pairs=500))
    assert torch.equal(default_deltas(4.0 * images, 5, max_pairs=500), 16.0 * sub)
    assert not torch.equal(sub, default_deltas(images, 5, max_pairs=500, seed=1))


def test_default_deltas_rule_on_a_small_example():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # pair distances 1, 1, 1, 4, 4, 9: lower median 1
    middle = (0.03 * 0.25) ** 0.5  # geometric middle of m/33 … m/4
    torch.testing.assert_close(default_deltas(x, 3), torch.tensor([0.03, middle, 0.25], dtype=torch.float64))
    torch.testing.assert_close(default_deltas(x, 1), torch.tensor([middle], dtype=torch.float64))
    got = default_deltas(x, 5, low_fraction=0.1, high_fraction=1.0)
    torch.testing.assert_close(got, torch.logspace(-1, 0, 5, dtype=torch.float64))


def test_default_deltas_are_informative(mnist):
    images, y, h, _ = mnist
    x, yt = torch.from_numpy(images), torch.from_numpy(y)
    deltas = default_deltas(x, 8)
    low = lowpass64(x, yt, deltas)
    share = torch.linalg.vector_norm(yt - low, dim=(1, 2)) / torch.linalg.vector_norm(yt - yt.mean(0))
    assert share[0] < 0.5 and share[-1] > 0.9  # from mostly y to nearly the mean...
    assert share[0] > 1e-8 and share[-1] < 0.999  # ...without reaching either
    e_low, e_high = errors64(x, yt, torch.from_numpy(h), deltas)  # no degenerate δ
    assert bool(torch.isfinite(e_low).all() and torch.isfinite(e_high).all())


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_value_errors_naming_the_argument():
    x, y, h = _problem(10, 2, 0)
    cases = [
        (lambda: gaussian_lowpass(x[:1], y[:1], 1.0), "`x`"),
        (lambda: gaussian_lowpass(torch.tensor(1.0), y, 1.0), "`x`"),
        (lambda: gaussian_lowpass(x, y[:9], 1.0), "`values`"),
        (lambda: gaussian_lowpass(x, y[:, :, None], 1.0), "`values`"),
        (lambda: gaussian_lowpass(x, y.to(torch.complex128), 1.0), "`values`"),
        (lambda: gaussian_lowpass(torch.where(x > 0.5, math.inf, x), y, 1.0), "`x`"),
        (lambda: gaussian_lowpass(x, torch.full_like(y, math.nan), 1.0), "`values`"),
        (lambda: gaussian_lowpass(x, y, 0.0), "`delta`"),
        (lambda: gaussian_lowpass(x, y, [1.0, -2.0]), "`delta`"),
        (lambda: gaussian_lowpass(x, y, []), "`delta`"),
        (lambda: gaussian_lowpass(x, y, math.nan), "`delta`"),
        (lambda: gaussian_lowpass(x, y, 1.0, chunk_size=0), "`chunk_size`"),
        (lambda: low_high_errors(x, y, h[:9], 1.0), "`output`"),
        (lambda: low_high_errors(x, y, h[:, :1], 1.0), "`output`"),
        (lambda: low_high_errors(x, y[:9], h[:9], 1.0), "`target`"),
        (lambda: low_high_errors(x, y, h, torch.ones(2, 2)), "`deltas`"),
        (lambda: low_high_errors(x, y, h, []), "`deltas`"),
        (lambda: low_high_errors(x, y, torch.full_like(h, math.inf), 1.0), "`output`"),
        (lambda: low_high_errors(x, torch.zeros_like(y), h, 1.0), "`target`"),  # ‖y_low‖ = 0
        (lambda: low_high_errors(x, torch.full_like(y, 0.7), h, 1.0), "`target`"),  # ‖y_high‖ = 0: constant
        (lambda: low_high_errors(x, y, h, [1.0, 1e-9]), "`target`"),  # δ so small that y_high = 0
        (lambda: GaussianFilterBank(x, 1.0, memory_budget=-1), "`memory_budget`"),
        (lambda: GaussianFilterBank(x, 1.0, dtype=torch.float16), "`dtype`"),
        (lambda: low_high_errors(x, y, h, 1.0, dtype=[torch.float32]), "`dtype`"),
        (lambda: default_deltas(x, 0), "`n_deltas`"),
        (lambda: default_deltas(x[:1]), "`x`"),
        (lambda: default_deltas(torch.ones(10, 3)), "`x`"),  # all inputs identical: no scale
        (lambda: default_deltas(x, 4, low_fraction=0.5, high_fraction=0.1), "`high_fraction`"),
        (lambda: default_deltas(x, 4, low_fraction=-1.0), "`low_fraction`"),
        (lambda: default_deltas(x, 4, max_pairs=0), "`max_pairs`"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()


def test_degenerate_target_message_names_the_deltas():
    x, y, h = _problem(10, 2, 0)
    with pytest.raises(ValueError, match=r"no high-frequency part at delta=\[1e-09\]"):
        errors64(x, y, h, [1.0, 1e-9])


# ----------------------------------------------------------------------------------------------------- devices
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_matches_cpu(mnist):
    images, y, h, _ = mnist
    x, yt, ht = torch.from_numpy(images), torch.from_numpy(y), torch.from_numpy(h)
    cpu = errors64(x, yt, ht, MNIST_DELTAS)
    gpu = errors64(x.cuda(), yt.cuda(), ht.cuda(), MNIST_DELTAS, chunk_size=100)
    assert gpu[0].device.type == "cuda"
    for a, b in zip(gpu, cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=0)
    assert default_deltas(x.cuda(), 4).device.type == "cpu"
    torch.testing.assert_close(default_deltas(x.cuda(), 4), default_deltas(x, 4), rtol=1e-12, atol=0)
