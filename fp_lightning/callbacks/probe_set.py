"""The fixed probe set: the same seeded training samples every recording and on every rank, split into input/target.

A probe set is drawn once per ``fit`` from a map-style dataset (a seeded subset), from a stream (``IterableDataset``:
a seeded reservoir over the head of a fresh iterator), or given directly. Samples are collated with the training
DataLoader's own ``collate_fn`` (padded sequences and custom batches work), then the input and target parts are
taken out of the collated batch. Everything runs with the global random state saved and restored, so a dataset
whose ``__getitem__`` augments with ``torch``, ``numpy`` or ``random`` leaves the user's run unchanged.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch.utils.data import DataLoader, IterableDataset, TensorDataset, default_collate

__all__ = ["STREAM_POOL_FACTOR", "ProbeSet", "extract_batch", "is_stream", "isolated_rng", "probe_set_from_loader",
           "sample_probe_set", "shard_slice", "slice_batch", "stream_probe_set"]

_INPUT_NAMES = ("x", "input", "inputs", "image", "images", "data")
_TARGET_NAMES = ("y", "target", "targets", "label", "labels")
#: A stream's probe set is a seeded reservoir sample over its first ``STREAM_POOL_FACTOR × probe_size`` items: a
#: stream may be endless, and the head of a shuffled stream is as good a sample as any; the factor keeps the probe
#: from being just the first items of an ordered one.
STREAM_POOL_FACTOR = 4

Collate = Callable[[list[Any]], Any]


@dataclass(frozen=True)
class ProbeSet:
    """A drawn probe set and where its parts are.

    ``batch`` is collated as the model's DataLoader would give it; ``inputs`` is its input part, ``targets`` (n, ...)
    its target part; ``indices`` (n,) the samples' positions in their source (dataset indices, or stream positions);
    ``input_key`` / ``target_key`` where input and target sit in ``batch``; ``from_stream`` whether it was drawn
    from a stream (a resume then reuses the saved batch instead of drawing again).

    Example:
        >>> x, y = torch.zeros(3, 2), torch.ones(3)
        >>> probe = ProbeSet((x, y), x, y, torch.arange(3), input_key=0, target_key=1)
        >>> len(probe), probe.from_stream
        (3, False)
    """

    batch: Any
    inputs: Any
    targets: torch.Tensor
    indices: torch.Tensor
    input_key: int | str | None = None
    target_key: int | str | None = None
    from_stream: bool = False

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block with the global random states of ``torch`` (CPU and CUDA), ``numpy`` and ``random`` restored after.

    Example:
        >>> state = torch.random.get_rng_state()
        >>> with isolated_rng():
        ...     _ = torch.rand(3), np.random.rand(), random.random()
        >>> torch.equal(state, torch.random.get_rng_state())
        True
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


def extract_batch(batch: Any, input_key: int | str | None, target_key: int | str | None) -> tuple[Any, Any]:
    """Split a sample or batch into (input, target).

    Tuples and lists use positions (default 0 and 1), dicts use names (default: the first of ``x``, ``input``,
    ``inputs``, ``image``, ``images``, ``data`` and of ``y``, ``target``, ``targets``, ``label``, ``labels``);
    other objects (a dataclass, a custom batch class) use attribute names.

    Raises:
        ValueError: the batch holds no target (a bare tensor, a 1-tuple, a dict without a known target name).

    Example:
        >>> extract_batch({"image": 1, "label": 2}, None, None)
        (1, 2)
        >>> extract_batch((5, 6, 7), 0, 2)
        (5, 7)
    """
    if isinstance(batch, Mapping):
        return (_pick(batch, input_key, _INPUT_NAMES, "input_key"),
                _pick(batch, target_key, _TARGET_NAMES, "target_key"))
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        i = 0 if input_key is None else input_key
        t = 1 if target_key is None else target_key
        if not isinstance(i, int) or not isinstance(t, int):
            raise ValueError(f"`input_key`/`target_key` must be ints for tuple/list batches, got {i!r}, {t!r}.")
        if len(batch) <= max(i, t):
            raise ValueError(f"the dataset yields {len(batch)} entries per sample; it needs an input and a target "
                             f"(positions {i} and {t}). A dataset with no targets cannot be monitored; pass "
                             "`probe_dataloader` or `probe_inputs`/`probe_targets`.")
        return batch[i], batch[t]
    if isinstance(batch, torch.Tensor) or not hasattr(batch, "__dict__"):
        raise ValueError(f"the dataset yields a bare {type(batch).__name__}: no target to compare with. "
                         "Yield (input, target) pairs or pass `probe_dataloader` or `probe_inputs`/`probe_targets`.")
    return (_pick(vars(batch), input_key, _INPUT_NAMES, "input_key"),
            _pick(vars(batch), target_key, _TARGET_NAMES, "target_key"))


def _pick(batch: Mapping[str, Any], key: int | str | None, names: Sequence[str], arg: str) -> Any:
    if key is not None:
        if key not in batch:
            raise ValueError(f"`{arg}`={key!r} is not a key of the batch (keys: {sorted(map(str, batch))}).")
        return batch[key]
    for name in names:
        if name in batch:
            return batch[name]
    raise ValueError(f"none of {list(names)} is a key of the batch (keys: {sorted(map(str, batch))}); "
                     f"set `{arg}`.")


def sample_probe_set(
    dataset: Any, size: int, seed: int, input_key: int | str | None = None, target_key: int | str | None = None,
    collate_fn: Collate | None = None,
) -> ProbeSet:
    """Draw ``size`` samples of a map-style ``dataset`` without replacement, in index order, and collate them.

    A private seeded generator picks the indices, so every rank draws the same samples; the dataset is read with the
    global random state isolated (:func:`isolated_rng`). A dataset smaller than ``size`` gives all its samples.

    Example:
        >>> data = torch.utils.data.TensorDataset(torch.arange(10.0).unsqueeze(1), torch.arange(10) % 2)
        >>> probe = sample_probe_set(data, 4, seed=0)
        >>> probe.inputs.shape, probe.indices.tolist() == sorted(probe.indices.tolist())
        (torch.Size([4, 1]), True)
    """
    n = len(dataset)
    if n < 2:
        raise ValueError(f"the training dataset has {n} sample(s); the probe set needs at least 2.")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(n, generator=generator)[: min(size, n)].sort().values
    if type(dataset) is TensorDataset and collate_fn in (None, default_collate):
        # one indexing per tensor: what default_collate would stack from the samples, without the per-sample loop
        batch = tuple(tensor[indices] for tensor in dataset.tensors)
        return _split(batch, indices, input_key, target_key)
    with isolated_rng():
        if hasattr(dataset, "__getitems__"):  # torch's batched-fetch protocol, as the DataLoader uses it
            samples = list(dataset.__getitems__(indices.tolist()))
        else:
            samples = [dataset[int(i)] for i in indices]
    return _collated(samples, indices, input_key, target_key, collate_fn)


def stream_probe_set(
    dataset: Any, size: int, seed: int, input_key: int | str | None = None, target_key: int | str | None = None,
    collate_fn: Collate | None = None, pool_factor: int = STREAM_POOL_FACTOR,
) -> ProbeSet:
    """Draw ``size`` samples from a stream: a seeded reservoir sample over its first ``pool_factor · size`` items.

    The items come from a fresh ``iter(dataset)``, never from the training DataLoader's iterator, so the training
    stream is neither consumed nor reordered; they keep their stream order.

    Example:
        >>> class Stream(torch.utils.data.IterableDataset):
        ...     def __iter__(self):
        ...         return ((torch.tensor([float(i)]), torch.tensor([float(i % 3)])) for i in range(100))
        >>> probe = stream_probe_set(Stream(), 10, seed=0)
        >>> len(probe), bool((probe.indices < 40).all())
        (10, True)
    """
    generator = torch.Generator().manual_seed(seed)
    reservoir: list[tuple[int, Any]] = []
    with isolated_rng():
        for position, item in enumerate(islice(iter(dataset), pool_factor * size)):
            if len(reservoir) < size:
                reservoir.append((position, item))
                continue
            slot = int(torch.randint(position + 1, (1,), generator=generator))
            if slot < size:
                reservoir[slot] = (position, item)
    if len(reservoir) < 2:
        raise ValueError(f"the training stream yielded {len(reservoir)} sample(s); the probe set needs at least 2.")
    reservoir.sort(key=lambda pair: pair[0])
    indices = torch.tensor([position for position, _ in reservoir])
    probe = _collated([item for _, item in reservoir], indices, input_key, target_key, collate_fn)
    return dataclasses.replace(probe, from_stream=True)


def is_stream(source: Any) -> bool:
    """Whether a DataLoader's dataset (or a dataset) is a stream: an ``IterableDataset`` or without ``__len__``.

    Example:
        >>> is_stream(torch.utils.data.TensorDataset(torch.zeros(3)))
        False
    """
    dataset = source.dataset if isinstance(source, DataLoader) else source
    return isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__")


def probe_set_from_loader(
    loader: Any, size: int, seed: int, input_key: int | str | None = None, target_key: int | str | None = None
) -> ProbeSet:
    """A probe set from a DataLoader's dataset (map-style or stream), collated with the loader's ``collate_fn``.

    A bare ``Dataset`` is accepted too (collated with PyTorch's ``default_collate``).

    Example:
        >>> data = torch.utils.data.TensorDataset(torch.rand(20, 3), torch.rand(20, 1))
        >>> len(probe_set_from_loader(torch.utils.data.DataLoader(data, batch_size=5), 8, seed=0))
        8
    """
    if isinstance(loader, DataLoader):
        dataset, collate_fn = loader.dataset, loader.collate_fn
        if loader.batch_size is None and loader.batch_sampler is None:
            raise ValueError("the DataLoader has automatic batching disabled (batch_size=None), so its dataset "
                             "yields whole batches; pass a per-sample `probe_dataloader` or "
                             "`probe_inputs`/`probe_targets`.")
    else:
        dataset, collate_fn = loader, None
    if is_stream(dataset):
        return stream_probe_set(dataset, size, seed, input_key, target_key, collate_fn)
    return sample_probe_set(dataset, size, seed, input_key, target_key, collate_fn)


def _collated(samples: list[Any], indices: torch.Tensor, input_key: int | str | None, target_key: int | str | None,
              collate_fn: Collate | None) -> ProbeSet:
    with isolated_rng():
        batch = (collate_fn or default_collate)(samples)
    return _split(batch, indices, input_key, target_key)


def _split(batch: Any, indices: torch.Tensor, input_key: int | str | None, target_key: int | str | None) -> ProbeSet:
    inputs, targets = extract_batch(batch, input_key, target_key)
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"the probe targets collate to a {type(targets).__name__}, not a tensor; set `target_key` "
                         "or pass `probe_inputs`/`probe_targets`.")
    if targets.ndim == 0 or targets.shape[0] != len(indices):
        raise ValueError(f"the collated probe targets have shape {tuple(targets.shape)} for {len(indices)} samples; "
                         "the collate function must stack samples along dim 0 (set `target_key`).")
    return ProbeSet(batch, inputs, targets, indices, input_key, target_key)


def slice_batch(batch: Any, index: torch.Tensor | slice) -> Any:
    """Every tensor of a (nested) batch indexed along dim 0; other entries are kept as they are.

    Example:
        >>> slice_batch({"x": torch.arange(6).reshape(3, 2), "name": "a"}, torch.tensor([2, 0]))["x"].tolist()
        [[4, 5], [0, 1]]
    """
    return apply_to_collection(batch, torch.Tensor, lambda tensor: tensor[index])


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """Contiguous shard of ``range(n)`` for ``rank``: sizes differ by at most one, no padding, no duplicates.

    Example:
        >>> [shard_slice(10, r, 3) for r in range(3)]
        [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))
