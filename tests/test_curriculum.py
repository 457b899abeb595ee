"""FrequencyCurriculum (paper Fig. 5): the rule replayed on Δ_F sequences, and the callback in a real Trainer."""

import math

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning import FrequencyCurriculum, FrequencyPrincipleMonitor, FrequencyWeightedLoss
from fp_lightning.callbacks import PeakCurriculum
from fp_lightning.functional import high_pass_weights, low_pass_weights
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests.conftest import tiny_trainer

# ------------------------------------------------------------------------------------------ the rule alone


def test_low_to_high_moves_one_peak_per_recording_when_fitted():
    schedule = PeakCurriculum([12, 1, 4], n_samples=32)
    replay = [  # (step, Δ_F per k) as the monitor would report them
        (10, {1: 0.9, 4: 1.0, 12: 1.0}),
        (20, {1: 0.1, 4: 1.0, 12: 1.0}),  # exactly the threshold: not below it
        (30, {1: 0.09, 4: 0.05, 12: 1.0}),  # k = 1 fitted → k = 4 (k = 4 is judged at the next recording only)
        (40, {1: 0.09, 4: 0.05, 12: 0.01}),  # k = 4 fitted → k = 12, the last
        (50, {1: 0.5, 4: 0.5, 12: 0.0}),  # the last peak stays
    ]
    peaks = []
    for step, delta_f in replay:
        schedule.update(delta_f, step)
        peaks.append(schedule.current_peak)
        assert torch.equal(schedule.weights(), low_pass_weights(32, schedule.current_peak))
    assert peaks == [1, 1, 4, 12, 12]
    assert schedule.transitions == [(0, 1), (30, 4), (40, 12)]
    assert schedule.finished


def test_high_to_low_moves_on_fit_or_after_the_step_budget():
    schedule = PeakCurriculum([1, 4, 12], n_samples=32, direction="high_to_low", max_steps_per_peak=500)
    assert schedule.current_peak == 12
    assert torch.equal(schedule.weights(dtype=torch.float64), high_pass_weights(32, 12, dtype=torch.float64))
    assert not schedule.update({12: 0.5}, step=499)  # 499 steps on k = 12: within the budget
    assert schedule.update({12: 0.5}, step=500)  # budget spent → k = 4
    assert not schedule.update({4: math.nan}, step=600)  # NaN never counts as fitted
    assert schedule.update({4: 0.05}, step=700)  # fitted before its budget → k = 1
    assert schedule.transitions == [(0, 12), (500, 4), (700, 1)]
    assert torch.equal(schedule.weights(), high_pass_weights(32, 1))
    assert not schedule.update({1: 0.0}, step=5000)


def test_state_dict_resumes_exactly():
    replay = [(s, {1: d1, 4: d4, 9: d9}) for s, d1, d4, d9 in
              [(5, 0.5, 1, 1), (10, 0.05, 1, 1), (15, 0, 0.6, 1), (20, 0, 0.3, 1), (25, 0, 0.2, 1), (30, 0, 0, 0.5)]]
    whole = PeakCurriculum([1, 4, 9], 40, "high_to_low", threshold=0.25, max_steps_per_peak=12)
    first = PeakCurriculum([1, 4, 9], 40, "high_to_low", threshold=0.25, max_steps_per_peak=12)
    for step, values in replay:
        whole.update(values, step)
    for step, values in replay[:3]:
        first.update(values, step)
    resumed = PeakCurriculum.from_state_dict(first.state_dict())
    for step, values in replay[3:]:
        resumed.update(values, step)
    assert resumed.transitions == whole.transitions and resumed.current_peak == whole.current_peak
    assert len(whole.transitions) >= 3  # the replay does move it
    with pytest.raises(ValueError, match="must be equal to resume"):
        PeakCurriculum([1, 4], 40).load_state_dict(first.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"peaks": []}, "`peaks`"),
        ({"peaks": [0, 3]}, "`peaks`"),
        ({"peaks": [3, 3]}, "`peaks`"),
        ({"peaks": [3, 17]}, "`peaks`"),
        ({"n_samples": 1}, "`n_samples`"),
        ({"direction": "up"}, "`direction`"),
        ({"threshold": 0.0}, "`threshold`"),
        ({"max_steps_per_peak": 0}, "`max_steps_per_peak`"),
    ],
)
def test_schedule_bad_input(kwargs, match):
    args = {"peaks": [1, 3], "n_samples": 32, **kwargs}
    with pytest.raises(ValueError, match=match):
        PeakCurriculum(**args)


def test_missing_current_peak_names_delta_f():
    with pytest.raises(ValueError, match="`delta_f` has no value for the current peak k=1"):
        PeakCurriculum([1, 3], 32).update({3: 0.0}, step=1)


# ------------------------------------------------------------------------------------------ in a real Trainer
N = 64


def _task() -> TensorDataset:
    # 64 evenly spaced inputs; the monitor's projection puts them on the DFT grid j/64, so its k is the DFT index
    x = torch.linspace(-1.0, 1.0, N).unsqueeze(1)
    j = torch.arange(N, dtype=torch.float64)
    y = torch.sin(2 * math.pi * j / N) + 0.5 * torch.sin(2 * math.pi * 5 * j / N)
    return TensorDataset(x, y.float().unsqueeze(1))


def _fitter_class(base: type) -> type:
    """A tiny tanh MLP trained with the frequency-weighted loss, as a LightningModule of ``base``'s package."""

    class Fitter(base):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
            self.loss = FrequencyWeightedLoss(N)
            self.used: list[tuple[int, torch.Tensor, np.ndarray, np.ndarray, float]] = []  # what each step used

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            h = self(x)
            loss = self.loss(h, y)
            self.used.append((self.global_step, self.loss.weights.clone(), h.detach().double().numpy(),
                              y.double().numpy(), float(loss.detach())))
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    return Fitter


SineFitter = _fitter_class(L.LightningModule)


def _fit(model, curriculum, epochs, tmp_path, ckpt_path=None, package=L, curriculum_first=False, probe_size=N):
    monitor = FrequencyPrincipleMonitor(probe_size=probe_size, log_images=False, history_file=None, strict=True,
                                        spectral=ProjectedSpectralError(n_freqs=16, frequencies=[1, 5]),
                                        filtering=LowHighFrequencyError(deltas=[0.05]))
    callbacks = [curriculum, monitor] if curriculum_first else [monitor, curriculum]
    trainer = tiny_trainer(package, max_epochs=epochs, callbacks=callbacks, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(_task(), batch_size=N, shuffle=False), ckpt_path=ckpt_path)
    return trainer, monitor


def _peak_at(transitions, step):
    return [peak for start, peak in transitions if start <= step][-1]


def _eq4(h, y, w):
    """Numpy oracle of L_wf: Σ_γ w(γ) |FFT(h − y)(γ)|² / N² (one channel)."""
    return float((w * np.abs(np.fft.fft((h - y)[:, 0])) ** 2).sum() / len(h) ** 2)


@pytest.mark.parametrize("root", ["lightning.pytorch", "pytorch_lightning"])
def test_the_loss_used_is_the_curriculum_mask(tmp_path, root):
    package = pytest.importorskip(root)
    model = _fitter_class(package.LightningModule)()
    curriculum = FrequencyCurriculum(threshold=0.3)  # peaks: the monitor's tracked [1, 5]; loss found in the model
    trainer, monitor = _fit(model, curriculum, 15, tmp_path, package=package)
    transitions = curriculum.schedule.transitions
    assert transitions[0] == (0, 1) and len(transitions) == 2 and transitions[1][1] == 5  # it moved to k = 5
    for step, weights, h, y, loss in model.used:
        peak = _peak_at(transitions, step)
        expected_w = low_pass_weights(N, peak).numpy()
        np.testing.assert_array_equal(weights.numpy(), expected_w)
        assert abs(loss - _eq4(h, y, expected_w)) < 1e-5 * max(loss, 1e-3)
    # masked, not the MSE: at the first step the loss only sees |γ| ≤ 1
    _, _, h0, y0, loss0 = model.used[0]
    assert abs(loss0 - float(np.mean((h0 - y0) ** 2))) > 0.1 * loss0
    # it moved at the first recording with Δ_F(1) < 0.3, not before (the monitor's own history)
    records = monitor.history.records
    below = [i for i, e in enumerate(records["epoch"]) if e > 0 and records["delta_f"][i][0] < 0.3]
    assert transitions[1][0] == records["step"][below[0]]
    assert trainer.callback_metrics["fp/curriculum_peak"] == 5.0


def test_listed_before_the_monitor_it_decides_the_same(tmp_path):
    # it then sees each recording at the next epoch's start, still before any further step
    first, after = FrequencyCurriculum(threshold=0.3), FrequencyCurriculum(threshold=0.3)
    _fit(SineFitter(), first, 8, tmp_path, curriculum_first=True)
    _fit(SineFitter(), after, 8, tmp_path)
    assert first.schedule.transitions == after.schedule.transitions and len(after.schedule.transitions) == 2


def test_resume_continues_the_stage(tmp_path):
    model = SineFitter()
    curriculum = FrequencyCurriculum(threshold=0.3, max_steps_per_peak=1000)
    trainer, _ = _fit(model, curriculum, 12, tmp_path)
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    assert curriculum.schedule.current_peak == 5
    resumed_model, resumed = SineFitter(), FrequencyCurriculum(threshold=0.3, max_steps_per_peak=1000)
    _fit(resumed_model, resumed, 14, tmp_path, ckpt_path=str(path))
    assert resumed.schedule.transitions[: len(curriculum.schedule.transitions)] == curriculum.schedule.transitions
    first_step, weights, *_ = resumed_model.used[0]
    assert first_step == 12
    np.testing.assert_array_equal(weights.numpy(), low_pass_weights(N, 5).numpy())


def test_callback_errors_name_the_fix(make_trainer, tmp_path):
    with pytest.raises(ValueError, match="`direction`"):
        FrequencyCurriculum(direction="sideways")
    with pytest.raises(ValueError, match="`loss`"):
        FrequencyCurriculum(loss=nn.MSELoss())
    trainer = make_trainer(max_epochs=1, callbacks=[FrequencyCurriculum()], enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="FrequencyPrincipleMonitor"):
        trainer.fit(SineFitter(), DataLoader(_task(), batch_size=N))
    with pytest.raises(ValueError, match="`peaks`"):
        _fit(SineFitter(), FrequencyCurriculum(peaks=[1, 3]), 1, tmp_path)
    with pytest.warns(UserWarning, match="`probe_size`"):
        _fit(SineFitter(), FrequencyCurriculum(), 1, tmp_path, probe_size=N // 2)
