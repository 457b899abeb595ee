"""Every public callback and Metric pickles and deep-copies, before and after a fit; ``ddp_spawn`` equals one process.

``ddp_spawn`` pickles the callbacks into 2 fresh CPU processes, so the modules of this file are defined at its top level
(a spawned process imports them by name).
"""

import copy
import pickle

import lightning.pytorch as L
import numpy as np
import pytest
import torch

from fp_lightning import FrequencyCurriculum, FrequencyEarlyStopping, FrequencyPrincipleMonitor, FrequencyWeightedLoss
from fp_lightning.metrics import DenoisedLoss, LowHighFrequencyError, ProjectedSpectralError
from fp_lightning.record import load_history
from tests._lightning import loader, regression_data

N_FREQS, DELTAS = 16, [0.02, 0.2]
PROBE = dict(probe_size=201, spectral=ProjectedSpectralError(n_freqs=N_FREQS),
             filtering=LowHighFrequencyError(deltas=DELTAS), probe_batch_size=50, strict=True)


class SpawnRegressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _callbacks_and_metrics():
    return [FrequencyPrincipleMonitor(**PROBE), FrequencyEarlyStopping(), FrequencyCurriculum(),
            ProjectedSpectralError(n_freqs=8), LowHighFrequencyError(deltas=[0.1]), DenoisedLoss()]


@pytest.mark.slow
@pytest.mark.parametrize("make_copy", [copy.deepcopy, lambda obj: pickle.loads(pickle.dumps(obj))],
                         ids=["deepcopy", "pickle"])
def test_every_callback_and_metric_copies_before_and_after_a_fit(tmp_path, make_copy):
    for obj in _callbacks_and_metrics():
        assert type(make_copy(obj)) is type(obj)
    assert type(make_copy(FrequencyWeightedLoss(torch.ones(4)))) is FrequencyWeightedLoss
    monitor = FrequencyPrincipleMonitor(**PROBE)
    stopper = FrequencyEarlyStopping()
    trainer = L.Trainer(max_epochs=2, callbacks=[monitor, stopper], logger=True, default_root_dir=tmp_path,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    # the loader's collate function is a lambda: the copy must not need to pickle it
    data = torch.utils.data.DataLoader(regression_data(), batch_size=32, collate_fn=lambda s: tuple(
        torch.stack(parts) for parts in zip(*s)))
    trainer.fit(SpawnRegressor(), data)
    copied = make_copy(monitor)
    assert copied.history.records["delta_f"] == monitor.history.records["delta_f"]  # the measurements travel
    assert len(copied.history) == 3 and copied.state_dict()["probe_indices"] == monitor.state_dict()["probe_indices"]
    assert make_copy(stopper).state_dict() == stopper.state_dict()
    for metric in (monitor.spectral, monitor.filtering, monitor.denoised):
        original, copied_state = metric.state_dict(), make_copy(metric).state_dict()
        assert original.keys() == copied_state.keys()
        for key, value in original.items():
            assert torch.equal(value, copied_state[key]) if isinstance(value, torch.Tensor) else (
                value == copied_state[key])


@pytest.mark.slow
@pytest.mark.ddp
def test_ddp_spawn_two_cpu_processes_equal_one_process(tmp_path):
    # torch's default "file_descriptor" sharing fails on some containers for any ddp_spawn fit (with or without the
    # monitor: "unable to resize file"); "file_system" sharing works everywhere
    strategy = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")
    try:
        _spawn_and_compare(tmp_path)
    finally:
        torch.multiprocessing.set_sharing_strategy(strategy)


def _spawn_and_compare(tmp_path):
    torch.manual_seed(0)
    module = SpawnRegressor()
    monitor = FrequencyPrincipleMonitor(**PROBE)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp_spawn", callbacks=[monitor],
                        logger=False, default_root_dir=tmp_path, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, loader(regression_data(), shuffle=False))
    # rank 0 wrote the history: 3 recordings (before training and after each epoch) of the 201-sample probe
    history = load_history(tmp_path / "fp_history.npz")
    assert history["epoch"].tolist() == [0, 1, 2] and history["meta"]["probe_size"] == 201
    # the spawned run's final weights came back to this process: one process measures the same on them
    x, y = regression_data().tensors
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:201].sort().values
    with torch.no_grad():
        h = module.eval()(x[idx])
    spectral = ProjectedSpectralError(n_freqs=16, frequencies=history["freqs"].tolist())
    spectral.update(x[idx], h, y[idx])
    lowhigh = LowHighFrequencyError(deltas=DELTAS)
    lowhigh.update(x[idx], h, y[idx])
    np.testing.assert_allclose(history["delta_f"][-1], spectral.compute()["delta_f"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(history["e_low"][-1], lowhigh.compute()["e_low"].numpy(), rtol=1e-5)
    for k, value in zip(history["freqs"].tolist(), history["delta_f"][-1]):
        assert abs(float(trainer.callback_metrics[f"fp/delta_f/k={k}"]) - value) <= 1e-6 * abs(value)
