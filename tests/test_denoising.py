"""Denoised labels (leave-one-out Gaussian low-pass) and the loss against them, functional and Metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fp_lightning import DenoisedLoss
from fp_lightning.functional import denoised_loss, leave_one_out_lowpass, scale_free_delta
from fp_lightning.functional.denoising import DEFAULT_DELTA_FRACTION
from tests.conftest import tiny_trainer


def _dense_leave_one_out(x: np.ndarray, y: np.ndarray, delta: float) -> np.ndarray:
    """ŷ_i = Σ_{j≠i} G_δ(x_i − x_j) y_j / Σ_{j≠i} G_δ(x_i − x_j), as a dense float64 numpy sum."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    sq = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-sq / (2 * delta))
    np.fill_diagonal(kernel, 0.0)
    return kernel @ y / kernel.sum(1, keepdims=True)


def _median_sq_distance(x: np.ndarray) -> float:
    flat = x.reshape(len(x), -1).astype(np.float64)
    sq = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    pairs = sq[np.triu_indices(len(x), 1)]
    return float(np.sort(pairs)[(len(pairs) - 1) // 2])  # the lower median


@pytest.fixture
def clusters() -> tuple[torch.Tensor, torch.Tensor]:
    """60 points in 4 Gaussian clusters in 6-D (as images of 2 × 3 pixels), one class per cluster, 10% flipped."""
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(4, 6, generator=g)
    labels = torch.arange(60) % 4
    x = centres[labels] + 0.7 * torch.randn(60, 6, generator=g)
    noisy = labels.clone()
    flip = torch.randperm(60, generator=g)[:6]
    noisy[flip] = (labels[flip] + 1) % 4
    return x.reshape(60, 1, 2, 3), noisy


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_leave_one_out_matches_dense_numpy(clusters, dtype, tol):
    x, labels = clusters
    delta = 2.0
    expected = _dense_leave_one_out(x.numpy(), np.eye(4)[labels.numpy()], delta)
    got = leave_one_out_lowpass(x, labels, delta, chunk_size=7, dtype=dtype)  # 7 does not divide 60: ragged tiles
    assert got.dtype == torch.float64 and got.shape == (60, 4)
    np.testing.assert_allclose(got.numpy(), expected, atol=tol, rtol=0)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, atol=1e-12)  # probability rows


def test_leave_one_out_real_values_and_default_delta(clusters):
    x, _ = clusters
    values = torch.randn(60, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    delta = DEFAULT_DELTA_FRACTION * _median_sq_distance(x.numpy())
    assert scale_free_delta(x, DEFAULT_DELTA_FRACTION) == pytest.approx(delta, rel=1e-12)
    got = leave_one_out_lowpass(x, values)  # default: δ = m/1000, float64
    np.testing.assert_allclose(got.numpy(), _dense_leave_one_out(x.numpy(), values.numpy(), delta), atol=1e-12)
    single = leave_one_out_lowpass(x, values[:, 0], 3.0, dtype=torch.float64)  # (n,) values come back (n, 1)
    np.testing.assert_allclose(single[:, 0].numpy(), _dense_leave_one_out(x.numpy(), values[:, :1].numpy(), 3.0)[:, 0],
                               atol=1e-12)


def test_leave_one_out_denoises_flipped_labels(clusters):
    x, noisy = clusters
    clean = torch.arange(60) % 4
    denoised = leave_one_out_lowpass(x, noisy, 0.05 * scale_free_delta(x, 1.0))
    assert (noisy != clean).sum() == 6
    assert bool((denoised.argmax(1) == clean).all())  # every flipped label is outvoted by its cluster


def test_isolated_sample_gets_the_mean_label():
    x = torch.tensor([[0.0], [0.1], [100.0]])
    labels = torch.tensor([0, 1, 1])
    got = leave_one_out_lowpass(x, labels, 0.01)  # exp(−100²/0.02) underflows: sample 2 has no neighbour
    torch.testing.assert_close(got[2], torch.tensor([1 / 3, 2 / 3], dtype=torch.float64))
    torch.testing.assert_close(got[0], torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_denoised_loss_matches_torch():
    g = torch.Generator().manual_seed(2)
    logits = 3 * torch.randn(40, 5, generator=g)
    soft = torch.softmax(torch.randn(40, 5, generator=g, dtype=torch.float64), 1)
    torch.testing.assert_close(denoised_loss(logits, soft), F.cross_entropy(logits.double(), soft))
    torch.testing.assert_close(denoised_loss(logits, soft, hard=True), F.cross_entropy(logits.double(), soft.argmax(1)))
    torch.testing.assert_close(denoised_loss(logits, soft, "mse"), F.mse_loss(logits.double(), soft))
    one_hot = F.one_hot(soft.argmax(1), 5).double()
    torch.testing.assert_close(denoised_loss(logits, soft, "mse", hard=True), F.mse_loss(logits.double(), one_hot))


def test_metric_equals_functional_and_freezes_labels(clusters):
    x, labels = clusters
    logits = torch.randn(60, 4, generator=torch.Generator().manual_seed(3))
    metric = DenoisedLoss()
    metric.update(x, logits, labels)
    got = metric.compute()["denoised_loss"]
    denoised = leave_one_out_lowpass(x, labels, scale_free_delta(x, DEFAULT_DELTA_FRACTION))
    torch.testing.assert_close(got, denoised_loss(logits, denoised))
    assert metric.fitted_delta == pytest.approx(scale_free_delta(x, DEFAULT_DELTA_FRACTION))
    # later recordings: new outputs, and targets that the frozen labels ignore (the probe's targets are fixed)
    metric.reset()
    later = 2 * logits
    metric.update(x, later, torch.zeros_like(labels))
    torch.testing.assert_close(metric.compute()["denoised_loss"], denoised_loss(later, denoised))


def test_metric_mse_for_real_targets_and_hard_labels(clusters):
    x, labels = clusters
    y = torch.randn(60, generator=torch.Generator().manual_seed(4))
    h = y + 0.1
    metric = DenoisedLoss(delta=2.0)
    metric.update(x, h, y)
    expected = F.mse_loss(h.double(), leave_one_out_lowpass(x, y, 2.0)[:, 0])
    torch.testing.assert_close(metric.compute()["denoised_loss"], expected)
    assert metric.resolved_loss() == "mse"
    logits = torch.randn(60, 4, generator=torch.Generator().manual_seed(5))
    hard = DenoisedLoss(delta=2.0, hard=True)
    hard.update(x, logits, labels)
    classes = leave_one_out_lowpass(x, labels, 2.0).argmax(1)
    torch.testing.assert_close(hard.compute()["denoised_loss"], F.cross_entropy(logits.double(), classes))


def test_refit_labels_follows_the_inputs(clusters):
    x, labels = clusters
    logits = torch.randn(60, 4, generator=torch.Generator().manual_seed(9))
    metric = DenoisedLoss(refit_labels=True)
    metric.update(x, logits, labels)
    metric.compute()
    metric.reset()
    moved = x.flip(0)  # new "features" of the same samples: the labels must follow them
    metric.update(moved, logits, labels)
    refitted = leave_one_out_lowpass(moved, labels, scale_free_delta(moved, DEFAULT_DELTA_FRACTION))
    expected = denoised_loss(logits, refitted)
    torch.testing.assert_close(metric.compute()["denoised_loss"], expected)


def test_state_survives_state_dict(clusters):
    x, labels = clusters
    logits = torch.randn(60, 4, generator=torch.Generator().manual_seed(6))
    metric = DenoisedLoss(delta_fraction=0.05)
    metric.update(x, logits, labels)
    expected = metric.compute()["denoised_loss"]
    state = metric.state_dict()
    assert state["_denoised_labels"].shape == (60, 4)
    restored = DenoisedLoss(delta_fraction=0.05)
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.denoised_labels, metric.denoised_labels)
    assert restored.fitted_delta == metric.fitted_delta
    shuffled = labels[torch.randperm(60, generator=torch.Generator().manual_seed(7))]
    restored.update(x, logits, shuffled)  # a refit would score against the shuffled labels
    torch.testing.assert_close(restored.compute()["denoised_loss"], expected)


def test_changed_probe_size_raises(clusters):
    x, labels = clusters
    metric = DenoisedLoss()
    metric.update(x, torch.zeros(60, 4), labels)
    metric.compute()
    metric.reset()
    metric.update(x[:30], torch.zeros(30, 4), labels[:30])
    with pytest.raises(ValueError, match="denoised_labels"):
        metric.compute()
    metric.denoised_labels = None  # the documented way to fit a new probe
    metric.compute()
    assert metric.denoised_labels.shape == (30, 4)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda x, y: leave_one_out_lowpass(x, y, -1.0), "`delta`"),
        (lambda x, y: leave_one_out_lowpass(x, y[:10]), "`labels`"),
        (lambda x, y: leave_one_out_lowpass(x, y, num_classes=2), "`num_classes`"),
        (lambda x, y: scale_free_delta(x, 0.0), "`fraction`"),
        (lambda x, y: denoised_loss(torch.zeros(60, 4), torch.zeros(60, 4), "hinge"), "`loss`"),
        (lambda x, y: denoised_loss(torch.zeros(60, 4), torch.zeros(60, 4)), "`denoised`"),
        (lambda x, y: denoised_loss(torch.zeros(60, 1), torch.zeros(60, 1), "mse", hard=True), "`hard=True`"),
        (lambda x, y: denoised_loss(torch.zeros(60, 3), torch.zeros(60, 4), "mse"), "`outputs`"),
        (lambda x, y: DenoisedLoss(loss="nll"), "`loss`"),
        (lambda x, y: DenoisedLoss(delta=0), "`delta`"),
        (lambda x, y: DenoisedLoss(delta_fraction=-0.1), "`delta_fraction`"),
        (lambda x, y: DenoisedLoss(refit_labels="yes"), "`refit_labels`"),
    ],
)
def test_bad_input_names_the_argument(clusters, call, name):
    x, labels = clusters
    with pytest.raises(ValueError, match=name):
        call(x, labels)


def test_cross_entropy_needs_softmax_outputs(clusters):
    x, labels = clusters
    metric = DenoisedLoss(loss="cross_entropy", output_transform="identity")
    metric.update(x, torch.zeros(60, 4), labels)
    with pytest.raises(ValueError, match="`loss='mse'`"):
        metric.compute()


class _NoisyTwoMoons(torch.utils.data.Dataset):
    """200 points, class = side of a sine curve, 25% of the labels flipped."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(8)
        self.x = 4 * torch.rand(200, 2, generator=g) - 2
        clean = (self.x[:, 1] > torch.sin(2 * self.x[:, 0])).long()
        flip = torch.rand(200, generator=g) < 0.25
        self.y = torch.where(flip, 1 - clean, clean)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


@pytest.mark.slow
def test_lightning_checkpoint_and_early_stopping_watch_the_score(tmp_path):
    """A user's callback logs the score; ModelCheckpoint and EarlyStopping use it as they use a validation loss."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=3e-2)

    data = _NoisyTwoMoons()
    scores: list[float] = []

    class DenoisedScore(pl.Callback):
        def __init__(self) -> None:
            self.metric = DenoisedLoss(delta_fraction=0.01)

        def on_train_epoch_end(self, trainer, module):
            module.eval()
            with torch.no_grad():
                logits = module(data.x)
            module.train()
            self.metric.reset()
            self.metric.update(data.x, logits, data.y)
            value = self.metric.compute()["denoised_loss"]
            expected = denoised_loss(logits, leave_one_out_lowpass(data.x, data.y, scale_free_delta(data.x, 0.01)))
            torch.testing.assert_close(value, expected)
            scores.append(float(value))
            module.log("fp/denoised_loss", value.float())

    checkpoint = ModelCheckpoint(dirpath=tmp_path, monitor="fp/denoised_loss", mode="min")
    stopper = EarlyStopping(monitor="fp/denoised_loss", mode="min", patience=3)
    torch.manual_seed(0)
    trainer = tiny_trainer(pl, max_epochs=30, callbacks=[DenoisedScore(), checkpoint, stopper],
                           enable_checkpointing=True)
    trainer.fit(Classifier(), torch.utils.data.DataLoader(data, batch_size=20, shuffle=True))
    best = int(np.argmin(scores))
    assert checkpoint.best_model_score.item() == pytest.approx(min(scores), rel=1e-6)
    assert f"epoch={best}-" in checkpoint.best_model_path
    # EarlyStopping(patience=3, min_delta=0) stops at the third check in a row without a new minimum
    waits = [i for i in range(len(scores)) if i >= 3 and min(scores[i - 2:i + 1]) >= min(scores[:i - 2])]
    assert waits and len(scores) - 1 == waits[0] < 29, scores  # it stopped on the score, before the budget
    restored = Classifier.load_from_checkpoint(checkpoint.best_model_path)
    metric = DenoisedLoss(delta_fraction=0.01)
    metric.update(data.x, restored(data.x).detach(), data.y)
    assert metric.compute()["denoised_loss"].item() == pytest.approx(min(scores), rel=1e-5)


def test_label_agreement_and_its_warning(clusters):
    x, labels = clusters
    metric = DenoisedLoss(delta=2.0)
    metric.update(x, torch.zeros(60, 4), labels)
    metric.compute()
    own = leave_one_out_lowpass(x, labels, 2.0).argmax(1) == labels
    assert metric.label_agreement == pytest.approx(own.double().mean().item())  # 54 of 60: the 6 flips are outvoted
    assert metric.label_agreement == pytest.approx(0.9)
    # labels that have nothing to do with the inputs: neighbours do not share them, near chance (1/4)
    shuffled = torch.arange(60) % 4
    shuffled = shuffled[torch.randperm(60, generator=torch.Generator().manual_seed(10))]
    unrelated = DenoisedLoss(delta=2.0)
    unrelated.update(x, torch.zeros(60, 4), shuffled)
    with pytest.warns(UserWarning, match="rarely share a label"):
        unrelated.compute()
    assert unrelated.label_agreement < 0.5
    real = DenoisedLoss(delta=2.0)
    real.update(x, torch.zeros(60, 1), torch.randn(60, 1, generator=torch.Generator().manual_seed(11)))
    real.compute()
    assert real.label_agreement is None  # regression targets have no classes to agree on
