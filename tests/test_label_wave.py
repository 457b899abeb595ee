"""fp/prediction_changes (function, Metric, monitor key), Label Wave (e), the agreement choice, restored weights."""

import copy
import math
import pickle

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning import FrequencyEarlyStopping, FrequencyPrincipleMonitor, FrequencyStoppingRule
from fp_lightning.functional import predicted_classes, prediction_changes
from fp_lightning.metrics import PredictionChanges
from fp_lightning.record import AGREEMENT_KEY, PREDICTION_CHANGES_KEY, FrequencyHistory, logged_values
from tests.conftest import tiny_trainer
from tests.test_early_stopping import _fit

LW = PREDICTION_CHANGES_KEY
ONLY_E = dict(low_threshold=None, share_threshold=None, plateau_rtol=None)


# ---------------------------------------------------------------------------------------------- the function
def test_prediction_changes_equals_a_numpy_count():
    g = torch.Generator().manual_seed(0)
    before, after = torch.randn(200, 5, generator=g), torch.randn(200, 5, generator=g)
    after[:120] = before[:120] + 0.01 * torch.randn(120, 5, generator=g)  # most keep their class
    expected = np.mean(before.numpy().argmax(1) != after.numpy().argmax(1))
    assert float(prediction_changes(before, after)) == pytest.approx(expected, abs=0)
    # the classes themselves (integers) give the same; so do probabilities (a monotone transform)
    assert float(prediction_changes(before.argmax(1), after.softmax(1))) == pytest.approx(expected, abs=0)


def test_prediction_changes_per_position_class_dim_and_ignore_index():
    g = torch.Generator().manual_seed(1)
    before, after = torch.randn(30, 4, 7, generator=g), torch.randn(30, 4, 7, generator=g)  # (n, C, T)
    target = torch.randint(0, 4, (30, 7), generator=g)
    target[:, :2] = -100
    b, a = before.numpy().argmax(1), after.numpy().argmax(1)
    kept = target.numpy() != -100
    expected = (b != a)[kept].mean()
    assert float(prediction_changes(before, after, target=target)) == pytest.approx(expected, abs=0)
    moved = prediction_changes(before.transpose(1, 2), after.transpose(1, 2), class_dim=-1, target=target)
    assert float(moved) == pytest.approx(expected, abs=0)
    assert math.isnan(float(prediction_changes(before, after, target=torch.full((30, 7), -100))))


def test_prediction_changes_errors_name_the_argument():
    with pytest.raises(ValueError, match="`previous` and `current`"):
        prediction_changes(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="`target`"):
        prediction_changes(torch.randn(4, 3), torch.randn(4, 3), target=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="`outputs`"):
        predicted_classes(torch.randn(4))
    with pytest.raises(ValueError, match="`class_dim`"):
        predicted_classes(torch.randn(4, 3), class_dim=0)


# ---------------------------------------------------------------------------------------------- the Metric
def test_metric_compares_each_recording_with_the_previous_and_resumes():
    g = torch.Generator().manual_seed(2)
    target = torch.randint(0, 3, (50,), generator=g)
    outputs = [torch.randn(50, 3, generator=g) for _ in range(4)]
    metric = PredictionChanges()
    values = []
    for out in outputs[:2]:
        metric.reset()
        metric.update(out[:20], target[:20])  # two batches per recording
        metric.update(out[20:], target[20:])
        values.append(float(metric.compute()))
    assert math.isnan(values[0])
    assert values[1] == float(prediction_changes(outputs[0], outputs[1]))
    resumed = PredictionChanges()
    resumed.load_state_dict(pickle.loads(pickle.dumps(metric.state_dict())))
    resumed.update(outputs[2], target)
    assert float(resumed.compute()) == float(prediction_changes(outputs[1], outputs[2]))
    assert torch.equal(copy.deepcopy(resumed).previous_classes, outputs[2].argmax(1))
    fig, _ = resumed.plot([math.nan, *values[1:], 0.1])
    assert fig is not None


# ---------------------------------------------------------------------------------------------- the rule
def _label_wave_oracle(changes, window):
    """(stop check, chosen epoch) of Label Wave on c(1..E): first rise of the window mean above its minimum."""
    best, best_epoch = math.inf, None
    for epoch in range(window, len(changes) + 1):
        mean = float(np.mean(changes[epoch - window:epoch]))
        if mean < best:
            best, best_epoch = mean, epoch
        elif mean > best:
            return epoch, best_epoch
    return None, best_epoch


@pytest.mark.parametrize("window", [1, 3, 5])
def test_label_wave_fires_at_the_first_local_minimum_of_the_moving_average(window):
    rng = np.random.default_rng(window)
    # falling, a dip, a rise, a fall: the first minimum of the smoothed curve decides
    changes = np.concatenate([np.linspace(0.6, 0.1, 8), [0.12, 0.2, 0.3, 0.25, 0.2, 0.1, 0.05]])
    changes = (changes + rng.uniform(0, 0.02, len(changes))).astype(np.float32).astype(float)
    stop, chosen = _label_wave_oracle(changes, window)
    rule = FrequencyStoppingRule(**ONLY_E, label_wave_window=window)
    fired = None
    for epoch, value in enumerate(changes, start=1):
        if rule.update({LW: value}, epoch).should_stop:
            fired = epoch
            break
    assert stop is not None and (fired, rule.best_epoch, rule.criterion) == (stop, chosen, "label_wave")


def test_label_wave_state_dict_round_trip_and_errors():
    changes = [0.5, 0.4, 0.3, 0.35, 0.2, 0.25, 0.4, 0.5]
    first = FrequencyStoppingRule(**ONLY_E, label_wave_window=2)
    for epoch, value in enumerate(changes[:4], start=1):
        assert not first.update({LW: value}, epoch).should_stop
    second = FrequencyStoppingRule(**ONLY_E, label_wave_window=2)
    second.load_state_dict(first.state_dict())
    stops = [epoch for epoch, value in enumerate(changes[4:], start=5) if second.update({LW: value}, epoch).should_stop]
    assert stops[0] == _label_wave_oracle(changes, 2)[0] == 7 and second.best_epoch == 6
    with pytest.raises(ValueError, match="`label_wave_window`"):
        FrequencyStoppingRule(**ONLY_E, label_wave_window=0)
    with pytest.raises(ValueError, match="`agreement_threshold`"):
        FrequencyStoppingRule(**ONLY_E, label_wave_window=3, agreement_threshold=0.2)
    with pytest.raises(KeyError, match="label_wave_window=None"):
        FrequencyStoppingRule(**ONLY_E, label_wave_window=3).update({"fp/denoised_loss": 1.0}, 1)


@pytest.mark.parametrize(("metrics", "selected"), [
    ({AGREEMENT_KEY: 0.5, "fp/denoised_loss": 1.0, LW: 0.3}, "denoised_minimum"),
    ({AGREEMENT_KEY: 0.05, "fp/denoised_loss": 1.0, LW: 0.3}, "label_wave"),
    ({"fp/denoised_loss": 1.0}, "denoised_minimum"),   # a regression: no agreement, no prediction changes
    ({LW: 0.3}, "label_wave"),                          # a classifier without the denoised score
])
def test_agreement_chooses_one_criterion_for_the_run(metrics, selected):
    stopper = FrequencyEarlyStopping.recommended(denoised_patience=3)
    stopper.evaluate(metrics, 1)
    assert stopper.rule.selected == selected
    assert stopper.rule.uses_denoised == (selected == "denoised_minimum")
    assert stopper.rule.uses_label_wave == (selected == "label_wave")


# ---------------------------------------------------------------------------------------------- in a real Trainer
class TinyClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-2)


def _noisy_classes(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    flip = torch.rand(n, generator=g) < 0.3
    y[flip] = torch.randint(0, 3, (int(flip.sum()),), generator=g)
    return x, y


class ProbePredictions(Callback):
    """Independent record: the predicted classes on the probe inputs after every epoch."""

    def __init__(self, x):
        self.x, self.classes = x, {}

    def _take(self, module, epoch):
        with torch.no_grad():
            self.classes[epoch] = module(self.x).argmax(1)

    def on_train_start(self, trainer, module):
        self._take(module, 0)

    def on_train_epoch_end(self, trainer, module):
        self._take(module, trainer.current_epoch + 1)


def _classifier_fit(stopper=None, epochs=8, ckpt_path=None, callbacks=(), **trainer_kw):
    x, y = _noisy_classes()
    L.seed_everything(0, verbose=False)
    monitor = FrequencyPrincipleMonitor(probe_dataloader=(x, y), log_images=False, history_file=None)
    record = ProbePredictions(x)
    trainer = tiny_trainer(L, max_epochs=epochs, callbacks=[monitor, record, *callbacks,
                                                            *([stopper] if stopper else [])], **trainer_kw)
    trainer.fit(TinyClassifier(), DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                                             generator=torch.Generator().manual_seed(0)), ckpt_path=ckpt_path)
    return trainer, monitor, record


@pytest.mark.slow
def test_monitor_logs_prediction_changes_and_the_replay_equals_the_callback():
    stopper = FrequencyEarlyStopping(**ONLY_E, label_wave_window=1, dry_run=True)
    trainer, monitor, record = _classifier_fit(stopper, epochs=10)
    logged = monitor.history.as_arrays()["prediction_changes"]
    assert math.isnan(logged[0])  # the first recording has nothing to compare with
    for epoch in range(1, 11):
        expected = float((record.classes[epoch] != record.classes[epoch - 1]).double().mean())
        assert logged[epoch] == expected
    assert float(trainer.callback_metrics[LW]) == pytest.approx(logged[-1], rel=1e-6)
    assert 0.0 <= monitor.history.as_arrays()["denoised_agreement"][0] <= 1.0
    assert stopper.rule.criterion == "label_wave"  # the changes do rise within 10 epochs here
    replayed = FrequencyStoppingRule(**ONLY_E, label_wave_window=1)
    replayed.replay(monitor.history)
    assert (replayed.criterion, replayed.stopped_after, replayed.best_epoch) == (
        stopper.rule.criterion, stopper.rule.stopped_after, stopper.rule.best_epoch)
    # the recommended rule (choice by agreement) replays alike, from the logged values as well
    auto = FrequencyEarlyStopping.recommended(denoised_patience=2, dry_run=True)
    _, monitor, _ = _classifier_fit(auto, epochs=10)
    again = FrequencyStoppingRule(**ONLY_E, denoised_patience=2, label_wave_window=5, agreement_threshold=0.15)
    again.replay(monitor.history)
    assert again.selected == auto.rule.selected is not None
    assert (again.criterion, again.stopped_after, again.best_epoch) == (
        auto.rule.criterion, auto.rule.stopped_after, auto.rule.best_epoch)


@pytest.mark.slow
def test_resumed_monitor_continues_the_count(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    _classifier_fit(epochs=3, callbacks=[checkpoint], enable_checkpointing=True)
    assert checkpoint.last_model_path
    _, monitor, record = _classifier_fit(epochs=5, ckpt_path=checkpoint.last_model_path,
                                         callbacks=[ModelCheckpoint(dirpath=tmp_path / "b")],
                                         enable_checkpointing=True)
    logged = monitor.history.as_arrays()["prediction_changes"]
    assert len(logged) == 6 and not math.isnan(logged[4])  # epoch 4 compares with epoch 3, before the resume
    assert logged[5] == float((record.classes[5] != record.classes[4]).double().mean())


class CaptureWeights(Callback):
    """The module's weights after every epoch, keyed by completed epochs."""

    def __init__(self):
        self.weights = {}

    def on_train_epoch_end(self, trainer, module):
        self.weights[trainer.current_epoch + 1] = copy.deepcopy(module.state_dict())


def _assert_holds(module, weights):
    state = module.state_dict()
    assert state.keys() == weights.keys()
    assert all(torch.equal(state[key], weights[key]) for key in state)


def _script_e(epoch):
    values = {f"fp/e_low/delta={d:g}": 0.9 for d in (0.1, 1.0, 10.0)}
    changes = {1: 0.5, 2: 0.4, 3: 0.3, 4: 0.25, 5: 0.2, 6: 0.22, 7: 0.3}.get(epoch, 0.35)
    return {**values, LW: changes}


def _script_d(epoch):
    values = {f"fp/e_low/delta={d:g}": 0.9 for d in (0.1, 1.0, 10.0)}
    return {**values, "fp/denoised_loss": {1: 2.0, 2: 1.5, 3: 1.2, 4: 1.1}.get(epoch, 1.3 + 0.01 * epoch)}


def test_restore_best_weights_after_a_stop_bit_for_bit():
    """Label Wave (window 2) fires after epoch 7: m = 0.45, 0.35, 0.275, 0.225, 0.21, 0.26 -> epoch 6 is chosen."""
    capture = CaptureWeights()
    stopper = FrequencyEarlyStopping(**ONLY_E, label_wave_window=2, restore_best_weights=True)
    trainer, _ = _fit(stopper, _script_e, epochs=20, callbacks=[capture])
    assert (stopper.rule.stopped_after, stopper.rule.best_epoch, stopper.restored_epoch) == (7, 6, 6)
    assert trainer.current_epoch == 7
    _assert_holds(trainer.lightning_module, capture.weights[6])
    assert not torch.equal(capture.weights[6]["net.0.weight"], capture.weights[7]["net.0.weight"])
    assert list(stopper.best_weights) == [6]  # one CPU copy kept
    assert all(v.device.type == "cpu" for v in stopper.best_weights[6].values())


def test_restore_best_weights_at_max_epochs_without_a_stop():
    """(d) with a patience longer than the budget never fires; the best-scored epoch 4 is given back."""
    capture = CaptureWeights()
    stopper = FrequencyEarlyStopping(**ONLY_E, denoised_patience=50, restore_best_weights=True)
    trainer, _ = _fit(stopper, _script_d, epochs=9, callbacks=[capture])
    assert stopper.rule.criterion is None and trainer.current_epoch == 9
    assert stopper.restored_epoch == stopper.rule.best_epoch == 4
    _assert_holds(trainer.lightning_module, capture.weights[4])
    dry = FrequencyEarlyStopping(**ONLY_E, denoised_patience=50, restore_best_weights=True, dry_run=True)
    capture = CaptureWeights()
    trainer, _ = _fit(dry, _script_d, epochs=6, callbacks=[capture])
    assert dry.restored_epoch is None  # a dry run changes nothing
    _assert_holds(trainer.lightning_module, capture.weights[6])
    copied = copy.deepcopy(stopper)  # (pickle would need the test's local module class, which Lightning binds)
    assert copied.restore_best_weights and copied.best_weights.keys() == stopper.best_weights.keys()
    assert pickle.loads(pickle.dumps(FrequencyEarlyStopping.recommended())).restore_best_weights


def test_history_and_logged_values_carry_the_new_keys():
    h = FrequencyHistory(freqs=[2], deltas=[0.5], cutoff=2, target_amplitude=[1.0])
    h.append(epoch=0, step=0, delta_f=[1.0], e_low=[0.9], e_high=[1.0], loss_low=2.0, loss_high=1.0,
             low_share=math.nan, output_amplitude=[0.0], denoised_agreement=0.1)
    h.append(epoch=1, step=3, delta_f=[0.5], e_low=[0.5], e_high=[1.0], loss_low=1.0, loss_high=1.0,
             low_share=0.5, output_amplitude=[0.0], prediction_changes=0.25, denoised_agreement=0.1)
    restored = FrequencyHistory.from_state_dict(h.state_dict())
    assert restored.as_arrays()["prediction_changes"][1] == 0.25
    values = logged_values([2], [0.5], [0.5], [0.5], [1.0], 1.0, 1.0, 0.5, math.nan, 0.25, 0.1)
    assert values[LW] == 0.25 and values[AGREEMENT_KEY] == 0.1
    assert LW not in logged_values([2], [0.5], [0.5], [0.5], [1.0], 1.0, 1.0, 0.5)


@pytest.mark.slow
def test_a_named_held_out_monitor_carries_the_changes_and_the_recommended_rule_follows_it():
    """Label Wave on a held-out probe: ``fp_val/prediction_changes`` counts that probe's changed classes, and the
    rule watching ``monitor_name="val"`` replays from that monitor's history alone."""
    x, y = _noisy_classes()
    held_x, held_y = _noisy_classes(seed=1)
    L.seed_everything(0, verbose=False)
    train = FrequencyPrincipleMonitor(probe_dataloader=(x, y), log_images=False, history_file=None)
    val = FrequencyPrincipleMonitor(probe_dataloader=(held_x, held_y), log_images=False, history_file=None,
                                    name="val")
    stopper = FrequencyEarlyStopping.recommended(denoised_patience=2, monitor_name="val", dry_run=True)
    record = ProbePredictions(held_x)
    trainer = tiny_trainer(L, max_epochs=6, callbacks=[train, val, record, stopper])
    trainer.fit(TinyClassifier(), DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True,
                                             generator=torch.Generator().manual_seed(0)))
    logged = val.history.as_arrays()["prediction_changes"]
    for epoch in range(1, 7):
        assert logged[epoch] == float((record.classes[epoch] != record.classes[epoch - 1]).double().mean())
    assert float(trainer.callback_metrics["fp_val/prediction_changes"]) == pytest.approx(logged[-1], rel=1e-6)
    assert "fp/prediction_changes" in trainer.callback_metrics  # the training probe's own, under its own key
    again = FrequencyStoppingRule(**ONLY_E, denoised_patience=2, label_wave_window=5, agreement_threshold=0.15)
    again.replay(val.history)
    assert again.selected == stopper.rule.selected is not None
    assert (again.criterion, again.best_epoch) == (stopper.rule.criterion, stopper.rule.best_epoch)
