"""Several monitors in one Trainer: a name per monitor, shared frequencies, the generalization gap and page.

A training-probe monitor and a held-out one (``name="val"``, ``spectral=train_monitor``) log, draw, checkpoint and
resume independently; Δ_F on the held-out probe is checked against a direct sum on the training probe's projection;
``FrequencyEarlyStopping`` and ``ModelCheckpoint`` watch either monitor's keys.
"""

from __future__ import annotations

import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from fp_lightning import FrequencyEarlyStopping, FrequencyPrincipleMonitor
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from fp_lightning.record import (
    check_name,
    gap_values,
    history_file_name,
    key_prefix,
    load_history,
    logged_values,
    paired_recordings,
    with_prefix,
)
from fp_lightning.report import generalization_summary, reference_of, report_file
from tests._lightning import loader, make_module, regression_data
from tests.conftest import QUIET, SILENT

FREQS = [1, 5]


def _pair(**kwargs):
    """A training-probe monitor and a held-out twin on 300 other samples of the same task, sharing its k."""
    train = FrequencyPrincipleMonitor(probe_size=200, spectral=ProjectedSpectralError(n_freqs=16, frequencies=FREQS),
                                      **kwargs)
    val = FrequencyPrincipleMonitor(probe_size=5000, probe_dataloader=loader(regression_data(300, seed=1)),
                                    spectral=train, name="val", **kwargs)
    return train, val


# ---------------------------------------------------------------------- keys and names (no Trainer)
def test_prefix_helpers_keep_the_default_keys_and_prefix_a_name():
    assert key_prefix(None) == "fp" and key_prefix("val") == "fp_val"
    assert with_prefix("fp/e_low/delta=0.5", "fp_val") == "fp_val/e_low/delta=0.5"
    assert history_file_name(None) == "fp_history.npz" and history_file_name("val") == "fp_val_history.npz"
    plain = logged_values([1], [0.5], [0.25], [0.1], [0.8], 2.0, 1.0, 0.75, 0.3)
    named = logged_values([1], [0.5], [0.25], [0.1], [0.8], 2.0, 1.0, 0.75, 0.3, prefix="fp_val")
    assert list(named) == [key.replace("fp/", "fp_val/") for key in plain]
    assert list(named.values()) == list(plain.values())
    assert gap_values([1, 4], [0.5, 0.25], [0.125, 0.5], "fp_val") == {"fp_val/delta_f_gap/k=1": 0.375,
                                                                      "fp_val/delta_f_gap/k=4": -0.25}


@pytest.mark.parametrize("bad", ["", "a/b", "val set", "_x", 3])
def test_bad_name_is_refused_naming_the_argument(bad):
    with pytest.raises(ValueError, match="`name`"):
        FrequencyPrincipleMonitor(name=bad)
    with pytest.raises(ValueError, match="`name`"):
        check_name(bad)


def test_state_keys_differ_by_name_and_probe_source_and_the_default_key_is_unchanged():
    train = FrequencyPrincipleMonitor(probe_size=200)
    assert train.state_key == "FrequencyPrincipleMonitor{'probe_size': 200, 'n_freqs': 64, 'seed': 0}"
    held = FrequencyPrincipleMonitor(probe_size=200, probe_dataloader=loader(regression_data(300, seed=1)))
    named = FrequencyPrincipleMonitor(probe_size=200, name="train")
    keys = {train.state_key, held.state_key, named.state_key}
    assert len(keys) == 3
    Trainer(callbacks=[train, held, named], **SILENT)  # Lightning refuses equal state keys of stateful callbacks


def test_the_pair_pickles_and_copies_together():
    train, val = _pair()
    train_copy, val_copy = pickle.loads(pickle.dumps([train, val]))
    assert val_copy.reference is train_copy and val_copy.prefix == "fp_val"
    assert val_copy.state_key == val.state_key


def test_paired_recordings_refuses_other_frequencies():
    a = {"epoch": np.array([0]), "step": np.array([0]), "freqs": np.array([1, 2]), "delta_f": np.ones((1, 2))}
    b = dict(a, freqs=np.array([1, 3]))
    with pytest.raises(ValueError, match="`reference`"):
        paired_recordings(a, b)


def test_a_reference_outside_the_trainer_is_a_clear_error(tmp_path):
    train, val = _pair()
    with pytest.raises(ValueError, match="`spectral`"):
        Trainer(max_epochs=1, callbacks=[val], **SILENT).fit(make_module(), loader(regression_data()))


# ---------------------------------------------------------------------- two monitors in one real Trainer
def _direct_delta_f(coords: np.ndarray, y: np.ndarray, h: np.ndarray, freqs: list[int]) -> np.ndarray:
    """Δ_F(k) = |Σ_j (y_j − h_j) e^{−2πik x_j}| / |Σ_j y_j e^{−2πik x_j}|, one channel, by a direct sum."""
    phase = np.exp(-2j * np.pi * np.outer(freqs, coords))
    return np.abs(phase @ (y - h)) / np.abs(phase @ y)


@pytest.mark.slow
def test_two_monitors_log_draw_and_measure_on_their_own_probe(tmp_path):
    train, val = _pair(filtering=LowHighFrequencyError(deltas=[0.05]))  # one δ: fewer figures to draw
    module = make_module()
    trainer = Trainer(max_epochs=3, callbacks=[val, train], **QUIET,  # val first: it waits for train's fit
                      logger=[CSVLogger(tmp_path), TensorBoardLogger(tmp_path, name="tb")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, loader(regression_data()))
    messages = [str(w.message) for w in caught]
    assert not any("training data has" in m for m in messages), messages  # probe_size > 300: no such warning

    metrics = trainer.callback_metrics
    for k in FREQS:
        assert f"fp/delta_f/k={k}" in metrics and f"fp_val/delta_f/k={k}" in metrics
    # both recorded at the same steps; the held-out one waited for the reference's fit at the start
    assert train.history.records["step"] == val.history.records["step"] == [0, 8, 16, 24]
    assert val.history.freqs == train.history.freqs == FREQS
    assert torch.equal(val.spectral.projection.directions, train.spectral.projection.directions)

    # Δ_F on each probe by a direct sum, on the training probe's projection, with the trained weights
    module.eval()
    found = {}
    for name, monitor in (("train", train), ("val", val)):
        x, y = monitor.probe.inputs, monitor.probe.targets
        with torch.no_grad():
            h = module(x)
        coords = train.spectral.projection.transform(x)[:, 0].numpy()
        found[name] = _direct_delta_f(coords, y[:, 0].double().numpy(), h[:, 0].double().numpy(), FREQS)
        prefix = key_prefix(monitor.name)
        logged = [float(metrics[f"{prefix}/delta_f/k={k}"]) for k in FREQS]
        np.testing.assert_allclose(logged, found[name], rtol=1e-5)
    gaps = [float(metrics[f"fp_val/delta_f_gap/k={k}"]) for k in FREQS]
    np.testing.assert_allclose(gaps, found["val"] - found["train"], rtol=1e-4, atol=1e-6)
    assert not np.allclose(found["val"], found["train"])  # the probes differ, so would a mix-up

    # every logger row of each monitor, under its own prefix, at the same steps
    # TensorBoard: both monitors' images, and one custom-scalars layout (the last written) with both prefixes
    events = EventAccumulator(str(next((tmp_path / "tb").rglob("events*"))), size_guidance={"tensors": 0})
    events.Reload()
    assert {"fp/delta_f_heatmap", "fp_val/delta_f_heatmap", "fp_val/generalization"} <= set(events.Tags()["images"])
    layout = layout_pb2.Layout()
    layout.ParseFromString(events.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    titles = [category.title for category in layout.category]
    assert titles[0] == "fp: Δ_F per tracked k" and "fp_val: Δ_F held-out − training (generalization gap)" in titles

    csv = (Path(trainer.log_dir) / "metrics.csv").read_text().splitlines()
    header = csv[0].split(",")
    assert "fp/delta_f/k=1" in header and "fp_val/delta_f/k=1" in header and "fp_val/delta_f_gap/k=1" in header
    folder = Path(trainer.log_dir)
    for name in ("fp_history.npz", "fp_val_history.npz", "fp_report.png", "fp_val_report.png",
                 "fp_val_generalization.png", "fp_panels/delta_f_heatmap.png", "fp_panels/fp_val_delta_f_heatmap.png",
                 "fp_panels/fp_val_generalization.png"):
        assert (folder / name).is_file(), name
    meta = load_history(folder / "fp_val_history.npz")["meta"]
    assert meta["name"] == "val" and meta["reference_history"] == "fp_history.npz"
    assert meta["probe"] == "DataLoader of 300 samples" or meta["probe"].endswith("of 300 samples")
    assert reference_of(folder / "fp_val_history.npz") == folder / "fp_history.npz"
    assert report_file(folder / "fp_val_history.npz") == "fp_val_report.png"
    summary = generalization_summary(folder / "fp_val_history.npz", folder / "fp_history.npz")
    last = summary.splitlines()[2].split()  # the row of k = 1
    assert [float(v) for v in last[1:4]] == pytest.approx([round(found["train"][0], 3), round(found["val"][0], 3),
                                                           round(found["val"][0] - found["train"][0], 3)], abs=1.5e-3)


@pytest.mark.slow
def test_two_monitors_checkpoint_and_resume_independently(tmp_path):
    first_train, first_val = _pair(log_images=False, history_file=None)  # no files: the state is the point
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    Trainer(max_epochs=2, callbacks=[first_train, first_val, ckpt], default_root_dir=tmp_path, logger=False, **QUIET,
            ).fit(make_module(), loader(regression_data()))
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["callbacks"]
    assert first_train.state_key in state and first_val.state_key in state

    train, val = _pair(log_images=False, history_file=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(max_epochs=4, callbacks=[val, train], default_root_dir=tmp_path, logger=False, **QUIET).fit(
            make_module(), loader(regression_data()), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert not any("differs from the one" in str(w.message) for w in caught)
    for before, after in ((first_train, train), (first_val, val)):
        assert after.history.records["epoch"] == [0, 1, 2, 3, 4]
        assert after.history.records["delta_f"][:3] == before.history.records["delta_f"]  # its own, not the other's
    assert val.history.records["delta_f"][:3] != train.history.records["delta_f"][:3]
    assert torch.equal(val.spectral.projection.directions, first_train.spectral.projection.directions)
    assert val.history.deltas == first_train.history.deltas  # the filter widths are shared too


@pytest.mark.slow
@pytest.mark.parametrize("watched", [None, "val"])
def test_early_stopping_and_model_checkpoint_watch_either_monitor(tmp_path, watched):
    train, val = _pair(log_images=False, history_file=None)
    stopper = FrequencyEarlyStopping(low_metric="delta_f", low_threshold=1e-9, share_threshold=None,
                                     plateau_rtol=None, arm_threshold=None, dry_run=True, monitor_name=watched)
    best = {name: ModelCheckpoint(dirpath=tmp_path / str(name), monitor=f"{key_prefix(name)}/delta_f/k=1", mode="min",
                                  save_top_k=1) for name in (None, "val")}
    trainer = Trainer(max_epochs=3, callbacks=[train, val, stopper, *best.values()], default_root_dir=tmp_path,
                      logger=False, **QUIET)
    trainer.fit(make_module(), loader(regression_data()))
    own = val if watched == "val" else train
    assert stopper.monitor == f"{own.prefix}/delta_f/k="
    # the rule read the watched monitor's Δ_F(1) at the last check (n_low_freqs=1), not the other one's
    read = next(value for key, value in stopper.rule.last_values.items() if "Δ_F" in key)
    assert read == pytest.approx(own.history.records["delta_f"][-1][0])
    for name, monitor in ((None, train), ("val", val)):
        values = [row[0] for row in monitor.history.records["delta_f"][1:]]  # checks after each training epoch
        assert float(best[name].best_model_score) == pytest.approx(min(values))
    assert float(best[None].best_model_score) != pytest.approx(float(best["val"].best_model_score))


def test_early_stopping_with_an_unknown_monitor_name_is_a_clear_error():
    train, val = _pair(log_images=False, history_file=None)
    stopper = FrequencyEarlyStopping(monitor_name="test")
    with pytest.raises(RuntimeError, match=r"`monitor_name`='test'.*\[None, 'val'\]"):
        Trainer(max_epochs=1, callbacks=[train, val, stopper], **SILENT).fit(make_module(),
                                                                          loader(regression_data()))


@pytest.mark.slow
def test_messages_name_the_probe():
    monitor = FrequencyPrincipleMonitor(probe_size=5000, name="train", log_images=False)
    with pytest.warns(UserWarning, match="FrequencyPrincipleMonitor on the 'train' probe: the training data has 256"):
        Trainer(max_epochs=1, limit_train_batches=1, callbacks=[monitor], **SILENT).fit(
            make_module(), loader(regression_data()))
    assert monitor.history_file == "fp_train_history.npz"
    assert not math.isnan(monitor.history.records["delta_f"][-1][0])
