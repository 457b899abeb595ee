"""The monitor on training setups as users write them: their own data, models, precisions, loops and lifecycles.

Every test is a real ``lightning.pytorch.Trainer`` fit of a small user LightningModule; values are checked against a
direct recomputation with the functional API, or against a run without the monitor (bit-identical weights).
"""

import collections
import dataclasses
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from fp_lightning import FrequencyEarlyStopping, FrequencyPrincipleMonitor
from fp_lightning.functional import nufft_spectrum, principal_projection, relative_spectral_error
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests.conftest import EVERY_STEP, NO_FILES

QUIET = dict(EVERY_STEP, enable_checkpointing=False)
#: the tests of files and figures (here the ones on logger=False) take WITH_FILES
SMALL = dict(spectral=ProjectedSpectralError(n_freqs=16), filtering=LowHighFrequencyError(deltas=[0.05, 0.5]),
             **NO_FILES)
AUTO = dict(spectral=ProjectedSpectralError(n_freqs=16), filtering=LowHighFrequencyError(n_deltas=2),  # scale-free δ
            **NO_FILES)
WITH_FILES = {key: value for key, value in SMALL.items() if key not in NO_FILES}


# ---------------------------------------------------------------------------------------------- users' code
def wave(n=192, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g) * torch.tensor([1.0] + [0.2] * (d - 1))
    return x, torch.sin(2 * torch.pi * x[:, :1]) + 0.3 * torch.sin(8 * torch.pi * x[:, :1])


class Regressor(LightningModule):
    """A user's regression module; ``wrap`` says what ``forward`` returns."""

    def __init__(self, wrap=None, d=4, optimizer="adam"):
        super().__init__()
        self.lr, self.optimizer = 1e-2, optimizer
        self.body = nn.Sequential(nn.Linear(d, 32), nn.Tanh())
        self.head = nn.Linear(32, 1)
        self.wrap = wrap

    def forward(self, x):
        hidden = self.body(x)
        out = self.head(hidden)
        return out if self.wrap is None else self.wrap(out, hidden)

    def prediction(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.prediction(x), y)

    def configure_optimizers(self):
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def fit(module, data, monitor, tmp_path, epochs=2, logger=False, **trainer_kw):
    callbacks = trainer_kw.pop("callbacks", [monitor] if monitor else [])
    trainer = Trainer(max_epochs=epochs, callbacks=callbacks, logger=logger,
                      default_root_dir=tmp_path, **{**QUIET, **trainer_kw})
    trainer.fit(module, data)
    return trainer


def direct_delta_f(x, y, h, freqs, n_freqs=16):
    """Δ_F at ``freqs`` recomputed from scratch with the functional API (direct sum)."""
    coords = principal_projection(x.double()).coords[:, 0]
    fy = nufft_spectrum(coords, y.double().reshape(len(y), -1), n_freqs, backend="direct")
    fh = nufft_spectrum(coords, h.double().reshape(len(h), -1), n_freqs, backend="direct")
    return relative_spectral_error(fy[freqs], fh[freqs])


def logged_delta_f(trainer, monitor):
    return torch.tensor([float(trainer.callback_metrics[f"fp/delta_f/k={k}"]) for k in monitor.history.freqs],
                        dtype=torch.float64)


# ---------------------------------------------------------------------------------------------- 1. data of any shape
class Stream(IterableDataset):
    """A user's streaming dataset: samples generated on the fly from a seed, each pass the same."""

    def __init__(self, n=160):
        self.x, self.y = wave(n)

    def __iter__(self):
        return iter(zip(self.x, self.y))


@pytest.mark.slow
def test_stream_probe_drawn_without_touching_training_and_reused_on_resume(tmp_path):
    seed_everything(0, verbose=False)
    plain = Regressor()
    fit(plain, DataLoader(Stream(), batch_size=16), None, tmp_path / "plain")
    seed_everything(0, verbose=False)
    watched = Regressor()
    monitor = FrequencyPrincipleMonitor(probe_size=50, strict=True, **SMALL)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = fit(watched, DataLoader(Stream(), batch_size=16), monitor, tmp_path / "watched",
                  callbacks=[monitor, ckpt], enable_checkpointing=True)
    for p, q in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(p, q)  # the training stream was neither consumed nor reordered
    positions = monitor.probe.indices
    assert len(monitor.probe) == 50 and bool((positions < 4 * 50).all()) and positions.unique().numel() == 50
    x, y = Stream().x[positions], Stream().y[positions]
    assert torch.equal(monitor.probe.inputs, x)
    watched.eval()
    with torch.no_grad():
        expected = direct_delta_f(x, y, watched(x), monitor.history.freqs)
    torch.testing.assert_close(logged_delta_f(trainer, monitor), expected, rtol=1e-4, atol=1e-6)
    # a resume reuses the saved probe batch, even when the stream now yields other samples
    resumed = FrequencyPrincipleMonitor(probe_size=50, strict=True, **SMALL)
    other = Stream()
    other.x, other.y = wave(160, seed=1)
    Trainer(max_epochs=3, callbacks=[resumed], logger=False, default_root_dir=tmp_path, **QUIET).fit(
        Regressor(), DataLoader(other, batch_size=16), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert torch.equal(resumed.probe.inputs, x) and resumed.history.records["epoch"] == [0, 1, 2, 3]


class Sentences(Dataset):
    """Variable-length float sequences with one real target each."""

    def __init__(self, n=120):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(n):
            length = int(torch.randint(3, 9, (1,), generator=g))
            seq = torch.rand(length, generator=g)
            self.items.append((seq, seq.mean().reshape(1) * 3))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad_collate(samples):
    """A user's collate: pad to the longest sequence of the batch, return a dict with a mask."""
    longest = max(len(seq) for seq, _ in samples)
    x = torch.zeros(len(samples), longest)
    mask = torch.zeros(len(samples), longest)
    for i, (seq, _) in enumerate(samples):
        x[i, : len(seq)], mask[i, : len(seq)] = seq, 1
    return {"x": x, "mask": mask, "y": torch.stack([target for _, target in samples])}


class MaskedMean(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x, mask):
        mean = (x * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
        return self.net(torch.cat([mean, mask.sum(1, keepdim=True) / 8], dim=1))

    def training_step(self, batch, batch_idx):
        return nn.functional.mse_loss(self(batch["x"], batch["mask"]), batch["y"])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


@pytest.mark.slow
def test_train_loader_collate_fn_builds_the_probe_and_forward_fn_runs_it(tmp_path):
    data = Sentences()
    monitor = FrequencyPrincipleMonitor(probe_size=60, forward_fn=lambda m, b: m(b["x"], b["mask"]), strict=True,
                                        probe_batch_size=25, **SMALL)
    module = MaskedMean()
    trainer = fit(module, DataLoader(data, batch_size=20, collate_fn=pad_collate), monitor, tmp_path)
    probe = pad_collate([data[int(i)] for i in monitor.probe.indices])
    assert torch.equal(monitor.probe.batch["x"], probe["x"])  # padded to the probe's longest sequence
    module.eval()
    with torch.no_grad():
        h = module(probe["x"], probe["mask"])
    expected = direct_delta_f(probe["x"], probe["y"], h, monitor.history.freqs)
    torch.testing.assert_close(logged_delta_f(trainer, monitor), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_probe_dataloader_gives_a_held_out_probe(tmp_path):
    train, held_out = TensorDataset(*wave(128, seed=0)), TensorDataset(*wave(80, seed=7))
    monitor = FrequencyPrincipleMonitor(probe_size=40, probe_dataloader=DataLoader(held_out, batch_size=10),
                                        strict=True, **SMALL)
    fit(Regressor(), DataLoader(train, batch_size=16), monitor, tmp_path)
    assert torch.equal(monitor.probe.inputs, held_out.tensors[0][monitor.probe.indices])


class TwoSources(Regressor):
    def training_step(self, batch, batch_idx):
        return sum(nn.functional.mse_loss(self.prediction(x), y) for x, y in batch.values())


@pytest.mark.slow
def test_several_train_dataloaders_choose_the_probe_source(tmp_path):
    a, b = TensorDataset(*wave(96, seed=0)), TensorDataset(*wave(64, seed=3))
    loaders = {"a": DataLoader(a, batch_size=16), "b": DataLoader(b, batch_size=16)}
    first = FrequencyPrincipleMonitor(probe_size=30, strict=True, **SMALL)
    fit(TwoSources(), loaders, first, tmp_path / "first", epochs=1)
    assert torch.equal(first.probe.inputs, a.tensors[0][first.probe.indices])  # default: the first loader
    chosen = FrequencyPrincipleMonitor(probe_size=30, probe_dataloader="b", strict=True, **SMALL)
    fit(TwoSources(), loaders, chosen, tmp_path / "chosen", epochs=1)
    assert torch.equal(chosen.probe.inputs, b.tensors[0][chosen.probe.indices])
    with pytest.warns(UserWarning, match="`probe_dataloader`='c'"):
        fit(TwoSources(), loaders, FrequencyPrincipleMonitor(probe_dataloader="c", **SMALL), tmp_path, epochs=1)


# ---------------------------------------------------------------------------------------------- 2. models as written
Pair = collections.namedtuple("Pair", ["prediction", "hidden"])


class ModelOutput(collections.OrderedDict):
    """What HuggingFace models return: an ordered dict whose entries are also attributes."""

    def __getattr__(self, name):
        return self[name]


@dataclasses.dataclass
class Prediction:
    hidden: torch.Tensor
    value: torch.Tensor


@pytest.mark.parametrize(
    ("wrap", "output_key"),
    [
        (lambda out, hidden: (out, hidden), None),
        (lambda out, hidden: (hidden, out), 1),
        (lambda out, hidden: Pair(out, hidden), None),
        (lambda out, hidden: {"hidden": hidden, "preds": out}, None),
        (lambda out, hidden: ModelOutput(hidden_states=hidden, logits=out), None),
        (lambda out, hidden: Prediction(hidden, out), "value"),
    ],
    ids=["tuple", "tuple-position", "namedtuple", "dict", "model-output", "dataclass-attribute"],
)
@pytest.mark.slow
def test_outputs_of_any_structure(tmp_path, wrap, output_key):
    x, y = wave(96)
    monitor = FrequencyPrincipleMonitor(probe_size=96, output_key=output_key, strict=True, probe_batch_size=40,
                                        **SMALL)
    module = Regressor(wrap)
    trainer = fit(module, DataLoader(TensorDataset(x, y), batch_size=32), monitor, tmp_path, epochs=1)
    module.eval()
    with torch.no_grad():
        expected = direct_delta_f(x, y, module.prediction(x), monitor.history.freqs)
    torch.testing.assert_close(logged_delta_f(trainer, monitor), expected, rtol=1e-4, atol=1e-6)


def test_output_without_a_tensor_names_output_key(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=40, **SMALL)
    with pytest.warns(UserWarning, match="set `output_key`"):
        trainer = fit(Regressor(lambda out, hidden: Prediction(hidden, out)),
                      DataLoader(TensorDataset(*wave(64)), batch_size=32), monitor, tmp_path, epochs=1)
    assert trainer.current_epoch == 1 and monitor.history is None  # skipped, training went on
    strict = FrequencyPrincipleMonitor(probe_size=40, output_key="logits", strict=True, **SMALL)
    with pytest.raises(ValueError, match="`output_key`='logits'"):
        fit(Regressor(lambda out, hidden: {"out": out}), DataLoader(TensorDataset(*wave(64)), batch_size=32), strict,
            tmp_path, epochs=1)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16-true", "16-true", "64-true", "bf16-mixed", "32-true"])
def test_precision_plugin_runs_the_probe(tmp_path, precision):
    x, y = wave(96)
    monitor = FrequencyPrincipleMonitor(probe_size=96, strict=True, filtering=SMALL["filtering"],
                                        spectral=ProjectedSpectralError(n_freqs=16, backend="direct"))
    module = Regressor(optimizer="sgd")  # Adam's eps underflows in float16
    trainer = fit(module, DataLoader(TensorDataset(x, y), batch_size=32), monitor, tmp_path, epochs=1,
                  precision=precision)
    module.eval()
    with torch.no_grad(), trainer.precision_plugin.forward_context():
        h = module(trainer.precision_plugin.convert_input(x)).float()
    expected = direct_delta_f(x, y, h, monitor.history.freqs)
    got = logged_delta_f(trainer, monitor)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    if precision == "64-true":  # the outputs kept their float64 precision (float32 would be off by ~1e-8)
        got = torch.tensor(monitor.history.records["delta_f"][-1], dtype=torch.float64)
        with torch.no_grad():
            exact = direct_delta_f(x, y, module(x.double()), monitor.history.freqs)
        torch.testing.assert_close(got, exact, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------- 4. ids, features
class TokenTagger(LightningModule):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(20, 3)
        self.head = nn.Linear(3 * 5, 1)

    def forward(self, ids):
        return self.head(self.embedding(ids).flatten(1))

    def training_step(self, batch, batch_idx):
        ids, y = batch
        return nn.functional.mse_loss(self(ids), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def token_data(n=96):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (n, 5), generator=g)
    return TensorDataset(ids, (ids[:, :1].float() / 10).sin())


@pytest.mark.slow
def test_token_ids_warn_and_input_features_define_the_space(tmp_path):
    data = token_data()
    with pytest.warns(UserWarning, match="Set `input_features`") as caught:
        fit(TokenTagger(), DataLoader(data, batch_size=32), FrequencyPrincipleMonitor(probe_size=60, **AUTO),
            tmp_path / "ids")
    assert sum("input_features" in str(w.message) for w in caught) == 1
    seed_everything(0, verbose=False)
    module = TokenTagger()
    initial = module.embedding(data.tensors[0]).detach()
    monitor = FrequencyPrincipleMonitor(probe_size=60, input_features="embedding", strict=True, **AUTO)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*input_features.*")
        trainer = fit(module, DataLoader(data, batch_size=32), monitor, tmp_path / "emb")
    # the embedding of the initial model, frozen: every recording uses the same frequency axis
    torch.testing.assert_close(monitor._features, initial[monitor.probe.indices].flatten(1))
    module.eval()
    with torch.no_grad():
        h = module(data.tensors[0][monitor.probe.indices])
    expected = direct_delta_f(monitor._features, data.tensors[1][monitor.probe.indices], h, monitor.history.freqs)
    torch.testing.assert_close(logged_delta_f(trainer, monitor), expected, rtol=1e-4, atol=1e-6)
    one_hot = FrequencyPrincipleMonitor(probe_size=60, strict=True, **AUTO,
                                        input_features=lambda ids: nn.functional.one_hot(ids, 20).flatten(1))
    fit(TokenTagger(), DataLoader(data, batch_size=32), one_hot, tmp_path / "callable", epochs=1)
    assert one_hot._features.shape == (60, 100) and one_hot._features.dtype == torch.float32
    with pytest.warns(UserWarning, match="`input_features`='embed' is not a submodule"):
        fit(TokenTagger(), DataLoader(data, batch_size=32), FrequencyPrincipleMonitor(input_features="embed", **AUTO),
            tmp_path / "typo", epochs=1)


# ---------------------------------------------------------------------------------------------- 5. never changes
class Augmented(Dataset):
    """A user's dataset that augments with every random source there is."""

    def __init__(self):
        self.x, self.y = wave(128)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        noise = torch.randn(4) * 0.01 + float(np.random.rand()) * 0.01 + random.random() * 0.01
        return self.x[i] + noise, self.y[i]


@pytest.mark.slow
def test_augmenting_dataset_gives_bit_identical_weights(tmp_path):
    def run(with_monitor):
        seed_everything(0, verbose=False)
        module = Regressor()
        monitor = FrequencyPrincipleMonitor(probe_size=64, **SMALL) if with_monitor else None
        fit(module, DataLoader(Augmented(), batch_size=16, shuffle=True), monitor, tmp_path, epochs=2)
        return module, monitor

    plain, _ = run(False)
    watched, monitor = run(True)
    assert len(monitor.history) == 3
    for p, q in zip(plain.parameters(), watched.parameters()):
        assert torch.equal(p, q)


# ---------------------------------------------------------------------------------------------- 6. every logger
@pytest.mark.slow
def test_every_recording_reaches_every_logger_at_the_global_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monitor = FrequencyPrincipleMonitor(probe_size=64, **SMALL)
    loggers = [TensorBoardLogger(tmp_path, name="tb"), CSVLogger(tmp_path, name="csv")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(Regressor(), DataLoader(TensorDataset(*wave(128)), batch_size=32), monitor, tmp_path, epochs=2,
            logger=loggers)
    assert not [w for w in caught if "sync_dist" in str(w.message)]
    steps = monitor.history.records["step"]
    assert steps == [0, 4, 8]
    events = EventAccumulator(loggers[0].log_dir).Reload()
    assert [e.step for e in events.Scalars("fp/loss_low")] == steps
    assert [e.value for e in events.Scalars("fp/loss_low")] == pytest.approx(monitor.history.records["loss_low"])
    rows = [line.split(",") for line in Path(loggers[1].log_dir, "metrics.csv").read_text().splitlines()]
    header = rows[0]
    logged = [(int(row[header.index("step")]), float(row[header.index("fp/loss_low")])) for row in rows[1:]
              if row[header.index("fp/loss_low")]]
    assert [s for s, _ in logged] == steps  # the recording before training is there too
    assert [v for _, v in logged] == pytest.approx(monitor.history.records["loss_low"], rel=1e-6)


# ---------------------------------------------------------------------------------------------- 7. cadence
@pytest.mark.slow
def test_every_n_train_steps_records_mid_epoch_and_early_stopping_follows(tmp_path):
    data = DataLoader(TensorDataset(*wave(192)), batch_size=16)  # 12 steps per epoch
    monitor = FrequencyPrincipleMonitor(probe_size=64, every_n_train_steps=5, **SMALL)
    fit(Regressor(), data, monitor, tmp_path / "steps", epochs=1)
    assert monitor.history.records["step"] == [0, 5, 10]
    accumulated = FrequencyPrincipleMonitor(probe_size=64, every_n_train_steps=2, **SMALL)
    fit(Regressor(), data, accumulated, tmp_path / "accumulate", epochs=1, accumulate_grad_batches=3)
    assert accumulated.history.records["step"] == [0, 2, 4]  # once per optimizer step, not per batch
    stopper = FrequencyEarlyStopping(low_threshold=10.0, patience=2, share_threshold=None, arm_threshold=None,
                                     plateau_rtol=None)
    watched = FrequencyPrincipleMonitor(probe_size=64, every_n_train_steps=3, **SMALL)
    trainer = fit(Regressor(), data, None, tmp_path / "stop", epochs=3, callbacks=[stopper, watched])
    assert stopper.rule.criterion == "low_converged" and trainer.global_step == 6  # stopped mid-epoch, at step 6
    with pytest.raises(ValueError, match="`every_n_epochs` and `every_n_train_steps`"):
        FrequencyPrincipleMonitor(every_n_epochs=1, every_n_train_steps=5)


class WithValidation(Regressor):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.prediction(x), y))


@pytest.mark.slow
def test_checkpoint_and_early_stopping_on_fp_keys_with_mid_epoch_validation(tmp_path):
    train, val = DataLoader(TensorDataset(*wave(192)), batch_size=16), DataLoader(TensorDataset(*wave(32, seed=2)))
    monitor = FrequencyPrincipleMonitor(probe_size=64, **SMALL)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="fp/loss_low", mode="min", save_top_k=1)
    stop = EarlyStopping(monitor="fp/loss_high", mode="min", patience=50)
    trainer = Trainer(max_epochs=2, val_check_interval=0.5, callbacks=[monitor, ckpt, stop], logger=False,
                      default_root_dir=tmp_path, **{**QUIET, "enable_checkpointing": True})
    trainer.fit(WithValidation(), train, val)
    # Lightning validates before on_train_epoch_end, so each check sees the latest recording made before it:
    # epoch 0 (mid-epoch 1 and end of epoch 1) and epoch 1 (mid-epoch 2 and end of epoch 2)
    seen = monitor.history.records["loss_low"][:2]
    assert ckpt.best_model_path and float(ckpt.best_model_score) == pytest.approx(min(seen), rel=1e-6)
    assert stop.wait_count == 0 or stop.best_score == pytest.approx(min(monitor.history.records["loss_high"][:2]))


# ---------------------------------------------------------------------------------------------- 9. lifecycle
@pytest.mark.slow
def test_second_fit_starts_fresh_with_a_new_probe(tmp_path):
    monitor = FrequencyPrincipleMonitor(probe_size=40, strict=True, **SMALL)
    first, second = TensorDataset(*wave(96, seed=0)), TensorDataset(*wave(96, seed=5))
    trainer = Trainer(max_epochs=2, callbacks=[monitor], logger=False, default_root_dir=tmp_path, **QUIET)
    trainer.fit(Regressor(), DataLoader(first, batch_size=32))
    Trainer(max_epochs=1, callbacks=[monitor], logger=False, default_root_dir=tmp_path, **QUIET).fit(
        Regressor(), DataLoader(second, batch_size=32))
    assert monitor.history.records["epoch"] == [0, 1]
    assert torch.equal(monitor.probe.inputs, second.tensors[0][monitor.probe.indices])


def test_fast_dev_run_and_lr_find_without_warnings_or_files(tmp_path, monkeypatch):
    from lightning.pytorch.tuner import Tuner

    monkeypatch.chdir(tmp_path)
    data = DataLoader(TensorDataset(*wave(96)), batch_size=16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitor = FrequencyPrincipleMonitor(probe_size=40, **SMALL)
        Trainer(fast_dev_run=True, callbacks=[monitor], **{**QUIET, "enable_checkpointing": None}).fit(
            Regressor(), data)
        tuned = FrequencyPrincipleMonitor(probe_size=40, **SMALL)
        trainer = Trainer(max_epochs=1, callbacks=[tuned], logger=False, **QUIET)
        Tuner(trainer).lr_find(Regressor(), data, num_training=10)
        trainer.fit(Regressor(), data)
    ours = [str(w.message) for w in caught if "FrequencyPrincipleMonitor" in str(w.message)]
    assert ours == []
    assert tuned.history.records["epoch"] == [0, 1]
    assert not list(tmp_path.glob("fp_*")), "nothing written to the working directory without a path"


@pytest.mark.slow
def test_logger_false_writes_only_where_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = DataLoader(TensorDataset(*wave(64)), batch_size=32)
    fit_kw = dict(max_epochs=1, logger=False, **QUIET)
    Trainer(callbacks=[FrequencyPrincipleMonitor(probe_size=40, **WITH_FILES)], **fit_kw).fit(Regressor(), data)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith("fp_")]
    out = tmp_path / "fp_out"
    monitor = FrequencyPrincipleMonitor(probe_size=40, history_file=out / "fp_history.npz", **WITH_FILES)
    Trainer(callbacks=[monitor], **fit_kw).fit(Regressor(), data)
    assert (out / "fp_history.npz").is_file() and (out / "fp_report.png").is_file()
    with pytest.raises(ValueError, match="`history_file`"):
        FrequencyPrincipleMonitor(history_file="fp_history.csv")


# ---------------------------------------------------------------------------------------------- bad input
def test_dataset_without_targets_names_probe_dataloader(tmp_path):
    class Unlabelled(Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            return torch.rand(4)

    class Autoencoder(Regressor):
        def training_step(self, batch, batch_idx):
            return self.prediction(batch).pow(2).mean()

    with pytest.warns(UserWarning, match="pass `probe_dataloader`"):
        trainer = fit(Autoencoder(), DataLoader(Unlabelled(), batch_size=16),
                      FrequencyPrincipleMonitor(probe_size=40, **SMALL), tmp_path, epochs=1)
    assert trainer.current_epoch == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"output_key": 1.5}, "`output_key`"),
        ({"forward_fn": "model"}, "`forward_fn`"),
        ({"input_features": 3}, "`input_features`"),
        ({"probe_dataloader": 1.5}, "`probe_dataloader`"),
        ({"probe_dataloader": (torch.zeros(3, 2), "labels")}, "`probe_dataloader`"),
        ({"every_n_train_steps": 0}, "`every_n_train_steps`"),
    ],
)
def test_new_arguments_fail_at_construction_naming_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrequencyPrincipleMonitor(**kwargs)
