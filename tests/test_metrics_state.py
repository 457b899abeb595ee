"""Frozen fits are Metric state: state_dict round trips, .to(), reset(), and the monitor's checkpoint (both formats)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.functional import low_high_errors, principal_projection
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests.conftest import tiny_trainer


def _data(seed: int, scale: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs stretched by ``scale`` per axis (so the principal direction is the stretched axis), targets, outputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(120, 3, generator=g, dtype=torch.float64) * torch.tensor(scale, dtype=torch.float64)
    y = torch.sin(7 * x.sum(dim=1, keepdim=True)) + 0.3 * torch.cos(19 * x[:, :1])
    h = y + 0.05 * torch.randn(120, 1, generator=g, dtype=torch.float64)
    return x, h, y


def _through_bytes(state: dict) -> dict:
    """What a checkpoint file gives back: saved with torch.save and loaded with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _fitted_spectral() -> ProjectedSpectralError:
    metric = ProjectedSpectralError(n_freqs=24, max_freqs=5)
    metric.update(*_data(0, (1.0, 0.2, 0.1)))
    metric.compute()
    return metric


def test_spectral_fits_survive_state_dict_without_refitting():
    fitted = _fitted_spectral()
    restored = ProjectedSpectralError(n_freqs=24, max_freqs=5)
    restored.load_state_dict(_through_bytes(fitted.state_dict()))
    new_data = _data(1, (0.1, 0.2, 3.0))  # its own fit would project on the third axis
    fitted.reset()
    for metric in (fitted, restored):
        metric.update(*new_data)
    expected, got = fitted.compute(), restored.compute()
    assert torch.equal(got["freqs"], expected["freqs"])
    assert torch.equal(got["delta_f"], expected["delta_f"])
    assert torch.equal(got["cutoff"], expected["cutoff"])
    assert torch.equal(restored.projection.directions, fitted.projection.directions)
    assert torch.equal(restored.projection.offset, fitted.projection.offset)
    assert torch.equal(restored.projection.scale, fitted.projection.scale)
    assert torch.equal(restored.projection.eigenvalues, fitted.projection.eigenvalues)
    # the frozen direction is the first data set's (first axis), not the one the new data would give
    own_fit = principal_projection(new_data[0])
    assert int(restored.projection.directions[:, 0].abs().argmax()) == 0
    assert int(own_fit.directions[:, 0].abs().argmax()) == 2


def test_filtering_deltas_survive_state_dict_without_refitting():
    x, h, y = _data(0, (1.0, 1.0, 1.0))
    fitted = LowHighFrequencyError(n_deltas=3)
    fitted.update(x, h, y)
    deltas = fitted.compute()["deltas"]
    restored = LowHighFrequencyError(n_deltas=3)
    restored.load_state_dict(_through_bytes(fitted.state_dict()))
    x2, h2, y2 = _data(1, (10.0, 10.0, 10.0))  # 100× the squared distances: "auto" would pick 100× the δ
    restored.update(x2, h2, y2)
    out = restored.compute()
    assert torch.equal(out["deltas"], deltas)
    e_low, e_high = low_high_errors(x2, y2, h2, deltas.tolist())  # the direct computation at the frozen δ
    torch.testing.assert_close(out["e_low"], e_low, rtol=1e-5, atol=0)
    torch.testing.assert_close(out["e_high"], e_high, rtol=1e-5, atol=0)


def test_unfitted_state_round_trips_and_unfits():
    fitted = _fitted_spectral()
    fitted.load_state_dict(_through_bytes(ProjectedSpectralError(n_freqs=24, max_freqs=5).state_dict()))
    assert fitted.projection is None and fitted.fitted_freqs is None and fitted.fitted_cutoff is None
    lowhigh = LowHighFrequencyError(deltas=[0.1, 0.2])
    lowhigh.load_state_dict(LowHighFrequencyError().state_dict())
    assert lowhigh.fitted_deltas is None
    # fitting again gives exactly what a fresh metric fits
    fresh = ProjectedSpectralError(n_freqs=24, max_freqs=5)
    data = _data(2, (0.3, 1.0, 0.2))
    for metric in (fitted, fresh):
        metric.reset()
        metric.update(*data)
    assert torch.equal(fitted.compute()["delta_f"], fresh.compute()["delta_f"])
    assert torch.equal(fitted.projection.directions, fresh.projection.directions)


def test_reset_keeps_fits_and_state_dict_holds_only_fits():
    metric = _fitted_spectral()
    before = {key: value.clone() for key, value in metric.state_dict().items() if isinstance(value, torch.Tensor)}
    metric.reset()
    after = metric.state_dict()
    assert set(before) == {"_projection_directions", "_projection_offset", "_projection_scale",
                           "_projection_eigenvalues", "_fitted_freqs", "_fitted_cutoff"}
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert after["_extra_state"] == {"resolved_output_transform": "identity"}


@pytest.mark.parametrize("target", [torch.float64, torch.float32, "cpu", torch.device("cpu")])
def test_to_keeps_fits_and_their_dtypes(target):
    metric = _fitted_spectral()
    lowhigh = LowHighFrequencyError(n_deltas=2)
    lowhigh.update(*_data(0, (1.0, 1.0, 1.0)))
    lowhigh.compute()
    expected = {**metric.state_dict(), **lowhigh.state_dict()}
    before = metric.compute()
    metric, lowhigh = metric.to(target), lowhigh.to(target)
    got = {**metric.state_dict(), **lowhigh.state_dict()}
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
    assert metric.projection.directions.dtype == torch.float64 and metric.fitted_freqs.dtype == torch.int64
    # compute() after the move recomputes (the stored samples were cast too, so float32 rounds) with the same fits;
    # the spectra stay complex (a cast of the cached result would have dropped their imaginary part)
    out = metric.compute()
    assert out["target_spectrum"].is_complex() and torch.equal(out["freqs"], before["freqs"])
    torch.testing.assert_close(out["target_spectrum"], before["target_spectrum"], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["delta_f"], before["delta_f"], rtol=1e-4, atol=0)


def test_old_metric_state_dict_without_fits_keeps_current_fits():
    metric = _fitted_spectral()
    freqs, directions = metric.fitted_freqs.clone(), metric.projection.directions.clone()
    metric.load_state_dict({"_extra_state": {"resolved_output_transform": "identity"}})
    assert torch.equal(metric.fitted_freqs, freqs) and torch.equal(metric.projection.directions, directions)


def test_fit_setters_validate_and_accept_sequences():
    metric = ProjectedSpectralError(n_freqs=16)
    metric.fitted_freqs = [2, 5]
    metric.fitted_cutoff = 3
    assert metric.fitted_freqs.dtype == torch.int64 and metric.fitted_cutoff == 3
    with pytest.raises(ValueError, match="`projection`"):
        metric.projection = torch.ones(3, 1)
    lowhigh = LowHighFrequencyError()
    lowhigh.fitted_deltas = [0.5]
    assert lowhigh.fitted_deltas.dtype == torch.float64


def test_filter_precision_names_the_dtype():
    assert LowHighFrequencyError(filter_precision="float64").filter_dtype is torch.float64
    with pytest.raises(ValueError, match="`filter_precision`"):
        LowHighFrequencyError(filter_precision="half")


# ---------------------------------------------------------------------------------------------- the monitor
class _Regressor(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(128, 2, generator=g) * torch.tensor([1.0, 0.3])
    y = torch.sin(6 * x[:, :1]) + 0.2 * torch.sin(25 * x[:, :1])
    return DataLoader(TensorDataset(x, y), batch_size=32)  # no shuffling: a resumed run replays the same batches


def _monitor() -> FrequencyPrincipleMonitor:
    return FrequencyPrincipleMonitor(probe_size=128, log_images=False, history_file=None,
                                     spectral=ProjectedSpectralError(n_freqs=16, max_freqs=3),
                                     filtering=LowHighFrequencyError(n_deltas=2))


def _train(root: Path, epochs: int, monitor: FrequencyPrincipleMonitor, ckpt_path: str | None = None,
           checkpoint: ModelCheckpoint | None = None) -> None:
    seed_everything(0, verbose=False)
    callbacks = [monitor] + ([checkpoint] if checkpoint is not None else [])
    trainer = tiny_trainer(max_epochs=epochs, callbacks=callbacks, default_root_dir=root,
                           enable_checkpointing=checkpoint is not None)
    trainer.fit(_Regressor(), _loader(), ckpt_path=ckpt_path)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FrequencyPrincipleMonitor]:
    """Two epochs of a run, checkpointed, and its monitor."""
    root = tmp_path_factory.mktemp("run")
    first = _monitor()
    _train(root, 2, first, checkpoint=ModelCheckpoint(dirpath=root / "ckpt", save_last=True))
    return root / "ckpt" / "last.ckpt", first


def test_checkpoint_holds_the_metrics_state_and_loads_weights_only(interrupted):
    path, first = interrupted
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["callbacks"][first.state_key]
    assert "projection" not in state and "auto_output_transform" not in state
    assert torch.equal(state["spectral"]["_projection_directions"], first.spectral.projection.directions)
    assert state["spectral"]["_fitted_freqs"].tolist() == first.history.freqs
    assert state["filtering"]["_fitted_deltas"].tolist() == first.history.deltas


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(interrupted, tmp_path):
    path, first = interrupted
    full = _monitor()
    _train(tmp_path / "full", 4, full)
    resumed = _monitor()
    _train(tmp_path / "resumed", 4, resumed, ckpt_path=str(path))
    assert resumed.history.records["epoch"] == [0, 1, 2, 3, 4]
    assert resumed.history.freqs == full.history.freqs and resumed.history.deltas == full.history.deltas
    assert torch.equal(resumed.spectral.projection.directions, full.spectral.projection.directions)
    np.testing.assert_allclose(np.array(resumed.history.records["delta_f"]),
                               np.array(full.history.records["delta_f"]), rtol=1e-6)
    np.testing.assert_allclose(np.array(resumed.history.records["e_low"]),
                               np.array(full.history.records["e_low"]), rtol=1e-6)


