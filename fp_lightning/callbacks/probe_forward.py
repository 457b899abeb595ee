"""The model's outputs on the probe set, computed the way Lightning runs a batch, without changing training.

Convention:
    Every rank runs the forward pass on its contiguous shard of the probe set (``shard_slice``). Shards are padded
    to the longest shard's length by repeating a sample, so every rank makes the same number of forward calls
    (sharded strategies such as FSDP or DeepSpeed stage 3 need every rank in every forward); the padding's outputs
    are dropped before the shards are gathered in rank order. Each chunk of ``batch_size`` samples goes through the
    Trainer's precision plugin (``convert_input`` and ``forward_context``) as a training batch does, under
    ``eval()`` and ``no_grad``, with the global random state and every submodule's train/eval mode restored after.
    The model's output is reduced to one tensor per chunk (``output_key``) before the chunks are concatenated, and
    cast to float32 when it is in a lower precision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from lightning_utilities.core.apply_func import apply_to_collection

from fp_lightning.callbacks.probe_set import ProbeSet, extract_batch, isolated_rng, shard_slice, slice_batch

__all__ = ["ForwardFn", "ProbeOutputs", "move_batch", "probe_forward", "select_output"]

#: ``forward_fn(module, batch) -> outputs``: how to run the model on a probe batch when ``module(inputs)`` is not it.
ForwardFn = Callable[[torch.nn.Module, Any], Any]
_DEFAULT_OUTPUT_NAMES = ("logits", "preds", "prediction", "predictions", "output", "outputs", "y_hat", "out")


def select_output(outputs: Any, output_key: int | str | None = None) -> torch.Tensor:
    """The tensor of a model's output that the monitor compares with the targets.

    ``output_key=None`` takes a tensor as it is; from a dict or a HuggingFace-style ``ModelOutput`` the ``logits``
    entry (else the first of ``preds``, ``prediction(s)``, ``output(s)``, ``y_hat``, ``out``, else the first tensor
    value); from a tuple, list or namedtuple the first tensor. An int picks a position, a str a key or attribute.

    Raises:
        ValueError: naming ``output_key`` when nothing fits.

    Example:
        >>> select_output({"loss": torch.tensor(1.0), "logits": torch.ones(2, 3)}).shape
        torch.Size([2, 3])
        >>> select_output((torch.zeros(4, 1), torch.ones(4, 8)), output_key=1).shape
        torch.Size([4, 8])
    """
    if output_key is None:
        return _default_output(outputs)
    try:
        if isinstance(output_key, str) and not isinstance(outputs, Mapping):
            chosen = getattr(outputs, output_key)
        else:
            chosen = outputs[output_key]
    except (KeyError, IndexError, AttributeError, TypeError) as error:
        raise ValueError(f"`output_key`={output_key!r} does not select anything from the model's output "
                         f"({_describe(outputs)}).") from error
    if not isinstance(chosen, torch.Tensor):
        raise ValueError(f"`output_key`={output_key!r} selects a {type(chosen).__name__}, not a tensor.")
    return chosen


def _default_output(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        for name in _DEFAULT_OUTPUT_NAMES:
            if isinstance(outputs.get(name), torch.Tensor):
                return outputs[name]
        candidates: Sequence[Any] = list(outputs.values())
    elif isinstance(outputs, Sequence) and not isinstance(outputs, (str, bytes)):
        candidates = outputs
    else:
        candidates = []
    for value in candidates:
        if isinstance(value, torch.Tensor):
            return value
    raise ValueError(f"the model's output ({_describe(outputs)}) holds no tensor to compare with the targets; set "
                     "`output_key`, or `forward_fn` to say how to run the model on a probe batch.")


def _describe(outputs: Any) -> str:
    if isinstance(outputs, Mapping):
        return f"{type(outputs).__name__} with keys {list(outputs)}"
    if isinstance(outputs, Sequence) and not isinstance(outputs, (str, bytes)):
        return f"{type(outputs).__name__} of length {len(outputs)}"
    return type(outputs).__name__


class ProbeOutputs(NamedTuple):
    """The gathered probe outputs (n, ...) and, when a feature layer was named, its outputs (n, d)."""

    outputs: torch.Tensor
    features: torch.Tensor | None


def probe_forward(
    trainer: Any,
    module: torch.nn.Module,
    probe: ProbeSet,
    batch: Any,
    *,
    batch_size: int,
    output_key: int | str | None = None,
    forward_fn: ForwardFn | None = None,
    feature_layer: str | None = None,
) -> ProbeOutputs:
    """Run the model on the whole probe set (``batch``: the probe batch already on the module's device).

    See the module's Convention for sharding, padding, precision and what is restored. ``feature_layer`` names a
    submodule whose output on the probe is captured from the same forward calls (the first tensor it returns).
    Under several processes the shards are gathered, so every rank returns the same tensors.

    Example:
        >>> from types import SimpleNamespace
        >>> from lightning.pytorch.plugins.precision import Precision
        >>> from fp_lightning.callbacks.probe_set import sample_probe_set
        >>> data = torch.utils.data.TensorDataset(torch.rand(10, 3), torch.rand(10, 1))
        >>> probe = sample_probe_set(data, 10, seed=0)
        >>> trainer = SimpleNamespace(global_rank=0, world_size=1, precision_plugin=Precision())  # one process
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        >>> result = probe_forward(trainer, model, probe, probe.batch, batch_size=4, feature_layer="1")
        >>> result.outputs.shape, result.features.shape
        (torch.Size([10, 1]), torch.Size([10, 4]))
    """
    rank, world = trainer.global_rank, trainer.world_size
    shard = shard_slice(len(probe), rank, world)
    longest = math.ceil(len(probe) / world)
    own = torch.arange(shard.start, shard.stop)
    # repeat a sample to the longest shard's length: the same number of forward calls on every rank
    filler = own[-1:] if len(own) else torch.zeros(1, dtype=torch.long)
    index = torch.cat([own, filler.repeat(longest - len(own))])
    outputs, features = [], []
    with _eval_mode(module), torch.no_grad(), isolated_rng(), _captured(module, feature_layer) as captured:
        for start in range(0, longest, batch_size):
            chunk = trainer.precision_plugin.convert_input(slice_batch(batch, index[start:start + batch_size]))
            with trainer.precision_plugin.forward_context():
                out = forward_fn(module, chunk) if forward_fn is not None else module(
                    extract_batch(chunk, probe.input_key, probe.target_key)[0])
            outputs.append(_as_float(select_output(out, output_key)))
            if feature_layer is not None:
                features.append(_as_float(captured.pop()).reshape(outputs[-1].shape[0], -1))
    local = _concat(outputs, "output")[: len(own)]
    local_features = _concat(features, "feature")[: len(own)] if feature_layer is not None else None
    if world == 1:
        return ProbeOutputs(local, local_features)
    gathered = _gather(trainer, local, len(probe))
    gathered_features = None if local_features is None else _gather(trainer, local_features, len(probe))
    return ProbeOutputs(gathered, gathered_features)


def _as_float(tensor: torch.Tensor) -> torch.Tensor:
    """Half, bfloat16 and integer outputs become float32 for the analysis; float32 and float64 are kept."""
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor
    return tensor.float()


def _concat(parts: list[torch.Tensor], what: str) -> torch.Tensor:
    if not parts:
        return torch.empty(0)
    shapes = {tuple(part.shape[1:]) for part in parts}
    if len(shapes) > 1:
        raise ValueError(f"the model's {what} has a different per-sample shape in different probe batches "
                         f"({sorted(shapes)}); set `output_key` or `forward_fn` so that every batch gives the same "
                         "shape (e.g. pad sequences to a fixed length in the collate function).")
    return torch.cat(parts)


@contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """eval() for the block; each submodule's own mode restored after (a user-frozen part stays in eval)."""
    modes = [(submodule, submodule.training) for submodule in module.modules()]
    try:
        module.eval()
        yield
    finally:
        for submodule, training in modes:
            submodule.training = training


class _Capture(list):
    """The outputs a forward hook captured, oldest first."""


@contextmanager
def _captured(module: torch.nn.Module, name: str | None) -> Iterator[_Capture]:
    """Capture the output of submodule ``name`` on every forward call while the block runs."""
    captured = _Capture()
    if name is None:
        yield captured
        return
    try:
        layer = module.get_submodule(name)
    except AttributeError as error:
        names = [n for n, _ in module.named_modules() if n][:12]
        raise ValueError(f"`input_features`={name!r} is not a submodule of the model (some are: {names}).") from error

    def hook(_: torch.nn.Module, __: Any, output: Any) -> None:
        captured.append(_default_output(output).detach())

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def _gather(trainer: Any, local: torch.Tensor, total: int) -> torch.Tensor:
    """Concatenate every rank's shard in rank order (shards padded to equal length for the collective, then cut)."""
    world = trainer.world_size
    sizes = [shard_slice(total, rank, world) for rank in range(world)]
    longest = max(s.stop - s.start for s in sizes)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    gathered = trainer.strategy.all_gather(padded)  # (world, longest, ...)
    return torch.cat([gathered[rank, : s.stop - s.start] for rank, s in enumerate(sizes)])


def move_batch(batch: Any, device: torch.device) -> Any:
    """Every tensor of a (nested) batch on ``device``.

    Example:
        >>> move_batch((torch.zeros(2), "a"), torch.device("cpu"))[1]
        'a'
    """
    return apply_to_collection(batch, torch.Tensor, lambda tensor: tensor.to(device))
