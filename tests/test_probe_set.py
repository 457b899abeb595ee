"""The probe set drawn the fast way (batched indexing) equals the one drawn sample by sample."""

import torch
from torch.utils.data import Subset, TensorDataset, default_collate

from fp_lightning.callbacks.probe_set import sample_probe_set


def test_tensor_dataset_fast_path_equals_the_sample_loop():
    x, y = torch.rand(300, 2, 3), torch.randint(0, 4, (300,))
    fast = sample_probe_set(TensorDataset(x, y), 50, seed=3)
    # a collate function that is not torch's own forces the per-sample loop
    loop = sample_probe_set(TensorDataset(x, y), 50, seed=3, collate_fn=lambda samples: default_collate(samples))
    assert torch.equal(fast.indices, loop.indices) and torch.equal(fast.inputs, loop.inputs)
    assert torch.equal(fast.targets, loop.targets) and torch.equal(fast.inputs, x[fast.indices])


def test_batched_fetch_protocol_is_used_and_gives_the_same_samples():
    x, y = torch.rand(300, 2), torch.rand(300, 1)
    subset = Subset(TensorDataset(x, y), list(range(0, 300, 3)))  # Subset implements __getitems__
    probe = sample_probe_set(subset, 40, seed=0)
    assert torch.equal(probe.inputs, x[::3][probe.indices]) and torch.equal(probe.targets, y[::3][probe.indices])
