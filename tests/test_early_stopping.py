import logging
import math
import types
import warnings

import pytest
import torch
from lightning.pytorch import Callback as L_Callback
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from fp_lightning.callbacks.early_stopping import FrequencyEarlyStopping
from fp_lightning.callbacks.monitor import FrequencyPrincipleMonitor
from fp_lightning.record import FrequencyHistory
from tests._lightning import loader, make_module, regression_data
from tests.conftest import SILENT, tiny_trainer

DELTAS = (0.1, 1.0, 10.0)  # "middle" picks δ = 1
MIDDLE = "fp/e_low/delta=1"


def _metrics(e_low, share=None, e_low_other=0.99):
    values = {f"fp/e_low/delta={d:g}": (e_low if d == 1.0 else e_low_other) for d in DELTAS}
    values.update({f"fp/e_high/delta={d:g}": 0.9 for d in DELTAS})
    values.update({"fp/delta_f/k=3": 0.5, "fp/delta_f/k=7": 0.8, "fp/loss_low": 1.0, "fp/loss_high": 1.0})
    if share is not None:
        values["fp/low_share"] = share
    return values


def _replay(stopper, script, epochs):
    """Feed one check per epoch 1..epochs; return the epoch of the first stop (None if none)."""
    for epoch in range(1, epochs + 1):
        if stopper.evaluate(script(epoch), epoch)[0]:
            return epoch
    return None


# e_low(middle δ) and low_share per epoch, for each criterion -------------------------------------------------------
LOW = {1: 0.9, 2: 0.5, 3: 0.2, 4: 0.04, 5: 0.03, 6: 0.02}  # ≤ 0.05 from epoch 4 on


def script_a(epoch):
    return _metrics(LOW.get(epoch, 0.01), share=0.9)


SHARE_B = {2: 0.1, 5: 0.4, 6: 0.8, 7: 0.45, 8: 0.3, 9: 0.2}  # dip at 2 is before arming; 7, 8, 9 in a row


PLATEAU = {1: 0.8, 2: 0.4, 3: 0.25, 4: 0.2, 5: 0.15, 6: 0.12, 7: 0.115, 8: 0.11, 9: 0.13, 10: 0.105}


def script_c(epoch):
    return _metrics(PLATEAU.get(epoch, 0.104), share=0.9)


# each criterion alone (the others disabled), so a test sees exactly one rule
# (the scripts put ε at the middle δ; the other widths read 0.99)
ONLY_A = dict(low_threshold=0.05, share_threshold=None, plateau_rtol=None, patience=3, delta="middle")
ONLY_B = dict(low_threshold=None, share_threshold=0.5, arm_threshold=0.3, plateau_rtol=None, patience=3,
              delta="middle")
ONLY_C = dict(low_threshold=None, share_threshold=None, arm_threshold=0.3, plateau_rtol=0.1, plateau_window=0.5,
              patience=3, delta="middle")


def script_b(epoch):
    low = {1: 0.8, 2: 0.5}.get(epoch, 0.25 if epoch == 3 else 0.2)  # armed (≤ 0.3) at epoch 3, never ≤ 0.05
    return _metrics(low, share=SHARE_B.get(epoch, 0.9 if epoch < 9 else 0.2))


class ScriptedMonitor(FrequencyPrincipleMonitor):
    """A monitor whose logged values come from a script (epoch -> values); everything else is the real glue."""

    def __init__(self, script, **kw):
        super().__init__(probe_size=16, log_images=False, history_file=None, **kw)
        self.script = script

    def _measure(self, trainer, pl_module, epoch, timing):
        values = self.script(epoch)
        if self.history is None:
            self.history = FrequencyHistory(freqs=[3, 7], deltas=list(DELTAS), cutoff=3, target_amplitude=[1.0])
        self.history.append(epoch=epoch, step=trainer.global_step, delta_f=[0.5, 0.8], e_low=[0.9] * 3,
                            e_high=[0.9] * 3, loss_low=1.0, loss_high=1.0,
                            low_share=values.get("fp/low_share", math.nan), output_amplitude=[0.0])
        return values


def _fit(stopper, script=script_a, epochs=20, root="lightning.pytorch", monitor_kw=None, ckpt_path=None,
         callbacks=(), **trainer_kw):
    import importlib

    L = importlib.import_module(root)
    L.seed_everything(0, verbose=False)
    monitor = ScriptedMonitor(script, **(monitor_kw or {}))
    trainer = tiny_trainer(L, max_epochs=epochs, callbacks=[monitor, stopper, *callbacks], **trainer_kw)
    trainer.fit(make_module(root), loader(regression_data(64), batch_size=64), ckpt_path=ckpt_path)
    return trainer, monitor


# ---------------------------------------------------------------------------------------------- the decision rule
def test_criterion_a_fires_at_the_implied_epoch():
    stopper = FrequencyEarlyStopping(**ONLY_A)
    assert _replay(stopper, script_a, 30) == 6  # ≤ 0.05 at 4, 5, 6
    assert stopper.rule.criterion == "low_converged" and stopper.rule.stopped_after == 6 and stopper.stopped_epoch == 5
    assert stopper.stopping_reason == EarlyStoppingReason.STOPPING_THRESHOLD


def test_criterion_b_fires_at_the_implied_epoch_only_after_arming():
    stopper = FrequencyEarlyStopping(**{**ONLY_B, "low_threshold": 0.05})
    assert _replay(stopper, script_b, 30) == 9  # 5 alone, reset at 6, then 7, 8, 9
    assert stopper.rule.criterion == "high_frequency_turn" and stopper.rule.armed_epoch == 3
    # unarmed (arm_threshold=None): the dip at epoch 2 counts
    unarmed = FrequencyEarlyStopping(**{**ONLY_B, "arm_threshold": None, "patience": 1})
    assert _replay(unarmed, script_b, 30) == 2 and unarmed.rule.armed_epoch == 1


def test_criterion_c_fires_at_the_implied_epoch():
    # window max(3, ⌈e/2⌉); best ε: 0.115 at 7, 0.104 from 11 on; at 14 the best 7 epochs earlier is 0.115 and
    # 0.104 > 0.9 × 0.115 = 0.1035 (at 12 and 13: 0.104 < 0.9 × 0.12)
    stopper = FrequencyEarlyStopping(**ONLY_C)
    assert _replay(stopper, script_c, 40) == 14
    assert stopper.rule.criterion == "low_plateau" and stopper.rule.armed_epoch == 3
    assert stopper.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert "(c) low_plateau" in stopper.stopping_reason_message and "0.104 > (1 − plateau_rtol) × 0.115" in (
        stopper.stopping_reason_message)
    # a smaller tolerance needs a flatter plateau; unarmed (ε never ≤ 0.1) it never fires
    assert _replay(FrequencyEarlyStopping(**{**ONLY_C, "plateau_rtol": 0.01}), script_c, 40) == 20
    assert _replay(FrequencyEarlyStopping(**{**ONLY_C, "arm_threshold": 0.1}), script_c, 40) is None
    # a fixed window (plateau_window=0) of patience epochs: at 12, 0.104 > 0.9 × best ≤ 7 (0.115)
    assert _replay(FrequencyEarlyStopping(**{**ONLY_C, "plateau_window": 0.0, "patience": 5}), script_c, 40) == 12


def test_patience_and_min_epochs():
    assert _replay(FrequencyEarlyStopping(**{**ONLY_A, "patience": 1}), script_a, 30) == 4
    assert _replay(FrequencyEarlyStopping(**{**ONLY_A, "patience": 5}), script_a, 30) == 8
    # warm-up: checks before epoch 8 are ignored, so 8, 9, 10
    assert _replay(FrequencyEarlyStopping(**ONLY_A, min_epochs=8), script_a, 30) == 10
    # arming is ignored during warm-up too: (b) armed at 8; share ≤ 0.5 at 8, 9, 10
    late = FrequencyEarlyStopping(**ONLY_B, min_epochs=8)
    assert _replay(late, script_b, 30) == 10 and late.rule.armed_epoch == 8


def test_disabled_criteria_and_delta_f():
    only_b = {**ONLY_A, "low_threshold": None, "share_threshold": 0.5}
    only_a = {**ONLY_B, "share_threshold": None, "low_threshold": 0.05}
    assert _replay(FrequencyEarlyStopping(**only_b), script_a, 30) is None  # low_share stays 0.9
    assert _replay(FrequencyEarlyStopping(**only_a), script_b, 30) is None  # ε stays 0.2
    # Δ_F over the lowest tracked frequency: k=3 → 0.5 ≤ 0.6 at once
    stopper = FrequencyEarlyStopping(**{**ONLY_A, "patience": 1, "low_threshold": 0.6}, low_metric="delta_f")
    assert _replay(stopper, script_a, 5) == 1 and "Δ_F(k∈{3})" in stopper.stopping_reason_message
    # over the two lowest: max(0.5, 0.8) = 0.8 > 0.6, never
    both = FrequencyEarlyStopping(**{**ONLY_A, "low_threshold": 0.6}, low_metric="delta_f", n_low_freqs=2)
    assert _replay(both, script_a, 5) is None
    # an explicit δ and the extreme ones
    assert FrequencyEarlyStopping(delta=10.0).rule.low_error(_metrics(0.3))[1] == 0.99
    assert FrequencyEarlyStopping(delta="smallest").rule.low_error(_metrics(0.3)) == ("e_low(δ=0.1)", 0.99)
    with pytest.raises(KeyError, match="not among the logged"):
        FrequencyEarlyStopping(delta=2.0).rule.low_error(_metrics(0.3))


def test_non_finite_stops_at_once():
    stopper = FrequencyEarlyStopping(delta="middle")
    assert stopper.evaluate(_metrics(0.5, share=0.9), 1) == (False, None)
    stop, message = stopper.evaluate(_metrics(math.nan, share=0.9), 2)
    assert stop and stopper.rule.criterion == "non_finite" and "not finite" in message
    assert stopper.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC


def test_state_dict_round_trip_gives_the_same_decision():
    full = FrequencyEarlyStopping(**ONLY_B)
    assert _replay(full, script_b, 30) == 9
    first = FrequencyEarlyStopping(**ONLY_B)
    for epoch in range(1, 8):  # armed, and one check of the run 7, 8, 9 counted
        assert not first.evaluate(script_b(epoch), epoch)[0]
    state = first.state_dict()
    assert state["armed_epoch"] == 3 and state["share_count"] == 1
    resumed = FrequencyEarlyStopping(**ONLY_B)
    resumed.load_state_dict(state)
    assert not resumed.evaluate(script_b(8), 8)[0]
    assert resumed.evaluate(script_b(9), 9)[0]
    assert resumed.state_dict() == full.state_dict()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"low_threshold": -1.0}, "`low_threshold`"),
        ({"share_threshold": math.inf}, "`share_threshold`"),
        ({"arm_threshold": "x"}, "`arm_threshold`"),
        ({"low_threshold": None, "share_threshold": None, "plateau_rtol": None}, "no criterion"),
        ({"plateau_rtol": 1.0}, "`plateau_rtol`"),
        ({"plateau_window": 2.0}, "`plateau_window`"),
        ({"patience": 0}, "`patience`"),
        ({"min_epochs": -1}, "`min_epochs`"),
        ({"n_low_freqs": 0}, "`n_low_freqs`"),
        ({"low_metric": "loss"}, "`low_metric`"),
        ({"delta": "median"}, "`delta`"),
    ],
)
def test_constructor_errors_name_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrequencyEarlyStopping(**kwargs)


# ---------------------------------------------------------------------------------------------- in a Trainer
def test_trainer_stops_at_the_implied_epoch_without_validation(caplog):
    stopper = FrequencyEarlyStopping(**ONLY_A, verbose=True)
    assert isinstance(stopper, EarlyStopping)
    with caplog.at_level(logging.INFO):
        trainer, monitor = _fit(stopper, script_a, epochs=20)
    assert monitor.history.records["epoch"] == [0, 1, 2, 3, 4, 5, 6]  # trained 6 epochs, no more
    assert stopper.stopped_epoch == 5 and stopper.rule.stopped_after == 6 and trainer.should_stop
    assert trainer.early_stopping_callback is stopper
    message = stopper.stopping_reason_message
    assert "(a) low_converged" in message and "e_low(δ=1) = 0.02" in message and "low_threshold = 0.05" in message
    assert message in caplog.text


def test_trainer_criterion_b_verbose_message(caplog):
    stopper = FrequencyEarlyStopping(**ONLY_B, verbose=True)
    with caplog.at_level(logging.INFO):
        _fit(stopper, script_b, epochs=20)
    assert stopper.rule.criterion == "high_frequency_turn" and stopper.rule.stopped_after == 9
    assert "armed at epoch 3" in caplog.text
    assert "(b) high_frequency_turn" in caplog.text and "low_share = 0.2 ≤ share_threshold = 0.5" in caplog.text


def test_checks_only_epochs_the_monitor_measured():
    # measuring every 2 epochs: checks at 2, 4, 6, 8 (≤ 0.05 from 4): patience 3 → 8
    stopper = FrequencyEarlyStopping(**ONLY_A)
    _fit(stopper, script_a, epochs=20, monitor_kw={"every_n_epochs": 2})
    assert stopper.rule.stopped_after == 8


def test_dry_run_records_but_trains_on():
    stopper = FrequencyEarlyStopping(**ONLY_A, dry_run=True)
    trainer, monitor = _fit(stopper, script_a, epochs=10)
    assert monitor.history.records["epoch"][-1] == 10 and stopper.rule.stopped_after == 6
    assert "Dry run" in stopper.stopping_reason_message


def test_resume_from_checkpoint_keeps_the_decision(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    first = FrequencyEarlyStopping(**ONLY_B)
    _fit(first, script_b, epochs=7, callbacks=[ckpt], enable_checkpointing=True, default_root_dir=tmp_path)
    assert first.rule.criterion is None and first.rule.armed_epoch == 3 and first.rule.share_count == 1
    resumed = FrequencyEarlyStopping(**ONLY_B)
    _fit(resumed, script_b, epochs=20, ckpt_path=str(tmp_path / "last.ckpt"), default_root_dir=tmp_path)
    rule = resumed.rule
    assert rule.armed_epoch == 3 and rule.stopped_after == 9 and rule.criterion == "high_frequency_turn"


# the callback's state as the code before FrequencyStoppingRule wrote it (ONLY_B, script_b, checks 1 to 7)
STATE_BEFORE_THE_RULE = {
    "wait_count": 1, "stopped_epoch": 0, "best_score": torch.tensor(0.2, dtype=torch.float64), "patience": 3,
    "stopping_reason": 0, "stopping_reason_message": None, "criterion": None, "stopped_after": None,
    "armed_epoch": 3, "low_count": 0, "share_count": 1, "last_values": {"e_low(δ=1)": 0.2, "fp/low_share": 0.45},
    "best_trace": [[1, 0.8], [2, 0.5], [3, 0.25], [4, 0.2], [5, 0.2], [6, 0.2], [7, 0.2]],
}


def test_checkpoint_written_before_the_rule_loads(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)
    first = FrequencyEarlyStopping(**ONLY_B)
    _fit(first, script_b, epochs=7, callbacks=[ckpt], enable_checkpointing=True, default_root_dir=tmp_path)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert set(checkpoint["callbacks"][first.state_key]) == set(STATE_BEFORE_THE_RULE)  # the same keys as before
    checkpoint["callbacks"][first.state_key] = STATE_BEFORE_THE_RULE
    torch.save(checkpoint, tmp_path / "before.ckpt")
    resumed = FrequencyEarlyStopping(**ONLY_B)
    _fit(resumed, script_b, epochs=20, ckpt_path=str(tmp_path / "before.ckpt"), default_root_dir=tmp_path)
    # without the loaded state it would arm at 8 and stop at 10
    rule = resumed.rule
    assert rule.armed_epoch == 3 and rule.stopped_after == 9 and rule.criterion == "high_frequency_turn"
    assert resumed.rule.best_trace[:7] == STATE_BEFORE_THE_RULE["best_trace"]


def test_error_without_a_monitor():
    seed_everything(0, verbose=False)
    trainer = Trainer(max_epochs=2, callbacks=[FrequencyEarlyStopping()], **SILENT)
    with pytest.raises(RuntimeError, match="needs a FrequencyPrincipleMonitor"):
        trainer.fit(make_module(), loader(regression_data(64)))


def test_error_when_keys_are_missing():
    def no_e_low(epoch):
        return {key: v for key, v in script_a(epoch).items() if not key.startswith("fp/e_low")}

    with pytest.raises(RuntimeError, match=r"fp/e_low/delta=<…> missing from trainer.callback_metrics"):
        _fit(FrequencyEarlyStopping(), no_e_low, epochs=3)
    lenient = FrequencyEarlyStopping(strict=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(lenient, no_e_low, epochs=3)
    assert lenient.rule.criterion is None and sum("missing from" in str(w.message) for w in caught) == 1


def test_same_decision_on_every_rank():
    """The decision goes through the strategy's reduce_boolean_decision(all=False), as in EarlyStopping."""
    calls = []

    def reduce(decision, all):
        calls.append((decision, all))
        return True  # another rank decided to stop

    stopper = FrequencyEarlyStopping()
    history = FrequencyHistory(freqs=[3], deltas=list(DELTAS), cutoff=3, target_amplitude=[1.0])
    history.records["epoch"], history.records["step"] = [0, 1], [0, 8]
    stopper._monitor = types.SimpleNamespace(history=history)
    trainer = types.SimpleNamespace(current_epoch=0, callback_metrics=_metrics(0.9, share=0.9), should_stop=False,
                                    strategy=types.SimpleNamespace(reduce_boolean_decision=reduce))
    stopper._run_early_stopping_check(trainer)
    assert calls == [(False, False)] and trainer.should_stop and stopper.rule.criterion == "other_rank"


def test_pytorch_lightning_trainer():
    pl = pytest.importorskip("pytorch_lightning")
    stopper = FrequencyEarlyStopping(**ONLY_A)
    assert isinstance(stopper, pl.callbacks.EarlyStopping)
    trainer, monitor = _fit(stopper, script_a, epochs=20, root="pytorch_lightning")
    assert stopper.rule.stopped_after == 6 and monitor.history.records["epoch"][-1] == 6
    assert stopper.stopping_reason == pl.callbacks.early_stopping.EarlyStoppingReason.STOPPING_THRESHOLD


def test_order_in_callbacks_does_not_matter():
    seed_everything(0, verbose=False)
    stopper = FrequencyEarlyStopping(**ONLY_A)
    trainer = Trainer(max_epochs=20, callbacks=[stopper, ScriptedMonitor(script_a)], **SILENT)
    trainer.fit(make_module(), loader(regression_data(64), batch_size=64))
    assert stopper.rule.stopped_after == 6


@pytest.mark.slow
def test_real_fig6_run_stops_near_the_best_test_loss():
    """The paper's Fig. 6 task (noisy sin staircase, 1-200-200-200-100-1 tanh net, full-batch Adam), defaults only.

    Honest scope: with lr 1e-3 (the paper's 2e-5 is too slow for a test) the test loss falls until epoch ~190 and is
    then flat within 1% for hundreds of epochs (examples/experiments/early_stopping.py), so "smaller test loss than
    the last epoch" cannot be asserted on a short budget. Asserted instead: it stops on its own before max_epochs,
    after the fit of the dominant low frequency, within 2% of the best test loss seen during the run.
    """
    import torch.nn.functional as F

    from fp_lightning.data import Staircase1DDataModule
    from fp_lightning.models import TanhMLP1D

    dm = Staircase1DDataModule(preset="fig6", seed=0)
    x_test, y_test = dm.x_test[::6], dm.y_test[::6]  # 1000 of the 6000 noisy test points
    losses = []

    class TestLoss(L_Callback):
        def on_train_epoch_end(self, trainer, module):
            with torch.no_grad():
                losses.append(F.mse_loss(module(x_test), y_test).item())

    seed_everything(0, verbose=False)
    stopper = FrequencyEarlyStopping()
    monitor = FrequencyPrincipleMonitor(log_images=False, history_file=None)
    trainer = Trainer(max_epochs=320, callbacks=[monitor, TestLoss(), stopper], **SILENT)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 300-sample full batches: threads cost more than they give on a shared CPU
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(TanhMLP1D(lr=1e-3, init_seed=0), dm.train_dataloader())
    finally:
        torch.set_num_threads(threads)
    assert stopper.rule.criterion in ("low_converged", "high_frequency_turn", "low_plateau")
    assert stopper.rule.stopped_after == len(losses) < 320
    assert losses[-1] <= 1.02 * min(losses)
    assert losses[-1] < 0.1 * losses[0]


# ---------------------------------------------------------------------------------------------- (d) denoised score
# fp/denoised_loss per epoch: best 1.1 at epoch 5; 6 worse, 7 ties (no new minimum: min_delta = 0), 8 worse
DENOISED = {1: 2.0, 2: 1.5, 3: 1.2, 4: 1.25, 5: 1.1, 6: 1.15, 7: 1.1, 8: 1.3, 9: 0.9}
ONLY_D = dict(low_threshold=None, share_threshold=None, plateau_rtol=None, denoised_patience=3)


def script_d(epoch):
    """Only the denoised score, as a monitor that measures nothing else logs it."""
    return {"fp/denoised_loss": DENOISED.get(epoch, 1.0)}


def test_criterion_d_fires_at_the_implied_epoch():
    stopper = FrequencyEarlyStopping(**ONLY_D)
    assert stopper.monitor == "fp/denoised_loss"
    assert _replay(stopper, script_d, 30) == 8
    assert stopper.rule.criterion == "denoised_minimum" and stopper.rule.denoised_best_epoch == 5
    assert stopper.stopping_reason == EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert "has not gone below its minimum 1.1 (after epoch 5) on 3 consecutive checks" in (
        stopper.stopping_reason_message)
    # patience 4 sees the new minimum at epoch 9 first
    assert _replay(FrequencyEarlyStopping(**{**ONLY_D, "denoised_patience": 4}), script_d, 30) == 13


def test_criterion_d_combined_with_the_frequency_criteria():
    def both(epoch):
        return {**script_a(epoch), **script_d(epoch)}

    # (a) alone stops at 6 (ε ≤ 0.05 at 4, 5, 6); with (d) at patience 3 as well, (a) still fires first
    assert _replay(FrequencyEarlyStopping(**ONLY_A, denoised_patience=3), both, 30) == 6
    # (d) at patience 1 fires at 4 (1.25 > 1.2), before (a)
    stopper = FrequencyEarlyStopping(**ONLY_A, denoised_patience=1)
    assert _replay(stopper, both, 30) == 4 and stopper.rule.criterion == "denoised_minimum"
    with pytest.raises(KeyError, match="denoised_patience=None"):
        FrequencyEarlyStopping(**ONLY_A, denoised_patience=3).evaluate(script_a(1), 1)


def test_criterion_d_stops_where_lightning_early_stopping_does(tmp_path):
    """On the same logged score, (d) and Lightning's own EarlyStopping stop after the same epoch, and a
    ModelCheckpoint on the score keeps the weights of (d)'s best epoch."""
    ours = FrequencyEarlyStopping(**ONLY_D, dry_run=True)
    theirs = EarlyStopping(monitor="fp/denoised_loss", mode="min", patience=3, check_on_train_epoch_end=True)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="fp/denoised_loss", mode="min", save_on_train_epoch_end=True)
    trainer, _ = _fit(ours, script_d, epochs=20, callbacks=[theirs, best], enable_checkpointing=True)
    assert ours.rule.stopped_after == 8 and theirs.stopped_epoch == ours.stopped_epoch == 7
    assert trainer.current_epoch == 8  # stopped by EarlyStopping (ours is a dry run)
    assert best.best_model_score.item() == pytest.approx(1.1) and "epoch=4-" in best.best_model_path
    assert ours.rule.denoised_best_epoch == 5  # completed epochs: the checkpoint of 0-based epoch 4


def test_criterion_d_state_dict_and_missing_key():
    first = FrequencyEarlyStopping(**ONLY_D)
    for epoch in range(1, 7):
        assert not first.evaluate(script_d(epoch), epoch)[0]
    state = first.state_dict()
    assert (state["denoised_best"], state["denoised_best_epoch"], state["denoised_count"]) == (1.1, 5, 1)
    resumed = FrequencyEarlyStopping(**ONLY_D)
    resumed.load_state_dict(state)
    assert not resumed.evaluate(script_d(7), 7)[0] and resumed.evaluate(script_d(8), 8)[0]
    with pytest.raises(RuntimeError, match=r"fp/denoised_loss \(needed by `denoised_patience`\) missing"):
        _fit(FrequencyEarlyStopping(**ONLY_D), script_a, epochs=3)


def test_criterion_d_bad_patience_names_the_argument():
    with pytest.raises(ValueError, match="`denoised_patience`"):
        FrequencyEarlyStopping(denoised_patience=0)


def test_criterion_d_patience_as_a_fraction_of_the_budget():
    """0.1 of max_epochs=30 is 3 checks: the stop of the fixed patience 3 (epoch 8); no budget is a clear error."""
    stopper = FrequencyEarlyStopping(**{**ONLY_D, "denoised_patience": 0.1})
    trainer, _ = _fit(stopper, script_d, epochs=30)
    assert stopper.denoised_patience == 3 and stopper.rule.stopped_after == 8 and trainer.current_epoch == 8
    with pytest.raises(ValueError, match=r"`denoised_patience=0\.1` is a fraction of the Trainer's max_epochs"):
        _fit(FrequencyEarlyStopping(**{**ONLY_D, "denoised_patience": 0.1}), script_d, epochs=-1, max_steps=20)
    with pytest.raises(ValueError, match="`denoised_patience`"):
        FrequencyEarlyStopping(denoised_patience=1.5)
    unresolved = FrequencyEarlyStopping(**{**ONLY_D, "denoised_patience": 0.1})
    assert unresolved.denoised_patience == 0.1
    with pytest.raises(ValueError, match="known once `fit` starts"):
        unresolved.evaluate(script_d(1), 1)
