"""One harness for the probe-set Metrics: functional form, numpy reference, batches, and 2-process DDP.

Modelled on torchmetrics' ``MetricTester``: a :class:`MetricCase` names a Metric, its constructor arguments, the
data, the functional form it wraps and an independent numpy reference; :class:`MetricTester` checks

- the functional form against the numpy reference (``run_functional_test``);
- the Metric fed in one update, and in uneven batches, against the reference and against each other, and again
  after ``reset()`` (``run_class_test``, ``run_batched_test``);
- the Metric in 2 processes (gloo on CPU), each updating its own shard, against the reference on every rank
  (``run_ddp_test``): strided shards padded like a ``DistributedSampler`` with ``index``, or contiguous uneven
  shards without it.

The DDP cases share one :class:`DistributedPool`: two processes spawned once, each joined to one process group,
that run one job after another. The harness uses the Metrics' public API only (constructor, update, compute,
reset).
"""

from __future__ import annotations

import os
import queue
import socket
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

Arrays = Mapping[str, np.ndarray]


@dataclass
class MetricCase:
    """One Metric on one data set, with what its results must equal.

    ``functional(x, preds, target)`` is the composition of ``fp_lightning.functional`` calls the Metric wraps;
    ``reference(x, preds, target)`` computes the same quantities with numpy alone (numpy arrays in, numpy arrays
    out). Both return a dict with at least ``keys``. ``rtol`` bounds reference-vs-torch differences (NUFFT and
    float32 filters); batches and shards must agree with one update within ``batch_rtol``.
    """

    name: str
    metric_class: type
    metric_args: dict[str, Any]
    inputs: torch.Tensor
    preds: torch.Tensor
    target: torch.Tensor
    functional: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Mapping[str, torch.Tensor]]
    reference: Callable[[np.ndarray, np.ndarray, np.ndarray], Arrays]
    keys: tuple[str, ...]
    rtol: float = 1e-6
    batch_rtol: float = 1e-10
    batch_sizes: Sequence[int] = field(default=(7, 40, 1))  # cycled until the data run out: uneven batches

    def __repr__(self) -> str:  # pytest ids
        return self.name


def assert_close(got: Mapping[str, Any], expected: Mapping[str, Any], keys: Sequence[str], rtol: float,
                 what: str) -> None:
    """Every key of ``keys`` equal within ``rtol`` (relative; an absolute floor of ``rtol`` for values near 0)."""
    for key in keys:
        actual, wanted = _numpy(got[key]), _numpy(expected[key])
        assert actual.shape == wanted.shape, f"{what}: {key} has shape {actual.shape}, expected {wanted.shape}"
        np.testing.assert_allclose(actual, wanted, rtol=rtol, atol=rtol * 1e-3, err_msg=f"{what}: {key}")


class MetricTester:
    """The checks; each ``run_*`` raises ``AssertionError`` naming the case, the check and the key."""

    def run_functional_test(self, case: MetricCase) -> None:
        """The functional form on all samples equals the numpy reference."""
        got = case.functional(case.inputs, case.preds, case.target)
        assert_close(got, self._reference(case), case.keys, case.rtol, f"{case.name}, functional vs numpy")

    def run_class_test(self, case: MetricCase) -> None:
        """One update equals the reference; after ``reset()`` the same data give the same values."""
        metric = case.metric_class(**case.metric_args)
        metric.update(case.inputs, case.preds, case.target)
        first = _detached(metric.compute())
        assert_close(first, self._reference(case), case.keys, case.rtol, f"{case.name}, Metric vs numpy")
        metric.reset()
        metric.update(case.inputs, case.preds, case.target)
        assert_close(metric.compute(), first, case.keys, case.batch_rtol, f"{case.name}, after reset()")

    def run_batched_test(self, case: MetricCase, batch_sizes: Sequence[int] | None = None) -> None:
        """Uneven batches give the values of one update (the states are concatenated, not averaged)."""
        whole = case.metric_class(**case.metric_args)
        whole.update(case.inputs, case.preds, case.target)
        parts = case.metric_class(**case.metric_args)
        for part in batch_slices(len(case.inputs), batch_sizes or case.batch_sizes):
            parts.update(case.inputs[part], case.preds[part], case.target[part])
        assert_close(parts.compute(), whole.compute(), case.keys, case.batch_rtol, f"{case.name}, batched vs whole")

    def run_ddp_test(self, case: MetricCase, pool: DistributedPool, sharding: str = "strided_padded_index") -> None:
        """Each of 2 processes updates its shard (see :func:`shard`); every rank's ``compute()`` equals the
        reference, and the ranks agree exactly."""
        expected = self._reference(case)
        data = (case.inputs.numpy(), case.preds.numpy(), case.target.numpy())
        results = pool.run(ddp_compute, case.metric_class, case.metric_args, *data, sharding, tuple(case.batch_sizes))
        for rank, result in enumerate(results):
            assert_close(result, expected, case.keys, case.rtol, f"{case.name}, DDP {sharding}, rank {rank}")
        assert_close(results[1], results[0], case.keys, 0.0, f"{case.name}, DDP {sharding}, rank 1 vs 0")

    @staticmethod
    def _reference(case: MetricCase) -> Arrays:
        return case.reference(case.inputs.numpy(), case.preds.numpy(), case.target.numpy())


def batch_slices(n: int, sizes: Sequence[int]) -> list[slice]:
    """Consecutive slices covering ``range(n)``, their lengths cycling through ``sizes``."""
    slices, start, i = [], 0, 0
    while start < n:
        stop = min(n, start + sizes[i % len(sizes)])
        slices.append(slice(start, stop))
        start, i = stop, i + 1
    return slices


def shard(n: int, rank: int, world: int, sharding: str) -> tuple[torch.Tensor, bool]:
    """This rank's sample positions, and whether ``index`` is passed to ``update``.

    ``"strided_padded_index"``: what ``DistributedSampler(shuffle=False)`` gives, rank::world of the positions
    padded to a multiple of world with the first ones (duplicates that ``index`` lets the Metric drop).
    ``"contiguous_uneven"``: rank 0 takes the first ⌈n/2⌉ samples, rank 1 the rest, no padding and no index
    (states of different lengths are gathered).
    """
    if sharding == "strided_padded_index":
        total = -(-n // world) * world
        return torch.arange(rank, total, world) % n, True
    if sharding == "contiguous_uneven":
        bounds = [0, -(-n // world), n] if world == 2 else np.linspace(0, n, world + 1).astype(int).tolist()
        return torch.arange(bounds[rank], bounds[rank + 1]), False
    raise ValueError(f"unknown sharding {sharding!r}")


def ddp_compute(rank: int, world: int, metric_class: type, metric_args: dict[str, Any], inputs: np.ndarray,
                preds: np.ndarray, target: np.ndarray, sharding: str, batch_sizes: Sequence[int]) -> dict[str, Any]:
    """One rank's part of a DDP check: update with its shard in batches, then the synchronised ``compute()``."""
    positions, with_index = shard(len(inputs), rank, world, sharding)
    x, h, y = (torch.from_numpy(a)[positions] for a in (inputs, preds, target))
    metric = metric_class(**metric_args)
    for part in batch_slices(len(positions), batch_sizes):
        metric.update(x[part], h[part], y[part], index=positions[part] if with_index else None)
    return {key: _numpy(value) for key, value in metric.compute().items()}


class DistributedPool:
    """``world_size`` processes (spawned once, gloo on CPU, one process group) that run jobs in lock-step.

    ``run(fn, *args)`` calls ``fn(rank, world_size, *args)`` on every rank and returns the results in rank order.
    An exception on a rank comes back as an ``AssertionError`` with its traceback; a rank that does not answer
    within ``timeout`` seconds fails the call. After a failure the processes are ended (a collective that one rank
    left half-way cannot be trusted) and the next ``run`` spawns fresh ones.
    """

    def __init__(self, world_size: int = 2, timeout: float = 240.0) -> None:
        self.world_size, self.timeout = world_size, timeout
        self._closed = True
        self._start()

    def _start(self) -> None:
        context = mp.get_context("spawn")
        self._jobs = [context.Queue() for _ in range(self.world_size)]
        self._results = context.Queue()
        port = _free_port()
        self._processes = [context.Process(target=_serve, args=(rank, self.world_size, port, self._jobs[rank],
                                                                 self._results), daemon=True)
                           for rank in range(self.world_size)]
        for process in self._processes:
            process.start()
        self._closed = False

    def run(self, fn: Callable[..., Any], *args: Any) -> list[Any]:
        if self._closed:
            self._start()
        for jobs in self._jobs:
            jobs.put((fn, args))
        answers: dict[int, tuple[bool, Any]] = {}
        try:
            while len(answers) < self.world_size:
                rank, ok, value = self._results.get(timeout=self.timeout)
                answers[rank] = (ok, value)
        except queue.Empty:
            self.close()
            raise AssertionError(f"DDP ranks {sorted(set(range(self.world_size)) - set(answers))} did not answer "
                                 f"within {self.timeout:.0f} s") from None
        failures = [f"rank {rank}:\n{value}" for rank, (ok, value) in sorted(answers.items()) if not ok]
        if failures:
            self.close()
            raise AssertionError("DDP job failed on " + "\n".join(failures))
        return [answers[rank][1] for rank in range(self.world_size)]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for jobs in self._jobs:
            jobs.put(None)
        for process in self._processes:
            process.join(timeout=20)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _serve(rank: int, world_size: int, port: int, jobs: Any, results: Any) -> None:
    torch.set_num_threads(1)  # two processes on a small CPU: no oversubscription
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=120))
    try:
        while (job := jobs.get()) is not None:
            fn, args = job
            try:
                results.put((rank, True, fn(rank, world_size, *args)))
            except Exception:  # sent back to the test, which fails with this traceback
                results.put((rank, False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _detached(values: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {key: _numpy(value) for key, value in values.items()}
