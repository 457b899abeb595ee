"""The theory paper's change ratios (Eq. (38)–(40), (44)): functions against loops in numpy, and in a real Trainer."""

from __future__ import annotations

import math

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.functional import (
    intermediate_stage_ratio,
    loss_change_ratio,
    loss_density,
    output_change_ratio,
)
from fp_lightning.metrics import ProjectedSpectralError
from fp_lightning.record import FrequencyHistory, load_history
from fp_lightning.report import training_stages, write_report
from tests.conftest import tiny_trainer


# ------------------------------------------------------------------------------------------- numpy oracles (loops)
def _density_np(target: np.ndarray, output: np.ndarray) -> np.ndarray:
    diff = output - target
    return (np.abs(diff) ** 2).reshape(diff.shape[0], -1).sum(axis=1)


def _high(q: np.ndarray, eta: int) -> float:
    return float(sum(q[k] for k in range(len(q)) if k > eta))


def _loss_ratio_np(rows: np.ndarray) -> np.ndarray:
    out = []
    for eta in range(rows.shape[1] - 1):
        num = sum(abs(_high(rows[t], eta) - _high(rows[t - 1], eta)) for t in range(1, len(rows)))
        den = sum(abs(rows[t].sum() - rows[t - 1].sum()) for t in range(1, len(rows)))
        out.append(num / den)
    return np.array(out)


def _output_ratio_np(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    change = (np.abs(after - before) ** 2).reshape(before.shape[0], -1).sum(axis=1)
    return np.array([math.sqrt(_high(change, eta) / change.sum()) for eta in range(len(change) - 1)])


def _spectra(seed: int, k: int = 9, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(k, c, generator=g, dtype=torch.float64) + 1j * torch.randn(k, c, generator=g,
                                                                                   dtype=torch.float64),
            torch.randn(k, c, generator=g, dtype=torch.float64) + 1j * torch.randn(k, c, generator=g,
                                                                                   dtype=torch.float64))


# ------------------------------------------------------------------------------------------------- functions
def test_loss_density_is_the_squared_channel_norm_of_the_spectral_error() -> None:
    target, output = _spectra(0)
    np.testing.assert_allclose(loss_density(target, output).numpy(), _density_np(target.numpy(), output.numpy()),
                               rtol=1e-12)


@pytest.mark.parametrize("n_recordings", [2, 5])
def test_loss_change_ratio_matches_loops_over_every_cutoff(n_recordings: int) -> None:
    rows = np.random.default_rng(n_recordings).random((n_recordings, 11)) * 3
    np.testing.assert_allclose(loss_change_ratio(rows).numpy(), _loss_ratio_np(rows), rtol=1e-12)


def test_loss_change_ratio_is_nan_when_the_loss_did_not_change() -> None:
    rows = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0]])  # L = 6 both times, the parts swapped
    assert np.isnan(loss_change_ratio(rows).numpy()).all()


def test_output_change_ratio_matches_loops_and_ignores_the_target() -> None:
    before, after = _spectra(1)
    np.testing.assert_allclose(output_change_ratio(before, after).numpy(),
                               _output_ratio_np(before.numpy(), after.numpy()), rtol=1e-12)
    # a change only at k ≤ 2 leaves nothing above η = 2
    only_low = before.clone()
    only_low[:3] += 1.0
    ratio = output_change_ratio(before, only_low).numpy()
    assert ratio[0] > 0 and np.all(ratio[2:] == 0)


@pytest.mark.parametrize("form", ["integral", "difference"])
def test_intermediate_stage_ratio_matches_loops(form: str) -> None:
    rows = np.cumsum(np.random.default_rng(3).random((7, 8)), axis=0)[::-1].copy()  # L decreasing
    steps = np.array([0, 10, 25, 40, 60, 90, 130])
    start, eta = 2, 3
    spans, ratios = intermediate_stage_ratio(rows, steps, cutoff=eta, start=start, form=form)
    expected = []
    for t2 in range(start + 1, len(rows)):
        if form == "integral":
            expected.append(_loss_ratio_np(rows[start:t2 + 1])[eta])
        else:
            expected.append(abs(_high(rows[start], eta) - _high(rows[t2], eta))
                            / abs(rows[start].sum() - rows[t2].sum()))
    np.testing.assert_array_equal(spans.numpy(), steps[start + 1:] - steps[start])
    np.testing.assert_allclose(ratios.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize(("call", "name"), [
    (lambda: loss_change_ratio([[1.0, 2.0]]), "densities"),
    (lambda: loss_change_ratio([[1.0, float("nan")], [1.0, 2.0]]), "densities"),
    (lambda: output_change_ratio(torch.zeros(4, dtype=torch.complex128), torch.zeros(3, dtype=torch.complex128)),
     "output_spec"),
    (lambda: intermediate_stage_ratio([[1.0, 2.0], [0.5, 1.0]], [0, 1], cutoff=1), "cutoff"),
    (lambda: intermediate_stage_ratio([[1.0, 2.0], [0.5, 1.0]], [1, 0], cutoff=0), "steps"),
    (lambda: intermediate_stage_ratio([[1.0, 2.0], [0.5, 1.0]], [0, 1], cutoff=0, form="sum"), "form"),
])
def test_bad_input_names_the_argument(call, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


def test_training_stages_follow_the_papers_description() -> None:
    delta_f = np.array([[1, 1, 1], [0.5, 1, 1], [0.05, 1, 1], [0.02, 0.5, 1], [0.01, 0.05, 1], [0.01, 0.01, 0.4]])
    stages = training_stages(delta_f)
    assert stages == {"initial": slice(0, 3), "intermediate": slice(2, 5), "final": slice(4, 6)}
    # nothing ever fitted: the whole run is the initial stage, the last quarter counts as final
    never = training_stages(np.ones((8, 3)))
    assert never["initial"] == slice(0, 8) and never["final"].stop == 8


def test_a_history_written_before_the_ratios_existed_still_loads() -> None:
    old = {"freqs": [1], "deltas": [0.5], "cutoff": 1, "target_amplitude": [1.0, 2.0, 0.5],
           "records": {"epoch": [0, 1], "step": [0, 4], "delta_f": [[1.0], [0.5]], "e_low": [[1.0], [0.5]],
                       "e_high": [[1.0], [0.9]], "loss_low": [2.0, 1.0], "loss_high": [1.0, 0.9],
                       "low_share": [math.nan, 0.9], "output_amplitude": [[0.0] * 3, [0.5] * 3]}}
    history = FrequencyHistory.from_state_dict(old)
    arrays = history.as_arrays()
    assert arrays["loss_density"].shape == (2, 3) and arrays["output_change_ratio"].shape == (2, 2)
    assert np.isnan(arrays["loss_density"]).all()


# ------------------------------------------------------------------------------------------- in a real Trainer
class WaveRegressor(L.LightningModule):
    """A user's two-output regression of a low and a high sine on a 1-D grid."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(1, 48), torch.nn.Tanh(), torch.nn.Linear(48, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def _grid_data(n: int = 64) -> TensorDataset:
    x = torch.linspace(-1, 1, n).unsqueeze(1)
    y = torch.cat([torch.sin(torch.pi * x), 0.5 * torch.sin(9 * torch.pi * x)], dim=1)
    return TensorDataset(x, y)


@pytest.mark.slow
def test_monitor_logs_the_ratios_that_numpy_computes_from_the_outputs(tmp_path) -> None:
    data = _grid_data()
    model = WaveRegressor()
    n_freqs = 16
    monitor = FrequencyPrincipleMonitor(probe_size=len(data), every_n_epochs=1, log_images=True,
                                        spectral=ProjectedSpectralError(n_freqs=n_freqs, frequencies=[1, 4], cutoff=2,
                                                                        share_window=3))
    outputs: list[np.ndarray] = []  # the model's outputs on the sorted grid at each recording
    monitor.listeners.append(lambda trainer, module: outputs.append(module(data.tensors[0]).detach().numpy()))
    trainer = tiny_trainer(max_epochs=4, logger=L.loggers.TensorBoardLogger(tmp_path), callbacks=[monitor])
    trainer.fit(model, DataLoader(data, batch_size=16, shuffle=True))

    history = load_history(next(tmp_path.rglob("fp_history.npz")))
    target_fft = np.fft.fft(data.tensors[1].numpy(), axis=0)[:n_freqs]  # a uniform grid: the projected DFT
    output_ffts = [np.fft.fft(h.astype(np.float64), axis=0)[:n_freqs] for h in outputs]
    densities = np.stack([_density_np(target_fft, f) for f in output_ffts])
    assert len(outputs) == 5
    # float32 outputs: compare at float32's accuracy, relative to the largest density
    np.testing.assert_allclose(history["loss_density"], densities, rtol=1e-4, atol=1e-6 * densities.max())
    assert np.isnan(history["loss_change_ratio"][0]).all() and np.isnan(history["output_change_ratio"][0]).all()
    for t in range(1, 5):
        np.testing.assert_allclose(history["loss_change_ratio"][t], _loss_ratio_np(densities[t - 1:t + 1]),
                                   rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(history["window_change_ratio"][t],
                                   _loss_ratio_np(densities[max(t - 2, 0):t + 1]), rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(history["output_change_ratio"][t],
                                   _output_ratio_np(output_ffts[t - 1], output_ffts[t]), rtol=1e-3, atol=1e-5)
    # the panel reached TensorBoard at every recording, and the report draws the stage panels
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent), size_guidance={"images": 0})
    events.Reload()
    assert len(events.Images("fp/change_ratios")) == 5
    assert write_report(next(tmp_path.rglob("fp_history.npz")), tmp_path / "report.png").stat().st_size > 0


@pytest.mark.slow
def test_a_resume_keeps_the_output_change_ratio_going(tmp_path) -> None:
    data = _grid_data()
    loader = DataLoader(data, batch_size=16)

    def run(max_epochs: int, ckpt_path=None) -> FrequencyPrincipleMonitor:
        monitor = FrequencyPrincipleMonitor(probe_size=len(data), every_n_epochs=1, log_images=False,
                                            history_file=None,
                                            spectral=ProjectedSpectralError(n_freqs=16, frequencies=[1, 4]))
        trainer = tiny_trainer(max_epochs=max_epochs, default_root_dir=tmp_path, enable_checkpointing=True,
                               callbacks=[monitor])
        trainer.fit(WaveRegressor(), loader, ckpt_path=ckpt_path)
        return monitor

    run(2)
    resumed = run(3, ckpt_path=next(tmp_path.rglob("*.ckpt")))
    ratios = resumed.history.as_arrays()["output_change_ratio"]
    assert len(ratios) == 4 and np.isfinite(ratios[1:]).all()


# ------------------------------------------------------------------------------------- fp/denoised_loss in a Trainer
class BlobClassifier(L.LightningModule):
    """A user's three-class classifier on 2-D points."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.02)


@pytest.mark.slow
def test_denoised_loss_reaches_callback_metrics_and_early_stopping(tmp_path) -> None:
    from fp_lightning import DenoisedLoss

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (120,), generator=g)
    x = torch.randn(120, 2, generator=g) * 0.6 + torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])[labels]
    noisy = torch.where(torch.rand(120, generator=g) < 0.2, torch.randint(0, 3, (120,), generator=g), labels)
    data = TensorDataset(x, noisy)
    monitor = FrequencyPrincipleMonitor(probe_size=120, every_n_epochs=1, log_images=False,
                                        spectral=ProjectedSpectralError(n_freqs=8))
    last_outputs: list[torch.Tensor] = []
    monitor.listeners.append(lambda trainer, module: last_outputs.append(module(x).detach()))
    stopper = L.callbacks.EarlyStopping(monitor="fp/denoised_loss", mode="min", patience=50)
    trainer = tiny_trainer(max_epochs=3, callbacks=[monitor, stopper], default_root_dir=tmp_path)
    trainer.fit(BlobClassifier(), DataLoader(data, batch_size=30, shuffle=True))

    reference = DenoisedLoss()
    reference.update(x, last_outputs[-1], noisy)
    expected = float(reference.compute()["denoised_loss"])
    assert float(trainer.callback_metrics["fp/denoised_loss"]) == pytest.approx(expected, rel=1e-5)
    assert monitor.history.records["denoised_loss"][-1] == pytest.approx(expected, rel=1e-5)
    assert stopper.best_score is not None and math.isfinite(float(stopper.best_score))
    # the share of probe samples whose denoised class is their own label, saved with the history
    meta = load_history(next(tmp_path.rglob("fp_history.npz")))["meta"]
    assert meta["denoised_label_agreement"] == pytest.approx(reference.label_agreement)


@pytest.mark.slow
def test_the_theory_stages_example_reads_a_saved_history(tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "theory_stages", Path(__file__).resolve().parents[1] / "examples" / "theory_stages.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    # a history whose peaks are fitted one after the other and whose loss drains from low to high k
    n_freqs, freqs = 48, [1, 3, 5]
    history = FrequencyHistory(freqs=freqs, deltas=[0.5], cutoff=7, target_amplitude=[1.0] * n_freqs)
    k = np.arange(n_freqs)
    for t in range(12):
        density = np.exp(-t / (1.0 + k / 4.0))  # low k decay first
        history.append(epoch=10 * t, step=10 * t, delta_f=[max(0.0, 1 - t / (3 + 3 * j)) for j in range(3)],
                       e_low=[1.0], e_high=[1.0], loss_low=1.0, loss_high=1.0, low_share=0.5,
                       output_amplitude=[0.0] * n_freqs, loss_density=density.tolist(),
                       output_change_ratio=np.linspace(1, 0.01, n_freqs - 1).tolist())
    path = history.save(tmp_path / "fp_history.npz")
    loaded = load_history(path)
    text = example.summary(loaded)
    assert text.splitlines()[1].startswith("initial") and "Eq. (44) at η = 7" in text
    initial = example.stage_curves(loaded)["initial"]["loss"]
    assert np.all(np.diff(initial) <= 0)  # the ratio above η falls as η grows
    assert example.rank_correlation(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    example.draw(loaded, "test").savefig(tmp_path / "stages.png")


@pytest.mark.slow
def test_a_checkpoint_without_the_denoised_score_restores_every_fit(tmp_path) -> None:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (60,), generator=g)
    data = TensorDataset(torch.randn(60, 2, generator=g) + labels[:, None].float(), labels)
    first = FrequencyPrincipleMonitor(probe_size=60, every_n_epochs=1, log_images=False, denoised_loss=False,
                                      spectral=ProjectedSpectralError(n_freqs=8))
    trainer = tiny_trainer(max_epochs=1, callbacks=[first], default_root_dir=tmp_path)
    trainer.fit(BlobClassifier(), DataLoader(data, batch_size=20))
    resumed = FrequencyPrincipleMonitor(probe_size=60, denoised_loss=False,
                                        spectral=ProjectedSpectralError(n_freqs=8))
    resumed.load_state_dict(first.state_dict())
    assert resumed.spectral.resolved_output_transform == first.spectral.resolved_output_transform == "softmax"
    assert torch.equal(resumed.spectral.projection.directions, first.spectral.projection.directions)
