"""The probe-set Metrics against their functional form, an independent numpy reference, in batches and under DDP.

The checks themselves are in ``tests/_metric_tester.py``; this file holds the cases: the numpy references, the
functional forms the Metrics wrap, and the data (real MNIST digits with random logits, and a 2-channel regression).
"""

from functools import lru_cache, partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fp_lightning.functional import (
    frequency_loss_split,
    low_high_errors,
    nufft_spectrum,
    prepare_targets,
    principal_projection,
    relative_spectral_error,
    select_frequencies,
)
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests._data import mnist_test_subset
from tests._metric_tester import DistributedPool, MetricCase, MetricTester


# ------------------------------------------------------------------------------------------ numpy references
def numpy_targets(preds: np.ndarray, target: np.ndarray, transform: str) -> tuple[np.ndarray, np.ndarray]:
    """y and h as (n, c) float64: one-hot labels and softmax outputs, or the values as they are."""
    if transform == "softmax":
        logits = preds.astype(np.float64)
        h = np.exp(logits - logits.max(1, keepdims=True))
        return np.eye(preds.shape[1])[target], h / h.sum(1, keepdims=True)
    return target.reshape(len(target), -1).astype(np.float64), preds.reshape(len(preds), -1).astype(np.float64)


def numpy_spectral_error(x, preds, target, *, transform, n_freqs, max_freqs):
    """PCA by an SVD, a plain DFT sum, peaks of |F[y]| by their definition, Eq. (1) with the norm over channels."""
    y, h = numpy_targets(preds, target, transform)
    flat = x.reshape(len(x), -1).astype(np.float64)
    _, _, rows = np.linalg.svd(flat - flat.mean(0), full_matrices=False)  # top right singular vector = top PC
    p = rows[0] * np.sign(rows[0][np.abs(rows[0]).argmax()])
    raw = flat @ p
    coords = (raw - raw.min()) / (raw.max() - raw.min()) * (len(raw) - 1) / len(raw)  # [0, (n − 1)/n]
    basis = np.exp(-2j * np.pi * np.outer(np.arange(n_freqs), coords))
    fy, fh = basis @ y, basis @ h
    amp = np.linalg.norm(fy, axis=1)
    peaks = [k for k in range(1, n_freqs - 1) if amp[k] > amp[k + 1] and (k == 1 or amp[k] > amp[k - 1])]
    freqs = sorted(sorted(peaks, key=lambda k: (-amp[k], k))[:max_freqs])
    cutoff = min(freqs[(len(freqs) - 1) // 2], n_freqs - 2)  # the median tracked k
    q = np.linalg.norm(fh - fy, axis=1) ** 2
    return {"delta_f": np.linalg.norm(fy[freqs] - fh[freqs], axis=1) / np.linalg.norm(fy[freqs], axis=1),
            "freqs": np.array(freqs), "loss_low": q[: cutoff + 1].sum(), "loss_high": q[cutoff + 1:].sum(),
            "cutoff": np.array(cutoff)}


def numpy_low_high(x, preds, target, *, transform, deltas):
    """Dense Gaussian kernels exp(−‖xᵢ − xⱼ‖²/(2δ)), row-normalized; relative Frobenius errors."""
    y, h = numpy_targets(preds, target, transform)
    flat = x.reshape(len(x), -1).astype(np.float64)
    d2 = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    e_low, e_high = [], []
    for delta in deltas:
        kernel = np.exp(-d2 / (2 * delta))
        kernel /= kernel.sum(1, keepdims=True)
        y_low, h_low = kernel @ y, kernel @ h
        e_low.append(np.linalg.norm(h_low - y_low) / np.linalg.norm(y_low))
        e_high.append(np.linalg.norm((h - h_low) - (y - y_low)) / np.linalg.norm(y - y_low))
    return {"e_low": np.array(e_low), "e_high": np.array(e_high), "deltas": np.array(deltas, dtype=np.float64)}


# ------------------------------------------------------------------------------------------ functional forms
def functional_spectral_error(x, preds, target, *, transform, n_freqs, max_freqs):
    """What ProjectedSpectralError computes, from fp_lightning.functional calls."""
    y, h = prepare_targets(preds, target, transform)
    coords = principal_projection(x.reshape(len(x), -1).double()).coords[:, 0]
    fy, fh = nufft_spectrum(coords, y, n_freqs), nufft_spectrum(coords, h, n_freqs)
    freqs = select_frequencies(fy.abs(), max_freqs)
    cutoff = min(int(freqs[(len(freqs) - 1) // 2]), n_freqs - 2)
    loss_low, loss_high = frequency_loss_split(fy, fh, cutoff)
    return {"delta_f": relative_spectral_error(fy[freqs], fh[freqs]), "freqs": freqs, "loss_low": loss_low,
            "loss_high": loss_high, "cutoff": torch.tensor(cutoff)}


def functional_low_high(x, preds, target, *, transform, deltas, dtype=torch.float32):
    """What LowHighFrequencyError computes, from fp_lightning.functional calls."""
    y, h = prepare_targets(preds, target, transform)
    e_low, e_high = low_high_errors(x, y, h, deltas, dtype=dtype)
    return {"e_low": e_low, "e_high": e_high, "deltas": torch.tensor(deltas, dtype=torch.float64)}


# ------------------------------------------------------------------------------------------ the cases
@lru_cache(maxsize=1)
def _mnist(n=120):
    images, labels = mnist_test_subset(n)
    logits = np.random.default_rng(0).normal(size=(n, 10))
    return torch.from_numpy(images).float(), torch.from_numpy(logits), torch.from_numpy(labels)


def _regression(n=61):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(n, 5, generator=g, dtype=torch.float64)
    y = torch.sin(6 * x[:, :2])
    return x, y + 0.2 * torch.randn(n, 2, generator=g, dtype=torch.float64), y


SPECTRAL_KEYS = ("delta_f", "freqs", "loss_low", "loss_high", "cutoff")
LOW_HIGH_KEYS = ("e_low", "e_high", "deltas")


def _spectral_case(name, data, transform, n_freqs, max_freqs):
    args = dict(transform=transform, n_freqs=n_freqs, max_freqs=max_freqs)
    return MetricCase(name, ProjectedSpectralError, dict(n_freqs=n_freqs, max_freqs=max_freqs), *data,
                      functional=partial(functional_spectral_error, **args),
                      reference=partial(numpy_spectral_error, **args), keys=SPECTRAL_KEYS)


def _low_high_case(name, data, transform, deltas, precision, rtol):
    dtype = getattr(torch, precision)
    return MetricCase(name, LowHighFrequencyError, dict(deltas=deltas, filter_precision=precision), *data,
                      functional=partial(functional_low_high, transform=transform, deltas=deltas, dtype=dtype),
                      reference=partial(numpy_low_high, transform=transform, deltas=deltas), keys=LOW_HIGH_KEYS,
                      rtol=rtol)


CASES = [
    # integer labels and logits: "auto" picks one-hot and softmax, as for a classifier
    _spectral_case("spectral-mnist-logits", _mnist(), "softmax", n_freqs=32, max_freqs=5),
    _spectral_case("spectral-regression-2ch", _regression(), "identity", n_freqs=16, max_freqs=4),
    _low_high_case("lowhigh-mnist-float64", _mnist(), "softmax", [5.0, 20.0, 80.0], "float64", 1e-8),
    _low_high_case("lowhigh-mnist-float32", _mnist(), "softmax", [5.0, 20.0, 80.0], "float32", 1e-6),
    _low_high_case("lowhigh-regression-2ch", _regression(), "identity", [0.05, 0.5], "float32", 1e-6),
]


@pytest.fixture(scope="module")
def ddp_pool():
    """Two processes in one gloo group for every DDP case of this module (spawned once)."""
    pool = DistributedPool(world_size=2)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def tester():
    return MetricTester()


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_functional_form_matches_numpy(tester, case):
    tester.run_functional_test(case)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_metric_matches_numpy(tester, case):
    tester.run_class_test(case)


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_batched_updates_equal_one_update(tester, case):
    tester.run_batched_test(case)


@pytest.mark.ddp
@pytest.mark.parametrize("case", CASES, ids=repr)
def test_ddp_two_processes_match_numpy(tester, case, ddp_pool):
    """Strided shards padded like a DistributedSampler, with index (what the monitor does)."""
    tester.run_ddp_test(case, ddp_pool, "strided_padded_index")


@pytest.mark.ddp
def test_ddp_without_index_matches_numpy(tester, ddp_pool):
    """Contiguous uneven shards, no index: what a user's own DDP loop without positions gives."""
    tester.run_ddp_test(CASES[1], ddp_pool, "contiguous_uneven")


@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(st.integers(1, 60), min_size=1, max_size=4))
def test_any_batch_split_equals_one_update(sizes):
    for case in (CASES[1], CASES[4]):
        MetricTester().run_batched_test(case, batch_sizes=sizes)


# ------------------------------------------------------------------------------------------ beyond the harness
def test_fits_are_frozen_after_first_compute():
    """After reset(), other data are measured with the first data's projection, frequencies, cutoff and δ."""
    x, h, y = _regression()
    spectral = ProjectedSpectralError(n_freqs=16)
    spectral.update(x, h, y)
    first = spectral.compute()
    spectral.reset()
    x2, h2, y2 = x * 3 + torch.linspace(0, 1, 5, dtype=torch.float64), 0.5 * h, 7 * y
    spectral.update(x2, h2, y2)
    second = spectral.compute()
    assert torch.equal(first["freqs"], second["freqs"]) and first["cutoff"] == second["cutoff"]
    # the same frozen choices given explicitly: the projection fitted on x, the first frequencies and cutoff
    explicit = ProjectedSpectralError(n_freqs=16, frequencies=first["freqs"].tolist(), cutoff=int(first["cutoff"]),
                                      projection=principal_projection(x))
    explicit.update(x2, h2, y2)
    refit = ProjectedSpectralError(n_freqs=16, frequencies=first["freqs"].tolist(), cutoff=int(first["cutoff"]))
    refit.update(x2, h2, y2)
    assert torch.allclose(second["delta_f"], explicit.compute()["delta_f"], rtol=1e-12)
    assert not torch.allclose(second["delta_f"], refit.compute()["delta_f"], rtol=1e-3)  # a refit would differ

    low_high = LowHighFrequencyError(n_deltas=4)
    low_high.update(x, h, y)
    deltas = low_high.compute()["deltas"].clone()
    low_high.reset()
    low_high.update(x * 1.5, h, y)  # a refit would scale every δ by 1.5² (they are scale-free)
    assert torch.equal(low_high.compute()["deltas"], deltas)


def test_index_drops_duplicated_samples():
    x, h, y = _regression(50)
    order = torch.randperm(50, generator=torch.Generator().manual_seed(2))
    padded = torch.cat([order, order[:3]])  # what a DistributedSampler pads with
    for cls, kwargs in ((ProjectedSpectralError, {"n_freqs": 12}), (LowHighFrequencyError, {"deltas": [0.1]})):
        ref, dup = cls(**kwargs), cls(**kwargs)
        ref.update(x, h, y)
        dup.update(x[padded], h[padded], y[padded], index=padded)
        key = "delta_f" if cls is ProjectedSpectralError else "e_low"
        assert torch.allclose(ref.compute()[key], dup.compute()[key], rtol=1e-10)


def test_constructor_and_update_errors():
    with pytest.raises(ValueError, match="`n_freqs`"):
        ProjectedSpectralError(n_freqs=0)
    with pytest.raises(ValueError, match="`frequencies`"):
        ProjectedSpectralError(frequencies=[])
    with pytest.raises(ValueError, match="`frequencies`"):
        ProjectedSpectralError(n_freqs=8, frequencies=[3, 9])
    with pytest.raises(ValueError, match="`deltas`"):
        LowHighFrequencyError(deltas=[1.0, -1.0])
    with pytest.raises(ValueError, match="`output_transform`"):
        LowHighFrequencyError(output_transform="relu")
    metric = ProjectedSpectralError()
    with pytest.raises(ValueError, match="Mismatched"):
        metric.update(torch.rand(5, 2), torch.rand(4, 1), torch.rand(5, 1))


def test_plots_draw():
    x = torch.linspace(0, 1, 80).unsqueeze(1)
    for metric in (ProjectedSpectralError(n_freqs=16), LowHighFrequencyError(deltas=[0.001, 0.01])):
        metric.update(x, torch.zeros(80, 1) + 0.2, torch.sin(20 * x))
        fig, ax = metric.plot()
        assert ax.lines
