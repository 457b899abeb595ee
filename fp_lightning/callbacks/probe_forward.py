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

import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from fp_lightning.callbacks.probe_set import (
    _TARGET_NAMES,
    ProbeSet,
    _Attributes,
    attribute_names,
    extract_batch,
    is_sliceable,
    isolated_rng,
    shard_slice,
    slice_batch,
)

__all__ = ["ForwardFn", "ProbeOutputs", "callable_features", "feature_calls_message", "feature_choice", "model_call",
           "move_batch", "probe_forward", "probe_points", "select_output"]

#: ``forward_fn(module, batch) -> outputs``: how to run the model on a probe batch when ``module(inputs)`` is not it.
ForwardFn = Callable[[torch.nn.Module, Any], Any]
#: Integer input dtypes that are ids rather than coordinates (uint8 images are coordinates).
_ID_DTYPES = (torch.int16, torch.int32, torch.int64)
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
    """The gathered probe outputs (n, ...), the feature layer's outputs (n, d) and how often it ran per forward."""

    outputs: torch.Tensor
    features: torch.Tensor | None
    feature_calls: int = 0


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
    feature_call: int = 0,
) -> ProbeOutputs:
    """Run the model on the whole probe set (``batch``: the probe batch already on the module's device).

    See the module's Convention for sharding, padding, precision and what is restored. ``feature_layer`` names a
    submodule whose output on the probe is captured from the same forward calls (the first tensor it returns);
    when the submodule runs several times per forward (a shared embedding of source and target), call number
    ``feature_call`` (0: the first, -1: the last) is kept and :attr:`ProbeOutputs.feature_calls` says how many there
    were. Under several processes the shards are gathered, so every rank returns the same tensors. A row probe
    (``probe.rows``, e.g. nodes of one graph) runs the model once on the whole batch on every rank.

    The model is called as ``forward_fn(module, batch)`` when given, else by its signature
    (:func:`model_call`): ``module(**fields)`` when every required parameter of ``forward`` is a field of a dict or
    object batch (HF models, ``torch_geometric`` models taking ``x, edge_index``), else ``module(inputs)``.

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
    call = forward_fn if forward_fn is not None else model_call(module, probe)
    if probe.rows is not None:
        return _row_forward(trainer, module, probe, batch, call, output_key, feature_layer, feature_call)
    rank, world = trainer.global_rank, trainer.world_size
    shard = shard_slice(len(probe), rank, world)
    longest = math.ceil(len(probe) / world)
    own = torch.arange(shard.start, shard.stop)
    # repeat a sample to the longest shard's length: the same number of forward calls on every rank
    filler = own[-1:] if len(own) else torch.zeros(1, dtype=torch.long)
    index = torch.cat([own, filler.repeat(longest - len(own))])
    outputs, features, calls = [], [], 0
    with _eval_mode(module), torch.no_grad(), isolated_rng(), _captured(module, feature_layer) as captured:
        for start in range(0, longest, batch_size):
            chunk = _chunk(probe, batch, index[start:start + batch_size], module)
            out = _run(trainer, module, call, chunk, forward_fn is None)
            outputs.append(_as_float(select_output(out, output_key)))
            if feature_layer is not None:
                calls = max(calls, len(captured))
                features.append(_feature_of_call(captured, feature_layer, feature_call, outputs[-1].shape[0]))
                captured.clear()
    local = _concat(outputs, "output")[: len(own)]
    local_features = _concat(features, "feature")[: len(own)] if feature_layer is not None else None
    if world == 1:
        return ProbeOutputs(local, local_features, calls)
    gathered = _gather(trainer, local, len(probe))
    gathered_features = None if local_features is None else _gather(trainer, local_features, len(probe))
    return ProbeOutputs(gathered, gathered_features, calls)


def _row_forward(trainer: Any, module: torch.nn.Module, probe: ProbeSet, batch: Any, call: ForwardFn,
                 output_key: int | str | None, feature_layer: str | None, feature_call: int) -> ProbeOutputs:
    """One forward call on the whole batch (every rank alike), the outputs and features taken at ``probe.rows``."""
    assert probe.rows is not None
    with _eval_mode(module), torch.no_grad(), isolated_rng(), _captured(module, feature_layer) as captured:
        out = _as_float(select_output(_run(trainer, module, call, batch, True), output_key))
        total = int(out.shape[0])
        feature = (None if feature_layer is None else _feature_of_call(captured, feature_layer, feature_call, total))
    rows = probe.rows.to(out.device)
    if total <= int(probe.rows.max()):
        raise ValueError(f"the model's output has {total} rows, but the probe's targets have a row per node or item "
                         f"(at least {int(probe.rows.max()) + 1}); select the per-row output with `output_key` or "
                         "`forward_fn`.")
    return ProbeOutputs(out[rows], None if feature is None else feature[rows.to(feature.device)], len(captured))


def _chunk(probe: ProbeSet, batch: Any, index: torch.Tensor, module: torch.nn.Module) -> Any:
    """Samples ``index`` of the probe batch: sliced, or collated anew from the samples when slicing cannot reach."""
    if probe.samples is None or probe.collate is None:
        if is_sliceable(batch):
            return slice_batch(batch, index)
        if torch.equal(index, torch.arange(len(probe))):
            return batch  # the whole probe in one call: nothing to slice
        raise ValueError(f"the probe batch is a {type(batch).__name__}, which cannot be cut into chunks; set "
                         f"`probe_batch_size` ≥ {len(probe)} or pass `forward_fn`.")
    with isolated_rng():
        chunk = probe.collate([probe.samples[int(i)] for i in index])
    first = next(module.parameters(), None)
    return chunk if first is None else move_batch(chunk, first.device)


def _run(trainer: Any, module: torch.nn.Module, call: ForwardFn, chunk: Any, by_signature: bool) -> Any:
    """One forward call through the precision plugin; a failing default call names ``forward_fn``."""
    chunk = trainer.precision_plugin.convert_input(chunk)
    try:
        with trainer.precision_plugin.forward_context():
            return call(module, chunk)
    except Exception as error:
        if not by_signature:
            raise
        how = getattr(call, "description", "module(inputs)")
        raise ValueError(f"the model failed on a probe batch called as {how}: {type(error).__name__}: "
                         f"{str(error).rstrip('.')}. Pass `forward_fn` to say how to run it, e.g. "
                         f"forward_fn={_forward_fn_example(chunk)}") from error


def _forward_fn_example(batch: Any) -> str:
    if isinstance(batch, Mapping):
        return "lambda module, batch: module(**batch)"
    if isinstance(batch, Sequence) and not isinstance(batch, (str, bytes)):
        return "lambda module, batch: module(batch[0])"
    return "lambda module, batch: module(batch)"


class _SignatureCall:
    """``module(**fields)`` or ``module(inputs)``, as decided by :func:`model_call` (picklable, describes itself)."""

    def __init__(self, names: tuple[str, ...] | None, input_key: int | str | None, target_key: int | str | None,
                 everything: bool = False) -> None:
        self.names, self.input_key, self.target_key, self.everything = names, input_key, target_key, everything
        if names is None:
            self.description = "module(inputs)"
        elif everything:
            self.description = "module(**batch)"
        else:
            self.description = "module(" + ", ".join(f"{name}=batch.{name}" for name in names) + ")"

    def __call__(self, module: torch.nn.Module, batch: Any) -> Any:
        if self.names is None:
            return module(extract_batch(batch, self.input_key, self.target_key)[0])
        fields = batch if isinstance(batch, Mapping) else _Attributes(batch)
        if self.everything:
            return module(**dict(fields))
        return module(**{name: fields[name] for name in self.names if name in fields})


def model_call(module: torch.nn.Module, probe: ProbeSet) -> ForwardFn:
    """How the monitor calls ``module`` on a probe batch when no ``forward_fn`` is given.

    Convention: for a dict batch or an object batch (attributes), when ``forward`` names at least one field of the
    batch and every parameter without a default is one of them, the model is called with those fields as keyword
    arguments (``model(**batch)``, as HF models and ``torch_geometric`` models expect; the target field only when
    ``forward`` requires it). A ``forward(**kwargs)`` with a dict batch gets the whole dict. Anything else:
    ``module(inputs)`` with the input part of the batch.

    Example:
        >>> class Tagger(torch.nn.Module):
        ...     def forward(self, input_ids, attention_mask=None, labels=None):
        ...         return input_ids.float()
        >>> from fp_lightning.callbacks.probe_set import ProbeSet
        >>> batch = {"input_ids": torch.ones(2, 3), "attention_mask": torch.ones(2, 3), "labels": torch.zeros(2)}
        >>> model_call(Tagger(), ProbeSet(batch, None, batch["labels"], torch.arange(2))).description
        'module(input_ids=batch.input_ids, attention_mask=batch.attention_mask)'
    """
    positional = _SignatureCall(None, probe.input_key, probe.target_key)
    batch = probe.batch
    if isinstance(batch, Mapping):
        fields = set(map(str, batch))
    elif is_sliceable(batch) or isinstance(batch, torch.Tensor):
        return positional
    else:
        fields = set(attribute_names(batch))
    try:
        parameters = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return positional
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not named and any(p.kind is p.VAR_KEYWORD for p in parameters) and isinstance(batch, Mapping):
        return _SignatureCall((), probe.input_key, probe.target_key, everything=True)
    required = {p.name for p in named if p.default is p.empty}
    target_name = probe.target_key if isinstance(probe.target_key, str) else next(
        (name for name in _TARGET_NAMES if name in fields), None)
    chosen = tuple(p.name for p in named if p.name in fields and (p.name != target_name or p.name in required))
    if not chosen or not required <= set(chosen):
        return positional
    return _SignatureCall(chosen, probe.input_key, probe.target_key)


def _feature_of_call(captured: list[torch.Tensor], name: str, call: int, rows: int) -> torch.Tensor:
    """The output of call ``call`` of the feature layer in one forward, (rows, d)."""
    if not captured:
        raise ValueError(f"`input_features`={name!r} did not run during the forward pass; name a submodule the "
                         "forward calls, or pass a callable.")
    if not -len(captured) <= call < len(captured):
        raise ValueError(f"`input_features` asks for call {call} of {name!r}, which ran {len(captured)} time(s) per "
                         "forward.")
    return _as_float(captured[call]).reshape(rows, -1)


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
    """Every tensor of a (nested) batch on ``device``, and objects with a ``to`` method (``torch_geometric`` batches).

    Example:
        >>> move_batch((torch.zeros(2), "a"), torch.device("cpu"))[1]
        'a'
    """
    return move_data_to_device(batch, device)


# ---------------------------------------------------------------------- the space the monitor measures in
def feature_choice(value: Any) -> tuple[str | None, int]:
    """``input_features`` as (submodule name or ``None``, which of its calls per forward to keep).

    Example:
        >>> feature_choice("embedding"), feature_choice(("model.embedding", 1)), feature_choice(None)
        (('embedding', 0), ('model.embedding', 1), (None, 0))
    """
    if value is None or callable(value):
        return None, 0
    if isinstance(value, str):
        return value, 0
    if (isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool)):
        return value[0], value[1]
    raise ValueError("`input_features` must be None, the name of a submodule (e.g. 'embedding'), a (name, call) "
                     "pair such as ('embedding', 1) for the second call per forward, or a callable inputs -> "
                     f"(n, d) tensor; got {value!r}.")


def feature_calls_message(name: str | None, call: int, calls: int) -> str | None:
    """What to tell a user whose feature layer runs several times per forward (``None`` when it ran once).

    Example:
        >>> feature_calls_message("embedding", 0, 1) is None
        True
    """
    if name is None or calls <= 1:
        return None
    other = 1 if call == 0 else 0
    return (f"FrequencyPrincipleMonitor: `input_features`={name!r} runs {calls} times per forward call; the "
            f"features are its call {call} (0 = first). Pass input_features=({name!r}, {other}) to use another "
            "call, or a callable inputs -> (n, d) features.")


def input_part(probe: ProbeSet, batch: Any) -> Any:
    """The input part of the probe batch; for a row probe, its rows (nodes) of the whole batch.

    Example:
        >>> from fp_lightning.callbacks.probe_set import ProbeSet
        >>> x, y = torch.zeros(3, 2), torch.ones(3)
        >>> input_part(ProbeSet((x, y), x, y, torch.arange(3)), (x, y)).shape
        torch.Size([3, 2])
    """
    inputs = extract_batch(batch, probe.input_key, probe.target_key)[0]
    rows = probe.rows
    if rows is not None and isinstance(inputs, torch.Tensor) and inputs.ndim and inputs.shape[0] > len(rows):
        inputs = inputs[rows.to(inputs.device)]
    return inputs


def probe_points(probe: ProbeSet, batch: Any, warn: Callable[[str, str], None]) -> torch.Tensor:
    """The probe inputs as points of the projection and the filter, checked (one row per probe sample).

    ``warn(key, message)`` receives the notice for integer id inputs (token ids).

    Example:
        >>> from fp_lightning.callbacks.probe_set import ProbeSet
        >>> x, y = torch.zeros(3, 2), torch.ones(3)
        >>> probe_points(ProbeSet((x, y), x, y, torch.arange(3)), (x, y), warn=print).shape
        torch.Size([3, 2])
    """
    inputs = input_part(probe, batch)
    if not isinstance(inputs, torch.Tensor):
        raise ValueError(f"the probe inputs are a {type(inputs).__name__}, not a tensor; set `input_features` (a "
                         "submodule name or a callable) to say in which space to measure, or `input_key`.")
    n = len(probe)
    if inputs.ndim == 0 or inputs.shape[0] != n:
        raise ValueError(f"the probe inputs have {inputs.shape[0] if inputs.ndim else 0} rows for {n} probe "
                         "samples (a batch of graphs keeps every node's features in one table); set "
                         "`input_features` to a submodule whose output has one row per sample (e.g. the "
                         "graph-pooling layer: input_features='pool'), or `input_key`.")
    if inputs.dtype in _ID_DTYPES:
        warn("ids", f"FrequencyPrincipleMonitor: the probe inputs are {inputs.dtype} (token ids?); distances "
                    "between ids mean little, so Δ_F and e_low/e_high are computed on the raw ids. Set "
                    "`input_features` (e.g. the embedding layer's name).")
    return inputs


def callable_features(function: Callable[[Any], torch.Tensor], probe: ProbeSet, batch: Any,
                      batch_size: int) -> torch.Tensor:
    """``function(inputs)`` over the probe in chunks of ``batch_size``, as (n, d) floats (``no_grad``, RNG kept).

    Example:
        >>> from fp_lightning.callbacks.probe_set import ProbeSet
        >>> x, y = torch.arange(6.0).reshape(3, 2), torch.ones(3)
        >>> callable_features(lambda v: v.sum(1, keepdim=True), ProbeSet((x, y), x, y, torch.arange(3)), (x, y), 2)
        tensor([[1.],
                [5.],
                [9.]])
    """
    inputs = input_part(probe, batch)
    n = len(probe)
    with torch.no_grad(), isolated_rng():
        parts = [function(slice_batch(inputs, slice(s, s + batch_size))) for s in range(0, n, batch_size)]
    features = torch.cat([torch.as_tensor(part).reshape(part.shape[0], -1) for part in parts])
    if features.shape[0] != n:
        raise ValueError(f"`input_features` returned {features.shape[0]} rows for {n} probe samples.")
    return features if features.is_floating_point() else features.float()
