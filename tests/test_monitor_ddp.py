import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests._lightning import make_module, regression_data
from tests.ddp_fit import DELTAS, MONITOR_KW, N_FREQS

pytestmark = [pytest.mark.ddp, pytest.mark.slow]  # two CPU processes launched per test
REPO = Path(__file__).resolve().parents[1]


def _single_process_values(state_dict, freqs):
    """The monitor's quantities recomputed in one process on the same probe samples and weights."""
    x, y = regression_data().tensors
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[: MONITOR_KW["probe_size"]].sort().values
    x, y = x[idx], y[idx]
    module = make_module()
    module.load_state_dict(state_dict)
    module.eval()
    with torch.no_grad():
        h = module(x)
    spectral = ProjectedSpectralError(n_freqs=N_FREQS, frequencies=freqs)
    spectral.update(x, h, y)
    lowhigh = LowHighFrequencyError(deltas=DELTAS)
    lowhigh.update(x, h, y)
    return spectral.compute(), lowhigh.compute()


def _run_ddp(out: Path, *extra: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # own process group, so a hung rank can be killed together with its launcher
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "ddp_fit.py"), str(out), *extra], env=env,
                            cwd=REPO, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # the monitor logs identical values on every rank straight to the loggers: Lightning's sync_dist advice may
    # name the user's own keys (the module logs train_loss), never the monitor's
    assert "self.log('train_loss', ..., sync_dist=True)" in stderr and "self.log('fp/" not in stderr
    return [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_ddp_rank_sharded_stream_and_early_stopping_same_on_every_rank(tmp_path):
    ranks = _run_ddp(tmp_path, "early-stopping")
    # the stream is sharded by rank; rank 0 drew the probe set and every rank measured on it
    assert ranks[0]["probe_indices"] == ranks[1]["probe_indices"] and ranks[0]["metrics"] == ranks[1]["metrics"]
    stops = [r["stop"] for r in ranks]
    assert stops[0] == stops[1]
    assert stops[0]["criterion"] == "low_converged"
    assert stops[0]["epoch"] < 5  # stopped before max_epochs=6, on both ranks together


def test_ddp_two_cpu_processes_equal_single_process(tmp_path):
    ranks = _run_ddp(tmp_path)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # every rank gets the same numbers
    # 201 probe samples on 2 ranks (101 + 100), batches of 50: 3 forward calls per recording on both ranks (the
    # short shard is padded), as sharded strategies need; 3 recordings
    assert ranks[0]["probe_calls"] == [50, 50, 1] * 3 and ranks[1]["probe_calls"] == [50, 50, 1] * 3
    history = ranks[0]["history"]
    assert history["records"]["epoch"] == [0, 1, 2]
    freqs = history["freqs"]
    spectral, lowhigh = _single_process_values(torch.load(tmp_path / "final.pt"), freqs)
    np.testing.assert_allclose(history["records"]["delta_f"][-1], spectral["delta_f"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(history["records"]["e_low"][-1], lowhigh["e_low"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(history["records"]["e_high"][-1], lowhigh["e_high"].numpy(), rtol=1e-5)
    for k, value in zip(freqs, spectral["delta_f"]):
        assert abs(ranks[1]["metrics"][f"fp/delta_f/k={k}"] - float(value)) <= 1e-5 * float(value)
