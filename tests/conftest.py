"""What the tests share: the settings of their tiny quiet Trainers, and the small regression task as fixtures.

Module-level helpers of a test file import the plain names (``from tests.conftest import SILENT, tiny_trainer``);
tests ask for the fixtures (``make_trainer``, ``regression_set``, ``regression_loader``). The tiny modules and data
themselves live in ``tests/_lightning.py``, which the processes that DDP starts import by name.

Tiers (markers declared in ``pyproject.toml``): ``slow`` long end-to-end runs, ``ddp`` several processes,
``integration`` model classes of other libraries, ``gpu`` a CUDA device. The fast tier is
``python -m pytest -m "not slow and not ddp" -n 2 -q``; the full suite (CI) runs everything.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests._lightning import loader, regression_data

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `-n 2` on 2 cores: one torch thread per worker (and per process it starts), not two threads each fighting for
    # the other worker's core
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

#: what every test Trainer turns off (the progress bar, the model summary), on the CPU
QUIET: dict[str, Any] = dict(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)
#: QUIET, and writes nothing: no logger, no checkpoint
SILENT: dict[str, Any] = dict(QUIET, logger=False, enable_checkpointing=False)
#: monitor arguments for a test of values, not of files: no figures, no history file and report
NO_FILES: dict[str, Any] = dict(log_images=False, history_file=None)
#: QUIET, with the module's scalars logged at every step (the loggers see every batch)
EVERY_STEP: dict[str, Any] = dict(QUIET, log_every_n_steps=1)


def tiny_trainer(root: str | ModuleType = "lightning.pytorch", **kwargs: Any):
    """A ``Trainer`` of ``root`` (``lightning.pytorch`` or ``pytorch_lightning``, a name or the module) with the
    ``SILENT`` settings; ``kwargs`` win."""
    package = importlib.import_module(root) if isinstance(root, str) else root
    return package.Trainer(**{**SILENT, **kwargs})


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., Any]:
    """``tiny_trainer`` writing under the test's ``tmp_path`` (``default_root_dir``, unless given)."""

    def build(root: str | ModuleType = "lightning.pytorch", **kwargs: Any):
        kwargs.setdefault("default_root_dir", tmp_path)
        return tiny_trainer(root, **kwargs)

    return build


@pytest.fixture
def regression_set() -> TensorDataset:
    """The 256-sample regression task of ``tests/_lightning.py`` (a low and a high frequency along x₀)."""
    return regression_data()


@pytest.fixture
def regression_loader(regression_set: TensorDataset) -> DataLoader:
    """``regression_set`` in shuffled batches of 32, with a seeded generator."""
    return loader(regression_set)


#: Tests that run for tens of seconds in their own processes (DDP, the GPU check's CPU run): started first, so
#: that ``-n 2`` overlaps them with the many short tests instead of leaving one of them for the end.
_LONG_FIRST = ("tests/test_gpu_check_cpu.py::test_cpu_check", "tests/test_projection.py::test_subspace_iteration")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the collected tests: the long multi-process ones first, the rest as collected (a stable sort)."""
    items.sort(key=lambda item: not (item.get_closest_marker("ddp") or item.nodeid.startswith(_LONG_FIRST)))
