"""``backend="auto"`` on a CUDA tensor without an importable cufinufft: the exact direct sum, said once, with why.

Runs on the CPU: the import is made to fail (``sys.modules["cufinufft"] = None`` makes ``import cufinufft`` raise
ImportError) and the cached import check is cleared, so the fallback path is the one a machine whose cufinufft
wheel does not load (e.g. a CUDA 12 wheel beside a CUDA 13 build of torch) takes.
"""

from __future__ import annotations

import importlib.abc
import logging
import re
import sys

import pytest
import torch

from fp_lightning.functional import spectrum as spectrum_module

LOGGER = "fp_lightning.functional.spectrum"


@pytest.fixture
def no_cufinufft(monkeypatch):
    """``import cufinufft`` fails; the caches of the import check and of the one-time message start empty."""
    monkeypatch.setitem(sys.modules, "cufinufft", None)
    spectrum_module._cufinufft_import_error.cache_clear()
    spectrum_module._log_direct_fallback.cache_clear()
    yield
    spectrum_module._cufinufft_import_error.cache_clear()
    spectrum_module._log_direct_fallback.cache_clear()


def fallback_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and "cufinufft is not importable" in r.getMessage()]


def test_auto_on_cuda_falls_back_to_direct_and_says_so_once(no_cufinufft, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert not spectrum_module._cufinufft_importable()
    for index in (None, 0, 0):
        device = torch.device("cuda") if index is None else torch.device("cuda", index)
        assert spectrum_module._resolve_backend("auto", device) == "direct"
    lines = fallback_lines(caplog)
    assert len(lines) == 1
    record = lines[0]
    assert record.levelno == logging.INFO
    message = record.getMessage()
    assert "(ModuleNotFoundError: import of cufinufft halted" in message  # the import error's own text
    assert "exact direct sum on the CUDA device" in message
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # no warning, no flood


def test_no_message_on_cpu_or_for_an_explicit_backend(no_cufinufft, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert spectrum_module._resolve_backend("auto", torch.device("cpu")) in ("finufft", "direct")
    assert spectrum_module._resolve_backend("direct", torch.device("cuda")) == "direct"
    with pytest.raises(ImportError, match=r"pip install fp-lightning\[cuda\]"):
        spectrum_module._resolve_backend("cufinufft", torch.device("cuda"))
    assert fallback_lines(caplog) == []
    assert "cufinufft" not in spectrum_module.available_backends("cuda")


class _CudaTwelveWheel(importlib.abc.MetaPathFinder):
    """``import cufinufft`` as a CUDA 12 wheel fails beside a CUDA 13 torch: the loader cannot find the runtime."""

    def find_spec(self, name, path=None, target=None):
        if name == "cufinufft":
            raise OSError("libcudart.so.12: cannot open shared object file: No such file or directory")
        return None


def test_the_message_carries_a_library_load_error(no_cufinufft, monkeypatch, caplog):
    monkeypatch.delitem(sys.modules, "cufinufft")
    monkeypatch.setattr(sys, "meta_path", [_CudaTwelveWheel(), *sys.meta_path])
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert spectrum_module._resolve_backend("auto", torch.device("cuda", 0)) == "direct"
    (record,) = fallback_lines(caplog)
    assert "(OSError: libcudart.so.12: cannot open shared object file" in record.getMessage()


def test_the_import_error_is_read_once(no_cufinufft, monkeypatch):
    assert spectrum_module._cufinufft_import_error().startswith("ModuleNotFoundError")
    monkeypatch.delitem(sys.modules, "cufinufft")  # a later change does not matter: the first answer is cached
    assert spectrum_module._cufinufft_import_error().startswith("ModuleNotFoundError")


def test_the_gpu_check_reports_an_unimportable_cufinufft_and_passes_the_step(tmp_path, monkeypatch):
    """``benchmarks/gpu_check.py``: the ``cufinufft`` step says why cufinufft is unavailable instead of failing,
    and the table marks its row unavailable and its target not measured (the same path as
    ``FP_CHECK_FAIL=cufinufft-import``)."""
    import os
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    monkeypatch.delenv("FP_CHECK_FAIL", raising=False)
    import gpu_check

    env = dict(os.environ)
    gpu_check.hide_cufinufft(env)
    details = gpu_check.step_cufinufft(gpu_check.Log(tmp_path / "gpu_check.log"), env)
    reason = "ImportError: cufinufft hidden by FP_CHECK_FAIL=cufinufft-import (self-test)"
    assert details == {"available": False, "reason": reason}
    assert "cufinufft unavailable: " + reason in (tmp_path / "gpu_check.log").read_text()
    report = {"device": "cuda", "seconds": 1.0,
              "steps": {"cufinufft": {"ok": True, "seconds": 0.5, "error": None, "details": details}},
              "benchmarks": {"spectrum": {"ok": True, "n": 100, "n_freqs": 10, "cufinufft_unavailable": reason,
                                          "backends": {"cufinufft (cuda)": {"unavailable": reason}}}}}
    table = gpu_check.summary_table(report)
    assert re.search(r"step cufinufft +\| unavailable", table)
    assert "cufinufft equals direct to 1e-6 (relative): NOT MEASURED (cufinufft unavailable)" in table
    assert "FAILED" not in table
