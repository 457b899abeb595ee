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

__all__ = [
    "STREAM_POOL_FACTOR",
    "ProbeSet",
    "attribute_names",
    "draw_probe_set",
    "extract_batch",
    "is_sliceable",
    "is_stream",
    "isolated_rng",
    "probe_set_from_loader",
    "probe_source",
    "resumed_stream_probe",
    "sample_probe_set",
    "saved_probe_batch",
    "shard_slice",
    "slice_batch",
    "stream_probe_set",
    "train_loader",
]

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


# ---------------------------------------------------------------------- where a run's probe set comes from
def train_loader(trainer: Any, key: int | str | None = None) -> Any:
    """The train dataloader that feeds the probe set: ``key`` of a dict, position in a list, else the first.

    (``key`` is the monitor's ``probe_dataloader`` when it names a train dataloader.)

    Example:
        >>> from types import SimpleNamespace
        >>> train_loader(SimpleNamespace(train_dataloader={"a": 1, "b": 2}, datamodule=None), "b")
        2
    """
    loaders = trainer.train_dataloader
    if loaders is None and trainer.datamodule is not None:
        loaders = trainer.datamodule.train_dataloader()
    if loaders is None:
        raise ValueError("no train dataloader found; pass `probe_dataloader` to the monitor.")
    if isinstance(loaders, dict):
        if not loaders:
            raise ValueError("the dict of train dataloaders is empty; pass `probe_dataloader`.")
        if key is None:
            return next(iter(loaders.values()))
        if key not in loaders:
            raise ValueError(f"`probe_dataloader`={key!r} is not one of the train dataloaders {list(loaders)}.")
        return loaders[key]
    if isinstance(loaders, (list, tuple)):
        position = 0 if key is None else key
        if not isinstance(position, int) or not -len(loaders) <= position < len(loaders):
            raise ValueError(f"`probe_dataloader`={key!r} is not a position among the {len(loaders)} train "
                             "dataloaders.")
        return loaders[position]
    return loaders


def draw_probe_set(trainer: Any, source: Any, size: int, seed: int, input_key: int | str | None = None,
                   target_key: int | str | None = None) -> ProbeSet:
    """Draw the probe set from ``source``; a stream under several processes is drawn on rank 0 and broadcast.

    A stream may be sharded by rank (each process reads its own part), so every rank drawing its own probe set
    would give each rank other samples; rank 0's draw is sent to all of them instead.

    Example:
        >>> from types import SimpleNamespace
        >>> data = torch.utils.data.TensorDataset(torch.rand(20, 3), torch.rand(20, 1))
        >>> len(draw_probe_set(SimpleNamespace(world_size=1), data, 8, seed=0))
        8
    """
    def draw() -> ProbeSet:
        return probe_set_from_loader(source, size, seed, input_key, target_key)

    if trainer.world_size == 1 or not is_stream(source):
        return draw()
    probe, error = None, None
    if trainer.is_global_zero:
        try:
            probe = draw()
        except Exception as exc:  # every rank must still take part in the broadcast
            error = exc
    probe = trainer.strategy.broadcast(probe, src=0)
    if error is not None:
        raise error
    if probe is None:
        raise ValueError("rank 0 could not draw the probe set from the stream (see its warning).")
    return probe


def probe_source(value: Any) -> tuple[Any, int | str | None, ProbeSet | None]:
    """``probe_dataloader`` as (a loader or dataset to draw from, a train-dataloader key, a probe given as tensors).

    Convention: a ``DataLoader`` or ``Dataset`` is drawn from (its ``collate_fn`` builds the probe batch); an
    ``(inputs, targets)`` pair of tensors is the probe set itself; a str or int names one of several train
    dataloaders (a key of their dict or a position in their list); ``None``: the (first) train dataloader.

    Example:
        >>> loader, key, given = probe_source((torch.zeros(4, 2), torch.ones(4)))
        >>> loader, key, len(given)
        (None, None, 4)
        >>> probe_source("mnist")[1]
        'mnist'
    """
    if value is None:
        return None, None, None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return None, value, None
    pair = isinstance(value, tuple) and len(value) == 2 and any(isinstance(v, torch.Tensor) for v in value)
    if pair and not all(isinstance(v, torch.Tensor) for v in value):
        raise ValueError("`probe_dataloader`=(inputs, targets) must be two tensors, got "
                         f"({type(value[0]).__name__}, {type(value[1]).__name__}).")
    if pair:
        inputs, targets = value
        if inputs.shape[0] != targets.shape[0] or inputs.shape[0] < 2:
            raise ValueError(f"`probe_dataloader`=(inputs, targets) needs the same number (≥ 2) of inputs "
                             f"({inputs.shape[0]}) and targets ({targets.shape[0]}).")
        return None, None, ProbeSet((inputs, targets), inputs, targets, torch.arange(inputs.shape[0]), 0, 1)
    if isinstance(value, (DataLoader, torch.utils.data.Dataset)) or hasattr(value, "__getitem__"):
        return value, None, None
    raise ValueError("`probe_dataloader` must be a DataLoader, a Dataset, an (inputs, targets) pair of tensors or "
                     f"the key of a train dataloader, got {type(value).__name__}.")


def resumed_stream_probe(batch: Any, indices: Sequence[int], input_key: int | str | None,
                         target_key: int | str | None) -> ProbeSet:
    """The probe set of a stream, rebuilt from the batch a checkpoint saved (a stream is not drawn again).

    Example:
        >>> probe = resumed_stream_probe((torch.zeros(3, 2), torch.ones(3)), [4, 9, 12], None, None)
        >>> probe.indices.tolist(), probe.from_stream
        ([4, 9, 12], True)
    """
    inputs, targets = extract_batch(batch, input_key, target_key)
    return ProbeSet(batch, inputs, targets, torch.tensor(list(indices)), input_key, target_key, from_stream=True)


def saved_probe_batch(probe: ProbeSet | None) -> Any:
    """What a checkpoint keeps of a stream's probe batch: tensors in dicts, lists and tuples, on the CPU, else None.

    A map-style dataset is redrawn from the saved indices instead; only plain containers load with
    ``weights_only=True``.

    Example:
        >>> x, y = torch.zeros(2, 1), torch.ones(2)
        >>> saved_probe_batch(ProbeSet((x, y), x, y, torch.arange(2), from_stream=True))[1].tolist()
        [1.0, 1.0]
    """
    if probe is None or not probe.from_stream:
        return None
    return _plain_cpu(probe.batch)


def _plain_cpu(batch: Any) -> Any:
    """The batch on the CPU when it holds only tensors in dicts, lists and tuples (safe for ``weights_only``)."""
    if isinstance(batch, torch.Tensor):
        return batch.cpu()
    if type(batch) in (list, tuple):
        parts = [_plain_cpu(item) for item in batch]
        return None if any(part is None for part in parts) else type(batch)(parts)
    if type(batch) is dict:
        parts = {key: _plain_cpu(value) for key, value in batch.items()}
        return None if any(value is None for value in parts.values()) or not all(
            isinstance(key, (str, int)) for key in parts) else parts
    return None
