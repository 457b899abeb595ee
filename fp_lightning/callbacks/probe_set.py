"""The fixed probe set: the same seeded training samples every epoch and on every rank, split into input/target."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import default_collate

__all__ = ["ProbeSet", "extract_batch", "sample_probe_set", "shard_slice"]

_INPUT_NAMES = ("x", "input", "inputs", "image", "images", "data")
_TARGET_NAMES = ("y", "target", "targets", "label", "labels")


@dataclass(frozen=True)
class ProbeSet:
    """Probe inputs (n, ...) for the model, their targets (n, ...) and their positions in the dataset (n,)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]


def extract_batch(batch: Any, input_key: int | str | None, target_key: int | str | None) -> tuple[Any, Any]:
    """Split a sample or batch into (input, target).

    Tuples and lists use positions (default 0 and 1), dicts use names (default: the first of ``x``, ``input``,
    ``inputs``, ``image``, ``images``, ``data`` and of ``y``, ``target``, ``targets``, ``label``, ``labels``).

    Raises:
        ValueError: the batch holds no target (a bare tensor, a 1-tuple, a dict without a known target name).

    Example:
        >>> extract_batch({"image": 1, "label": 2}, None, None)
        (1, 2)
        >>> extract_batch((5, 6, 7), 0, 2)
        (5, 7)
    """
    if isinstance(batch, Mapping):
        return _pick(batch, input_key, _INPUT_NAMES, "input_key"), _pick(batch, target_key, _TARGET_NAMES,
                                                                          "target_key")
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        i = 0 if input_key is None else input_key
        t = 1 if target_key is None else target_key
        if not isinstance(i, int) or not isinstance(t, int):
            raise ValueError(f"`input_key`/`target_key` must be ints for tuple/list batches, got {i!r}, {t!r}.")
        if len(batch) <= max(i, t):
            raise ValueError(f"the dataset yields {len(batch)} entries per sample; it needs an input and a target "
                             f"(positions {i} and {t}). A dataset with no targets cannot be monitored.")
        return batch[i], batch[t]
    raise ValueError(f"the dataset yields a bare {type(batch).__name__}: no target to compare with. "
                     "Yield (input, target) pairs or pass `probe_inputs`/`probe_targets`.")


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
    dataset: Any, size: int, seed: int, input_key: int | str | None = None, target_key: int | str | None = None
) -> ProbeSet:
    """Draw ``size`` samples of ``dataset`` without replacement with a private seeded generator, in index order.

    The global RNG is not touched, so the user's run is unchanged, and every rank draws the same samples.
    A dataset smaller than ``size`` gives all its samples (the caller warns).
    """
    n = len(dataset)
    if n < 2:
        raise ValueError(f"the training dataset has {n} sample(s); the probe set needs at least 2.")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(n, generator=generator)[: min(size, n)].sort().values
    inputs, targets = zip(*(extract_batch(dataset[int(i)], input_key, target_key) for i in indices))
    return ProbeSet(_as_tensor(default_collate(list(inputs))), _as_tensor(default_collate(list(targets))), indices)


def _as_tensor(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"probe inputs and targets must collate to tensors, got {type(value).__name__}.")
    return value


def shard_slice(n: int, rank: int, world_size: int) -> slice:
    """Contiguous shard of ``range(n)`` for ``rank``: sizes differ by at most one, no padding, no duplicates.

    Example:
        >>> [shard_slice(10, r, 3) for r in range(3)]
        [slice(0, 4, None), slice(4, 7, None), slice(7, 10, None)]
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))
