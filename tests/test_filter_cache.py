"""The filter bank's three caching modes (kernels, distances, none) give the same numbers on every call."""

import pytest
import torch

from fp_lightning.functional import GaussianFilterBank
from tests._data import mnist_test_subset


@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)])
def test_cache_modes_agree_over_epochs(dtype, rtol):
    images, labels = mnist_test_subset(600)
    x = torch.from_numpy(images)
    y = torch.nn.functional.one_hot(torch.from_numpy(labels), 10).double()
    deltas = [4.0, 15.0, 60.0]
    tile_bytes = 8 * 600 * 600  # generous bound on the upper-triangle cache of one array
    banks = {
        "kernels": GaussianFilterBank(x, deltas, chunk_size=256, memory_budget=4 * tile_bytes, dtype=dtype),
        "distances": GaussianFilterBank(x, deltas, chunk_size=256, memory_budget=tile_bytes, dtype=dtype),
        "none": GaussianFilterBank(x, deltas, chunk_size=256, memory_budget=0, dtype=dtype),
    }
    assert banks["kernels"].caches_kernels and not banks["distances"].caches_kernels
    assert banks["distances"].caches_distances and not banks["none"].caches_distances
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # first call fills the caches, later calls use them
        h = torch.softmax(torch.randn(600, 10, generator=g, dtype=torch.float64), dim=1)
        results = {name: bank.errors(y, h) for name, bank in banks.items()}
        for name in ("kernels", "distances"):
            for got, ref in zip(results[name], results["none"]):
                assert torch.allclose(got, ref, rtol=rtol)
        low = banks["kernels"].lowpass(h)
        assert torch.allclose(low, banks["none"].lowpass(h), rtol=rtol)
