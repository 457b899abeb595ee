import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.callbacks import load_history
from fp_lightning.functional import low_high_errors, nufft_spectrum, principal_projection, relative_spectral_error
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests._lightning import DictDataset, loader, make_module, regression_data
from tests.conftest import EVERY_STEP

TRAINER_KW = EVERY_STEP


def _fit(tmp_path, epochs=3, monitor=None, module=None, data=None, logger=True, **kw):
    seed_everything(0, verbose=False)
    module = module() if callable(module) else make_module()  # built after seeding: same initial weights
    callbacks = [monitor] if monitor is not None else []
    log = TensorBoardLogger(tmp_path, name="tb") if logger is True else logger
    trainer = Trainer(max_epochs=epochs, callbacks=callbacks, logger=log, default_root_dir=tmp_path, **TRAINER_KW,
                      **kw)
    trainer.fit(module, loader(data if data is not None else regression_data()))
    return trainer, module


@pytest.mark.slow
def test_logs_keys_and_values_match_direct_computation(tmp_path):
    data = regression_data()
    monitor = FrequencyPrincipleMonitor(probe_size=200, probe_batch_size=64,
                                        spectral=ProjectedSpectralError(n_freqs=24),
                                        filtering=LowHighFrequencyError(deltas=[0.01, 0.1]))
    trainer, module = _fit(tmp_path, monitor=monitor, data=data)
    metrics = trainer.callback_metrics
    freqs = monitor.history.freqs
    for k in freqs:
        assert f"fp/delta_f/k={k}" in metrics
    for key in ("fp/e_low/delta=0.01", "fp/e_high/delta=0.1", "fp/loss_low", "fp/loss_high", "fp/low_share"):
        assert key in metrics
    # independent recomputation on the final model, the same probe samples
    idx = torch.randperm(256, generator=torch.Generator().manual_seed(0))[:200].sort().values
    x, y = data.tensors[0][idx], data.tensors[1][idx]
    module.eval()
    with torch.no_grad():
        h = module(x)
    coords = principal_projection(x).coords[:, 0]
    fy, fh = nufft_spectrum(coords, y.double(), 24, backend="direct"), nufft_spectrum(coords, h.double(), 24,
                                                                                      backend="direct")
    expected = relative_spectral_error(fy[freqs], fh[freqs])
    got = torch.tensor([float(metrics[f"fp/delta_f/k={k}"]) for k in freqs], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-4)
    e_low, e_high = low_high_errors(x, y, h, [0.01, 0.1])
    assert float(metrics["fp/e_low/delta=0.1"]) == pytest.approx(float(e_low[1]), rel=1e-4)
    assert float(metrics["fp/e_high/delta=0.01"]) == pytest.approx(float(e_high[0]), rel=1e-4)


@pytest.mark.slow
def test_history_file_and_panels(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=128, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(n_deltas=2))
    trainer, _ = _fit(tmp_path, epochs=2, monitor=monitor)
    saved = load_history(f"{trainer.log_dir}/fp_history.npz")
    assert saved["epoch"].tolist() == [0, 1, 2]
    assert saved["delta_f"].shape == (3, len(saved["freqs"]))
    assert saved["e_low"].shape == (3, 2)
    assert np.isnan(saved["low_share"][0]) and np.isfinite(saved["low_share"][1:]).all()
    raw = np.load(f"{trainer.log_dir}/fp_history.npz")  # loadable without the package
    assert np.allclose(raw["delta_f"], monitor.history.as_arrays()["delta_f"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0}).Reload()
    images = events.Tags()["images"]
    assert "fp/delta_f_heatmap" in images and "fp/spectra" in images
    assert "fp/low_high_heatmap" in images  # every δ in one panel
    assert len(events.Images("fp/delta_f_heatmap")) == 3


@pytest.mark.slow
def test_never_changes_training(tmp_path):
    """Same seeded run with dropout (uses the RNG) with and without the monitor: identical weights."""
    _, plain = _fit(tmp_path / "a", module=lambda: make_module(dropout=0.3), logger=False)
    monitor = FrequencyPrincipleMonitor(probe_size=100, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    _, watched = _fit(tmp_path / "b", monitor=monitor, module=lambda: make_module(dropout=0.3), logger=False)
    for p, q in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(p, q)
    assert len(monitor.history) == 4


def test_restores_each_submodule_mode(tmp_path):
    from fp_lightning.callbacks.probe_forward import _eval_mode
    from fp_lightning.callbacks.probe_set import isolated_rng

    module = make_module(dropout=0.5)
    module.train()
    module.net[2].eval()  # a user-frozen submodule must stay in eval
    inputs = torch.rand(10, 4)
    state = torch.random.get_rng_state()
    with _eval_mode(module), isolated_rng():
        assert not module.training and not module.net[0].training
        module(inputs)
        torch.rand(3)
    assert module.training and module.net[0].training and not module.net[2].training
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.slow
def test_faults_warn_and_training_goes_on(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=64, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    with pytest.warns(UserWarning, match="skipped epoch 2: ValueError: `preds` must be finite"):
        trainer, _ = _fit(tmp_path, epochs=4, monitor=monitor, module=lambda: make_module(nan_after=1), logger=False)
    assert trainer.current_epoch == 4
    assert [e for e in monitor.history.records["epoch"]] == [0, 1]


def test_shape_mismatch_warns(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=64, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    with pytest.warns(UserWarning, match="does not match `target`"):
        _fit(tmp_path, epochs=1, monitor=monitor, module=lambda: make_module(out_features=3), logger=False)


def test_strict_raises(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=64, strict=True, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    with pytest.raises(ValueError, match="`preds` must be finite"):
        _fit(tmp_path, epochs=3, monitor=monitor, module=lambda: make_module(nan_after=1), logger=False)


@pytest.mark.slow
def test_small_dataset_and_no_targets(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=1000, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    with pytest.warns(UserWarning, match="fewer than probe_size=1000"):
        _fit(tmp_path, epochs=1, monitor=monitor, logger=False)
    assert len(monitor.probe) == 256

    class NoTargets(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return torch.rand(4)

    from fp_lightning.callbacks.probe_set import sample_probe_set

    with pytest.raises(ValueError, match="no target"):
        sample_probe_set(NoTargets(), 5, 0)


@pytest.mark.slow
def test_dict_batches_with_keys(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=100, input_key="features", strict=True,
                                        spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    _fit(tmp_path, epochs=1, monitor=monitor, data=DictDataset(regression_data()), logger=False)
    assert len(monitor.history) == 2


@pytest.mark.slow
def test_csv_logger_gets_scalars_and_png_panels_without_warnings(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=64, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer, _ = _fit(tmp_path, epochs=2, monitor=monitor, logger=CSVLogger(tmp_path))
    assert not [w for w in caught if "FrequencyPrincipleMonitor" in str(w.message)]
    assert "fp/loss_low" in trainer.callback_metrics
    folder = Path(trainer.log_dir)
    assert (folder / "fp_panels" / "delta_f_heatmap.png").is_file() and (folder / "fp_report.png").is_file()


@pytest.mark.slow
def test_resume_continues_history(tmp_path):
    kw = dict(probe_size=128, spectral=ProjectedSpectralError(n_freqs=16),
              filtering=LowHighFrequencyError(deltas=[0.05]), log_images=False, history_file=None)
    full = FrequencyPrincipleMonitor(**kw)
    _fit(tmp_path / "full", epochs=4, monitor=full, logger=False)
    first = FrequencyPrincipleMonitor(**kw)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    seed_everything(0, verbose=False)
    module = make_module()
    trainer = Trainer(max_epochs=2, callbacks=[first, ckpt], logger=False, default_root_dir=tmp_path, **TRAINER_KW)
    trainer.fit(module, loader(regression_data()))
    resumed = FrequencyPrincipleMonitor(**kw)
    seed_everything(0, verbose=False)
    Trainer(max_epochs=4, callbacks=[resumed], logger=False, default_root_dir=tmp_path, **TRAINER_KW).fit(
        make_module(), loader(regression_data()), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert resumed.history.records["epoch"] == [0, 1, 2, 3, 4]
    assert resumed.history.freqs == full.history.freqs
    np.testing.assert_allclose(np.array(resumed.history.records["delta_f"][:3]),
                               np.array(full.history.records["delta_f"][:3]), rtol=1e-6)


@pytest.mark.slow
def test_pytorch_lightning_trainer(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    monitor = FrequencyPrincipleMonitor(probe_size=64, strict=True, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    pl.seed_everything(0)
    trainer = pl.Trainer(max_epochs=1, callbacks=[monitor], logger=pl.loggers.TensorBoardLogger(tmp_path),
                         default_root_dir=tmp_path, **TRAINER_KW)
    trainer.fit(make_module("pytorch_lightning"), loader(regression_data()))
    assert "fp/loss_high" in trainer.callback_metrics and len(monitor.history) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probe_size": 1}, "`probe_size`"),
        ({"every_n_epochs": 0}, "`every_n_epochs`"),
        ({"spectral": "n_freqs=16"}, "`spectral` must be a ProjectedSpectralError"),
        ({"filtering": ProjectedSpectralError()}, "`filtering` must be a LowHighFrequencyError"),
        ({"output_transform": "relu"}, "`output_transform`"),
        ({"class_dim": 0}, "`class_dim`"),
        ({"probe_dataloader": (torch.rand(3, 2), torch.rand(2))}, "`probe_dataloader`=\\(inputs, targets\\)"),
        ({"probe_batch_size": 0}, "`probe_batch_size`"),
        ({"probe_seed": -1}, "`probe_seed`"),
        ({"spectral": ProjectedSpectralError(n_freqs=8), "filtering": "deltas"}, "`filtering`"),
    ],
)
def test_constructor_errors_name_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrequencyPrincipleMonitor(**kwargs)


def test_filter_precision_reaches_the_filter_bank():
    assert FrequencyPrincipleMonitor().filtering.filter_dtype is torch.float32
    monitor = FrequencyPrincipleMonitor(filtering=LowHighFrequencyError(filter_precision="float64"))
    assert monitor.filtering.filter_dtype is torch.float64
    x, y = torch.rand(50, 3, dtype=torch.float64), torch.rand(50, 1, dtype=torch.float64)
    monitor.filtering.update(x, y + 0.1, y)
    monitor.filtering.compute()
    assert monitor.filtering._bank is not None and monitor.filtering._bank.dtype is torch.float64


@pytest.mark.slow
def test_given_probe_set(tmp_path):
    data = regression_data()
    x, y = data.tensors
    monitor = FrequencyPrincipleMonitor(strict=True, probe_dataloader=(x[:50], y[:50]),
                                        spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    _fit(tmp_path, epochs=1, monitor=monitor, logger=False)
    assert len(monitor.probe) == 50 and not math.isnan(monitor.history.records["loss_low"][-1])


@pytest.mark.slow
def test_filtering_fault_keeps_delta_f(tmp_path):
    """A δ so small that the filter leaves y unchanged: e_low/e_high skipped with one warning, Δ_F still logged."""
    monitor = FrequencyPrincipleMonitor(probe_size=64, spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(deltas=[1e-9]))
    with pytest.warns(UserWarning, match="skipped filtering: ValueError: `target` has no high-frequency part"):
        trainer, _ = _fit(tmp_path, epochs=2, monitor=monitor, logger=False)
    assert any(key.startswith("fp/delta_f/") for key in trainer.callback_metrics)
    assert not any(key.startswith("fp/e_low") for key in trainer.callback_metrics)
    assert np.isnan(monitor.history.as_arrays()["e_low"]).all() and len(monitor.history) == 3
