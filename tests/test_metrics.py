import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests._data import mnist_test_subset


def _numpy_delta_f(images: np.ndarray, labels: np.ndarray, logits: np.ndarray, n_freqs: int, freqs) -> np.ndarray:
    """Independent oracle: numpy PCA, a plain DFT sum, softmax, one-hot, Eq. (1) with the norm over channels."""
    flat = images.reshape(len(images), -1)
    w, v = np.linalg.eigh(np.cov(flat, rowvar=False))
    p = v[:, -1] * np.sign(v[np.abs(v[:, -1]).argmax(), -1])
    raw = flat @ p
    x = (raw - raw.min()) / (raw.max() - raw.min()) * (len(raw) - 1) / len(raw)  # [0, (n − 1)/n]
    y = np.eye(10)[labels]
    h = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    basis = np.exp(-2j * np.pi * np.outer(np.arange(n_freqs), x))
    fy, fh = basis @ y, basis @ h
    err = np.linalg.norm(fy - fh, axis=1) / np.linalg.norm(fy, axis=1)
    return err[list(freqs)]


def _numpy_low_high(images, y, h, deltas):
    flat = images.reshape(len(images), -1)
    d2 = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    e_low, e_high = [], []
    for delta in deltas:
        k = np.exp(-d2 / (2 * delta))
        k /= k.sum(1, keepdims=True)
        yl, hl = k @ y, k @ h
        e_low.append(np.linalg.norm(hl - yl) / np.linalg.norm(yl))
        e_high.append(np.linalg.norm((h - hl) - (y - yl)) / np.linalg.norm(y - yl))
    return np.array(e_low), np.array(e_high)


@pytest.fixture(scope="module")
def mnist_probe():
    images, labels = mnist_test_subset(300)
    logits = np.random.default_rng(0).normal(size=(300, 10))
    return images, labels, logits


def test_spectral_error_matches_numpy_oracle(mnist_probe):
    images, labels, logits = mnist_probe
    metric = ProjectedSpectralError(n_freqs=32, max_freqs=5)
    metric.update(torch.from_numpy(images).float(), torch.from_numpy(logits), torch.from_numpy(labels))
    out = metric.compute()
    expected = _numpy_delta_f(images.astype(np.float32).astype(np.float64), labels, logits, 32, out["freqs"].tolist())
    np.testing.assert_allclose(out["delta_f"].numpy(), expected, rtol=1e-6)
    assert len(out["freqs"]) == 5 and out["target_spectrum"].shape == (32, 10)


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-8), (torch.float32, 1e-6)])
def test_low_high_matches_dense_numpy(mnist_probe, dtype, rtol):
    images, labels, logits = mnist_probe
    deltas = [5.0, 20.0, 80.0]
    metric = LowHighFrequencyError(deltas=deltas, filter_dtype=dtype)
    metric.update(torch.from_numpy(images), torch.from_numpy(logits), torch.from_numpy(labels))
    out = metric.compute()
    y = np.eye(10)[labels]
    h = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    e_low, e_high = _numpy_low_high(images, y, h, deltas)
    np.testing.assert_allclose(out["e_low"].numpy(), e_low, rtol=rtol)
    np.testing.assert_allclose(out["e_high"].numpy(), e_high, rtol=rtol)


@settings(max_examples=10, deadline=None)
@given(cuts=st.lists(st.integers(1, 199), min_size=1, max_size=4, unique=True))
def test_batched_updates_equal_one_update(cuts):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 6, generator=g)
    y = torch.sin(5 * x[:, :2])
    h = y + 0.1 * torch.randn(200, 2, generator=g)
    bounds = [0, *sorted(cuts), 200]
    for cls, kwargs in ((ProjectedSpectralError, {"n_freqs": 16}), (LowHighFrequencyError, {"deltas": [0.1, 1.0]})):
        whole, parts = cls(**kwargs), cls(**kwargs)
        whole.update(x, h, y)
        for a, b in zip(bounds[:-1], bounds[1:]):
            parts.update(x[a:b], h[a:b], y[a:b])
        ref, got = whole.compute(), parts.compute()
        for key in ("delta_f", "e_low", "e_high"):
            if key in ref:
                assert torch.allclose(ref[key], got[key], rtol=1e-10)


def test_fits_are_frozen_after_first_compute():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(100, 3, generator=g)
    y = torch.sin(9 * x[:, :1])
    metric = ProjectedSpectralError(n_freqs=16)
    metric.update(x, y * 0, y)
    first = metric.compute()
    projection = metric.projection
    metric.reset()
    metric.update(x * 3 + 1, y * 0.5, y * 7)  # other data: same projection and frequencies kept
    second = metric.compute()
    assert metric.projection is projection
    assert torch.equal(first["freqs"], second["freqs"])
    lh = LowHighFrequencyError(n_deltas=4)
    lh.update(x, y * 0, y)
    deltas = lh.compute()["deltas"].clone()
    lh.reset()
    lh.update(x * 10, y * 0, y)
    assert torch.equal(lh.compute()["deltas"], deltas)


def test_index_drops_duplicated_samples():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(50, 4, generator=g)
    y = torch.cos(4 * x[:, :1])
    h = 0.5 * y
    ref = ProjectedSpectralError(n_freqs=12)
    ref.update(x, h, y)
    dup = ProjectedSpectralError(n_freqs=12)
    order = torch.randperm(50, generator=g)
    padded = torch.cat([order, order[:3]])  # what a DistributedSampler pads with
    dup.update(x[padded], h[padded], y[padded], index=padded)
    assert torch.allclose(ref.compute()["delta_f"], dup.compute()["delta_f"], rtol=1e-10)


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


def _ddp_worker(rank: int, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(61, 5, generator=g)
    y = torch.sin(6 * x[:, :2])
    h = y + 0.2 * torch.randn(61, 2, generator=g)
    index = torch.arange(rank, 62, world) % 61  # strided shards, padded with sample 0 like DistributedSampler
    spectral, lowhigh = ProjectedSpectralError(n_freqs=16), LowHighFrequencyError(deltas=[0.05, 0.5])
    for metric in (spectral, lowhigh):
        metric.update(x[index], h[index], y[index], index=index)
    results[rank] = (spectral.compute()["delta_f"], lowhigh.compute()["e_low"])
    dist.destroy_process_group()


def test_ddp_gather_equals_single_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_ddp_worker, args=(2, port, results), nprocs=2, join=True)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(61, 5, generator=g)
    y = torch.sin(6 * x[:, :2])
    h = y + 0.2 * torch.randn(61, 2, generator=g)
    spectral, lowhigh = ProjectedSpectralError(n_freqs=16), LowHighFrequencyError(deltas=[0.05, 0.5])
    spectral.update(x, h, y)
    lowhigh.update(x, h, y)
    for rank in (0, 1):
        assert torch.allclose(results[rank][0], spectral.compute()["delta_f"], rtol=1e-9)
        assert torch.allclose(results[rank][1], lowhigh.compute()["e_low"], rtol=1e-9)
