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

__all__ = ["STREAM_POOL_FACTOR", "ProbeSet", "attribute_names", "extract_batch", "is_sliceable", "is_stream",
           "isolated_rng", "probe_set_from_loader", "sample_probe_set", "shard_slice", "slice_batch",
           "stream_probe_set"]

_INPUT_NAMES = ("x", "input", "inputs", "image", "images", "data", "pixel_values", "input_ids")
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

    Two kinds of batch need more than slicing along dim 0. A batch that is an object slicing cannot reach (a
    ``torch_geometric`` ``Batch`` of graphs, a custom batch class) keeps its uncollated ``samples`` and the
    ``collate`` function, so a chunk of the probe is collated anew from its samples. A batch whose targets have
    more rows than it has samples (the nodes of one graph, a dataset whose single item holds many rows) is a
    *row probe*: ``rows`` are the probe's rows among the batch's, the model runs once on the whole ``batch`` and
    ``inputs``, ``targets`` and the outputs are taken at ``rows``.

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
    samples: list[Any] | None = None
    collate: Collate | None = None
    rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def without_samples(self) -> ProbeSet:
        """The same probe set without ``samples`` and ``collate`` (which a user's lambda may make unpicklable)."""
        return dataclasses.replace(self, samples=None, collate=None)


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
    ``inputs``, ``image``, ``images``, ``data``, ``pixel_values``, ``input_ids`` and of ``y``, ``target``,
    ``targets``, ``label``, ``labels``); other objects (a dataclass, a ``torch_geometric`` ``Data``, a custom batch
    class, slotted or not) use attribute access.

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
    if isinstance(batch, (torch.Tensor, int, float, bool, str, bytes)) or batch is None:
        raise ValueError(f"the dataset yields a bare {type(batch).__name__}: no target to compare with. "
                         "Yield (input, target) pairs or pass `probe_dataloader` or `probe_inputs`/`probe_targets`.")
    fields = _Attributes(batch)
    return (_pick(fields, input_key, _INPUT_NAMES, "input_key"),
            _pick(fields, target_key, _TARGET_NAMES, "target_key"))


class _Attributes(Mapping):
    """An object's data attributes as a read-only mapping, read by attribute access.

    Properties, ``__slots__`` and classes that store their fields elsewhere (``torch_geometric``'s ``Data``) work.
    """

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, str):
            raise KeyError(key)
        try:
            value = getattr(self._obj, key)
        except AttributeError:
            raise KeyError(key) from None
        if value is None or callable(value):
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(attribute_names(self._obj))

    def __len__(self) -> int:
        return len(attribute_names(self._obj))


def attribute_names(obj: Any) -> list[str]:
    """The data fields of an object batch: ``keys()`` where it has them (``torch_geometric``), else its attributes.

    Example:
        >>> class Pair:
        ...     __slots__ = ("x", "y")
        ...     def __init__(self): self.x, self.y = 1, 2
        >>> attribute_names(Pair())
        ['x', 'y']
    """
    keys = getattr(obj, "keys", None)
    if callable(keys):
        try:
            return sorted(str(key) for key in keys())
        except TypeError:
            pass
    slots = [name for cls in type(obj).__mro__ for name in getattr(cls, "__slots__", ())]
    names = list(getattr(obj, "__dict__", {})) + [name for name in slots if hasattr(obj, name)]
    return sorted({name for name in names if not name.startswith("_")})


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
    if n < 1:
        raise ValueError("the training dataset is empty; the probe set needs at least 2 samples.")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(n, generator=generator)[: min(size, n)].sort().values
    if type(dataset) is TensorDataset and collate_fn in (None, default_collate) and n >= 2:
        # one indexing per tensor: what default_collate would stack from the samples, without the per-sample loop
        batch = tuple(tensor[indices] for tensor in dataset.tensors)
        return _split(batch, indices, input_key, target_key)
    with isolated_rng():
        if hasattr(dataset, "__getitems__"):  # torch's batched-fetch protocol, as the DataLoader uses it
            samples = list(dataset.__getitems__(indices.tolist()))
        else:
            samples = [dataset[int(i)] for i in indices]
    return _collated(samples, indices, input_key, target_key, collate_fn, size=size, seed=seed)


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
              collate_fn: Collate | None, size: int | None = None, seed: int = 0) -> ProbeSet:
    collate = collate_fn or default_collate
    with isolated_rng():
        batch = collate(samples)
    probe = _split(batch, indices, input_key, target_key, size=size, seed=seed)
    if probe.rows is None and not is_sliceable(batch):
        # chunks of this batch are collated anew from their samples: slicing cannot reach inside the object
        probe = dataclasses.replace(probe, samples=samples, collate=collate)
    return probe


def _split(batch: Any, indices: torch.Tensor, input_key: int | str | None, target_key: int | str | None,
           size: int | None = None, seed: int = 0) -> ProbeSet:
    inputs, targets = extract_batch(batch, input_key, target_key)
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"the probe targets collate to a {type(targets).__name__}, not a tensor; set `target_key` "
                         "or pass `probe_inputs`/`probe_targets`.")
    if targets.ndim == 0:
        raise ValueError(f"the collated probe targets are a scalar for {len(indices)} samples; the collate "
                         "function must stack samples along dim 0 (set `target_key`).")
    if targets.shape[0] == len(indices) and len(indices) >= 2:
        return ProbeSet(batch, inputs, targets, indices, input_key, target_key)
    if targets.shape[0] > len(indices) and size is not None:
        return _row_probe(batch, inputs, targets, input_key, target_key, size, seed)
    if len(indices) < 2:
        raise ValueError(f"the training data has {len(indices)} sample(s) whose targets have "
                         f"{targets.shape[0]} row(s); the probe set needs at least 2 samples (or one sample whose "
                         "targets have a row per node or item). Pass `probe_dataloader` or `probe_inputs`/"
                         "`probe_targets`.")
    raise ValueError(f"the collated probe targets have shape {tuple(targets.shape)} for {len(indices)} samples; "
                     "the collate function must stack samples along dim 0 (set `target_key`).")


def _row_probe(batch: Any, inputs: Any, targets: torch.Tensor, input_key: int | str | None,
               target_key: int | str | None, size: int, seed: int) -> ProbeSet:
    """A row probe: ``size`` seeded rows (e.g. nodes of a graph) of a batch whose targets have a row per item."""
    total = targets.shape[0]
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randperm(total, generator=generator)[: min(size, total)].sort().values
    row_inputs = inputs[rows] if isinstance(inputs, torch.Tensor) and inputs.ndim and inputs.shape[0] == total \
        else inputs
    return ProbeSet(batch, row_inputs, targets[rows], rows, input_key, target_key, rows=rows)


def is_sliceable(batch: Any) -> bool:
    """Whether ``slice_batch`` reaches every tensor of a batch: tensors in (nested) dicts, lists, tuples, dataclasses.

    Example:
        >>> is_sliceable({"x": torch.zeros(2), "meta": ["a", "b"]}), is_sliceable(object())
        (True, False)
    """
    if isinstance(batch, (torch.Tensor, str, bytes, int, float, bool)) or batch is None:
        return True
    if isinstance(batch, Mapping):
        return all(is_sliceable(value) for value in batch.values())
    if isinstance(batch, Sequence):
        return all(is_sliceable(value) for value in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return all(is_sliceable(getattr(batch, field.name)) for field in dataclasses.fields(batch))
    return False


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
