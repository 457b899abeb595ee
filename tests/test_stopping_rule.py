"""FrequencyStoppingRule: the early-stopping decision without Lightning, and its replay of a finished run."""

import math

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning.callbacks import (
    FrequencyEarlyStopping,
    FrequencyHistory,
    FrequencyPrincipleMonitor,
    FrequencyStoppingRule,
    history_checks,
    load_history,
)
from fp_lightning.metrics import ProjectedSpectralError
from tests.conftest import SILENT

DELTAS = (0.1, 1.0, 10.0)
FREQS = (3, 7)


# ------------------------------------------------------------------------------------------ scripted runs
def staircase(epoch):
    """ε at δ = 1 falls, touches 0.05 exactly (float32 rounds it up), then plateaus; the low share dips late."""
    low = {1: 0.9, 2: 0.5, 3: 0.25, 4: 0.05, 5: 0.05, 6: 0.049, 7: 0.12, 8: 0.11, 9: 0.115}.get(epoch, 0.104)
    share = {2: 0.1, 6: 0.4, 8: 0.45, 9: 0.3, 10: 0.2}.get(epoch, 0.9)
    return {"e_low": [0.99, low, 0.98], "delta_f": [min(1.0, 4 * low), 0.8], "share": share}


class ScriptedRecordingMonitor(FrequencyPrincipleMonitor):
    """The real monitor glue, with measurements from a script, recorded in its history as the real one does."""

    def __init__(self, script, **kw):
        super().__init__(probe_size=16, log_images=False, **kw)
        self.script = script

    def _measure(self, trainer, pl_module, epoch, timing):
        row = self.script(epoch)
        if self.history is None:
            self.history = FrequencyHistory(freqs=list(FREQS), deltas=list(DELTAS), cutoff=3,
                                            target_amplitude=[1.0] * 16)
        share = row["share"] if len(self.history) >= 1 else math.nan
        self.history.append(epoch=epoch, step=trainer.global_step, delta_f=row["delta_f"], e_low=row["e_low"],
                            e_high=[0.9] * 3, loss_low=1.0, loss_high=1.0, low_share=share, output_amplitude=[0.5] * 16)
        values = {f"fp/delta_f/k={k}": v for k, v in zip(FREQS, row["delta_f"])}
        values.update({f"fp/e_low/delta={d:g}": v for d, v in zip(DELTAS, row["e_low"])})
        values.update({f"fp/e_high/delta={d:g}": 0.9 for d in DELTAS})
        values.update({"fp/loss_low": 1.0, "fp/loss_high": 1.0})
        if not math.isnan(share):
            values["fp/low_share"] = share
        return values


class SmallRegressor(LightningModule):
    def __init__(self, lr=1e-2):
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 24), torch.nn.Tanh(), torch.nn.Linear(24, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def wave_loader(n=96, batch_size=32):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(n, 2, generator=g)
    y = torch.sin(2 * torch.pi * x[:, :1]) + 0.2 * torch.sin(12 * torch.pi * x[:, :1])
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


RULES = {
    "a": dict(low_threshold=0.05, share_threshold=None, plateau_rtol=None, patience=2, delta="middle"),
    "b": dict(low_threshold=None, share_threshold=0.5, arm_threshold=0.3, plateau_rtol=None, patience=2,
              delta="middle"),
    "c": dict(low_threshold=None, share_threshold=None, arm_threshold=0.3, plateau_rtol=0.1, plateau_window=0.5,
              patience=3, delta="middle"),
    "delta_f": dict(low_threshold=0.21, share_threshold=None, plateau_rtol=None, patience=2, low_metric="delta_f",
                    min_epochs=5),
}
# where each rule stops on the staircase, worked out by hand:
# a: ε ≤ 0.05 only at 6 (float32(0.05) > 0.05), never twice in a row -> no stop;
# b: armed at 3, low share ≤ 0.5 at 6, then 8, 9 -> 9;
# c: armed at 3; best ε 0.05 at 4, 0.049 from 6 on; at 8 the window is max(3, ⌈8/2⌉) = 4 and the best up to epoch 4
#    is 0.05: 0.049 > 0.9 · 0.05 -> 8 (at 7, window 4, the best up to 3 is 0.25);
# delta_f: Δ_F(3) = 4ε ≤ 0.21 at 4, 5, 6, but checks before 5 are ignored -> 5, 6 -> 6
STOPS = {"a": (None, None), "b": ("high_frequency_turn", 9), "c": ("low_plateau", 8), "delta_f": ("low_converged", 6)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RULES))
def test_replay_takes_the_callbacks_decisions_in_a_trainer(tmp_path, name):
    seed_everything(0, verbose=False)
    stopper = FrequencyEarlyStopping(**RULES[name])
    monitor = ScriptedRecordingMonitor(staircase, history_file=tmp_path / "fp_history.npz")
    trainer = Trainer(max_epochs=14, callbacks=[monitor, stopper], **SILENT)
    trainer.fit(SmallRegressor(), wave_loader())
    assert (stopper.rule.criterion, stopper.rule.stopped_after) == STOPS[name]

    for source in (monitor.history, tmp_path / "fp_history.npz"):
        rule = FrequencyStoppingRule(**RULES[name])
        decisions = rule.replay(source)
        assert (rule.criterion, rule.stopped_after) == STOPS[name]
        assert rule.state_dict() == stopper.rule.state_dict()  # counters, arming, ε* trace, last values
        first = RULES[name].get("min_epochs", 0)
        last = STOPS[name][1] or 14
        assert [d.epoch for d in decisions if d.checked] == list(range(max(first, 1), last + 1))
        assert [d.should_stop for d in decisions].count(True) == (STOPS[name][0] is not None)


def test_replay_rounds_like_callback_metrics():
    """The callback reads float32 tensors: 0.05 logged is 0.0500000007 > 0.05. Fed as float64, ε = 0.05 counts."""
    history = FrequencyHistory(freqs=list(FREQS), deltas=list(DELTAS), cutoff=3, target_amplitude=[1.0])
    for epoch in range(0, 8):
        row = staircase(epoch)
        history.append(epoch=epoch, step=3 * epoch, delta_f=row["delta_f"], e_low=row["e_low"], e_high=[0.9] * 3,
                       loss_low=1.0, loss_high=1.0, low_share=row["share"], output_amplitude=[0.0])
    replayed = FrequencyStoppingRule(**RULES["a"])
    replayed.replay(history)
    assert replayed.criterion is None and replayed.low_count == 0  # reset by ε = 0.12 at 7
    by_hand = FrequencyStoppingRule(**RULES["a"])
    stops = [by_hand.update({"fp/e_low/delta=1": staircase(e)["e_low"][1]}, e).should_stop for e in range(1, 8)]
    assert stops.index(True) + 1 == 5 and by_hand.criterion == "low_converged"  # 0.05 at 4 and 5


@pytest.mark.slow
def test_replay_of_a_real_run_from_its_npz(tmp_path):
    """A real monitor and a dry-run callback; the saved history, replayed, gives the same state at every field."""
    seed_everything(0, verbose=False)
    kwargs = dict(arm_threshold=None, plateau_rtol=0.3, plateau_window=0.0, patience=2, low_threshold=None,
                  share_threshold=0.5, delta="largest")
    stopper = FrequencyEarlyStopping(**kwargs, dry_run=True)
    monitor = FrequencyPrincipleMonitor(probe_size=64, log_images=False, history_file=tmp_path / "fp_history.npz",
                                        spectral=ProjectedSpectralError(n_freqs=16))
    trainer = Trainer(max_epochs=8, callbacks=[monitor, stopper], **SILENT)
    trainer.fit(SmallRegressor(lr=3e-2), wave_loader())
    assert stopper.rule.criterion is not None and monitor.history.records["epoch"][-1] == 8  # fired, trained on

    history = load_history(tmp_path / "fp_history.npz")
    rule = FrequencyStoppingRule(**kwargs)
    decisions = rule.replay(history)
    assert rule.state_dict() == stopper.rule.state_dict()
    assert decisions[-1].should_stop and decisions[-1].criterion == stopper.rule.criterion
    assert decisions[-1].message in stopper.stopping_reason_message
    # ε of each check is the largest δ's e_low of that recording, as float32
    e_low = np.asarray(history["e_low"])[1: len(decisions) + 1, -1]
    np.testing.assert_array_equal([d.low_error for d in decisions], e_low.astype(np.float32))


# ------------------------------------------------------------------------------------------ the rule alone
def test_decision_fields_and_ignored_checks():
    rule = FrequencyStoppingRule(low_threshold=0.1, share_threshold=None, plateau_rtol=None, patience=2,
                                 min_epochs=2)
    early = rule.update({"fp/e_low/delta=1": 0.01}, 1)
    assert not early.checked and rule.low_count == 0 and rule.best_trace == []  # warm-up: nothing moves
    first = rule.update({"fp/e_low/delta=1": 0.05, "fp/low_share": 0.7, "other": 3.0}, 2)
    assert first.checked and not first.should_stop and (first.low_error, first.share) == (0.05, 0.7)
    fired = rule.update({"fp/e_low/delta=1": torch.tensor(0.04)}, 3)  # 0-d tensors are read too
    assert fired.should_stop and fired.criterion == "low_converged" and fired.epoch == 3
    assert fired.message == ("criterion (a) low_converged fired after epoch 3: e_low(δ=1) = 0.04 ≤ low_threshold "
                             "= 0.1 on 2 consecutive checks.")
    after = rule.update({"fp/e_low/delta=1": 0.9}, 4)  # the decision is final
    assert not after.checked and rule.stopped_after == 3 and rule.last_values == {"e_low(δ=1)": float(fired.low_error)}
    assert fired.low_error == float(torch.tensor(0.04))


def test_arming_message_and_non_finite():
    rule = FrequencyStoppingRule()
    assert rule.update({"fp/e_low/delta=1": 0.5}, 1).message is None
    armed = rule.update({"fp/e_low/delta=1": 0.25}, 2)
    assert armed.message.startswith("criteria (b) high_frequency_turn and (c) low_plateau armed at epoch 2")
    bad = rule.update({"fp/e_low/delta=1": 0.2, "fp/low_share": math.inf}, 3)
    assert bad.criterion == "non_finite" and "low_share = inf is not finite" in bad.message
    assert rule.best_score == 0.25  # a non-finite check does not enter ε*


def test_state_dict_continues_a_replay():
    history = FrequencyHistory(freqs=list(FREQS), deltas=list(DELTAS), cutoff=3, target_amplitude=[1.0])
    for epoch in range(0, 13):
        row = staircase(epoch)
        history.append(epoch=epoch, step=2 * epoch, delta_f=row["delta_f"], e_low=row["e_low"], e_high=[0.9] * 3,
                       loss_low=1.0, loss_high=1.0, low_share=row["share"], output_amplitude=[0.0])
    whole = FrequencyStoppingRule(**RULES["c"])
    whole.replay(history)
    checks = list(history_checks(history))
    first = FrequencyStoppingRule(**RULES["c"])
    for epoch, values in checks[:7]:
        first.update(values, epoch)
    second = FrequencyStoppingRule(**RULES["c"])
    second.load_state_dict(first.state_dict())
    for epoch, values in checks[7:]:
        if second.update(values, epoch).should_stop:
            break
    assert second.stopped_after == whole.stopped_after == 8 and second.state_dict() == whole.state_dict()
    # the callback's checkpoint state (a superset, best ε as a tensor) loads into the rule as well
    stopper = FrequencyEarlyStopping(**RULES["c"])
    for epoch, values in checks[:7]:
        stopper.evaluate(values, epoch)
    third = FrequencyStoppingRule(**RULES["c"])
    third.load_state_dict({**stopper.state_dict(), "best_score": float(stopper.best_score)})
    assert third.state_dict() == first.state_dict()


def test_history_checks_are_what_the_monitor_logs():
    history = FrequencyHistory(freqs=[2, 5], deltas=[0.0123456, 0.5], cutoff=2, target_amplitude=[1.0])
    rows = [(0, 0, [1.0, 1.0], [0.9, 0.8], math.nan), (0, 4, [0.5, 0.9], [0.7, 0.6], 0.8),  # a step-cadence record
            (1, 8, [0.3, 0.9], [math.nan, math.nan], 0.6)]  # filtering skipped
    for epoch, step, delta_f, e_low, share in rows:
        history.append(epoch=epoch, step=step, delta_f=delta_f, e_low=e_low, e_high=[1.0, 1.0], loss_low=2.0,
                       loss_high=1.0, low_share=share, output_amplitude=[0.0])
    checks = list(history_checks(history))
    assert [epoch for epoch, _ in checks] == [0, 1]
    f32 = np.float32  # what torch.tensor(value) holds in trainer.callback_metrics
    assert checks[0][1] == {"fp/delta_f/k=2": 0.5, "fp/delta_f/k=5": f32(0.9), "fp/e_low/delta=0.0123": f32(0.7),
                            "fp/e_low/delta=0.5": f32(0.6), "fp/e_high/delta=0.0123": 1.0, "fp/e_high/delta=0.5": 1.0,
                            "fp/loss_low": 2.0, "fp/loss_high": 1.0, "fp/low_share": f32(0.8)}
    assert not any(key.startswith("fp/e_low") for key in checks[1][1])
    # a replay skips the recording without e_low (the callback with strict=False skips it too)
    assert [d.epoch for d in FrequencyStoppingRule().replay(history)] == [0]
    assert [d.epoch for d in FrequencyStoppingRule(low_metric="delta_f").replay(history)] == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"low_threshold": -1.0}, "`low_threshold`"),
        ({"share_threshold": math.nan}, "`share_threshold`"),
        ({"arm_threshold": True}, "`arm_threshold`"),
        ({"low_threshold": None, "share_threshold": None, "plateau_rtol": None}, "no criterion"),
        ({"plateau_rtol": -0.1}, "`plateau_rtol`"),
        ({"plateau_window": 1.5}, "`plateau_window`"),
        ({"patience": 2.0}, "`patience`"),
        ({"n_low_freqs": 0}, "`n_low_freqs`"),
        ({"min_epochs": -2}, "`min_epochs`"),
        ({"low_metric": "e_high"}, "`low_metric`"),
        ({"delta": math.inf}, "`delta`"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrequencyStoppingRule(**kwargs)


def test_bad_input_to_update_replay_and_load():
    rule = FrequencyStoppingRule()
    with pytest.raises(ValueError, match="`epoch`"):
        rule.update({"fp/e_low/delta=1": 0.2}, -1)
    with pytest.raises(KeyError, match="no `fp/e_low/delta=<δ>` key"):
        rule.update({"fp/low_share": 0.2}, 1)
    with pytest.raises(TypeError, match="`history`"):
        rule.replay([0.1, 0.2])
    with pytest.raises(ValueError, match=r"`history` lacks the fields \['delta_f', 'deltas'"):
        rule.replay({"epoch": [1], "step": [1], "freqs": [1]})
    with pytest.raises(ValueError, match="`state_dict\\['criterion'\\]`"):
        rule.load_state_dict({"criterion": "tired"})
    with pytest.raises(ValueError, match="`criterion`"):
        rule.stop("bored", 3, "")


# ------------------------------------------------------------------------------------------ (d) on a recorded run
# fp/denoised_loss (δ = m/1000, input space) and the clean test loss of a recorded MNIST run (3,000 images, 20%
# label noise, FC tanh net, Adam 1e-3; examples/experiments/early_stopping.py, mnist-20 seed 0), epochs 0..15
RECORDED_DENOISED = [2.2978, 1.4267, 1.2816, 1.2206, 1.2002, 1.1809, 1.177, 1.1476, 1.1802, 1.1812, 1.1622, 1.171,
                     1.1738, 1.1733, 1.2051, 1.2164]
RECORDED_TEST_LOSS = [2.2982, 0.981, 0.7018, 0.5932, 0.5807, 0.5513, 0.5591, 0.5179, 0.5504, 0.5627, 0.5448, 0.5162,
                      0.5536, 0.5261, 0.5407, 0.5679]


def _recorded_history():
    history = FrequencyHistory(freqs=[3], deltas=[0.5], cutoff=3, target_amplitude=[1.0])
    for epoch in range(len(RECORDED_DENOISED)):
        history.append(epoch=epoch, step=30 * epoch, delta_f=[0.5], e_low=[0.9], e_high=[0.9], loss_low=1.0,
                       loss_high=1.0, low_share=0.9 if epoch else math.nan, output_amplitude=[0.0])
    return {**history.as_arrays(), "denoised_loss": np.asarray(RECORDED_DENOISED)}


def test_criterion_d_replayed_on_a_recorded_run():
    rule = FrequencyStoppingRule(low_threshold=None, share_threshold=None, plateau_rtol=None, denoised_patience=4)
    decisions = rule.replay(_recorded_history())
    # minimum 1.1476 after epoch 7; epochs 8, 9, 10, 11 bring no new minimum -> stop after 11 (what Lightning's
    # EarlyStopping(patience=4) on the same values does)
    assert (rule.criterion, rule.stopped_after, rule.denoised_best_epoch) == ("denoised_minimum", 11, 7)
    assert [d.epoch for d in decisions] == list(range(1, 12))
    assert decisions[-1].denoised == np.float32(1.171)  # read as float32, as trainer.callback_metrics holds it
    # restoring the best-scored epoch: test loss 0.5179, 0.3% above the run's best (0.5162, epoch 11)
    assert RECORDED_TEST_LOSS[rule.denoised_best_epoch] / min(RECORDED_TEST_LOSS) == pytest.approx(1.0033, abs=1e-4)
    # with the frequency criteria on as well, the first that fires decides; ε = 0.9 fires none of them here
    both = FrequencyStoppingRule(denoised_patience=4)
    both.replay(_recorded_history())
    assert (both.criterion, both.stopped_after) == ("denoised_minimum", 11)
    # a history without the score cannot feed (d): every recording is skipped, nothing fires
    without = FrequencyStoppingRule(low_threshold=None, share_threshold=None, plateau_rtol=None, denoised_patience=4)
    assert without.replay({k: v for k, v in _recorded_history().items() if k != "denoised_loss"}) == []


def test_criterion_d_bad_patience():
    with pytest.raises(ValueError, match="`denoised_patience`"):
        FrequencyStoppingRule(denoised_patience=0)
