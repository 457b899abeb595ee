"""Labels to ignore, object batches, the denoised score's notice and Metric habits, in a real ``Trainer``."""

import logging
import math
import warnings

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.functional.targets import prepare_targets
from fp_lightning.metrics import DenoisedLoss, LowHighFrequencyError, ProjectedSpectralError

TRAINER = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def numpy_masked_errors(x, y, h, keep, delta):
    """e_low, e_high by the slides' formula, each column filtered over the samples that keep it (dense numpy)."""
    x = x.reshape(len(x), -1).astype(np.float64)
    kernel = np.exp(-((x[:, None, :] - x[None, :, :]) ** 2).sum(-1) / (2 * delta))
    low = {}
    for name, v in (("y", y), ("h", h)):
        low[name] = (kernel @ (v * keep)) / (kernel @ keep)
    diff_low = (low["h"] - low["y"]) * keep
    diff_high = ((h - low["h"]) - (y - low["y"])) * keep
    return (np.linalg.norm(diff_low) / np.linalg.norm(low["y"] * keep),
            np.linalg.norm(diff_high) / np.linalg.norm((y - low["y"]) * keep))


def test_ignored_positions_are_out_of_the_filter_and_the_spectrum():
    g = torch.Generator().manual_seed(0)
    x, logits = torch.rand(30, 3, generator=g), torch.randn(30, 5, 4, generator=g)  # (n, T, C) logits
    labels = torch.randint(0, 4, (30, 5), generator=g)
    labels[torch.rand(30, 5, generator=g) < 0.3] = -100
    labels[7] = -100  # a sample with every position ignored leaves the probe
    metric = LowHighFrequencyError(deltas=[0.05, 0.3], class_dim=-1, filter_precision="float64")
    metric.update(x, logits, labels)
    result = metric.compute()
    rows = torch.arange(30) != 7
    keep = np.repeat((labels[rows] != -100).numpy().astype(float), 4, axis=1)
    y = torch.nn.functional.one_hot(labels[rows].clamp_min(0), 4).reshape(29, -1).numpy() * keep
    h = logits[rows].softmax(-1).reshape(29, -1).double().numpy() * keep
    for i, delta in enumerate((0.05, 0.3)):
        e_low, e_high = numpy_masked_errors(x[rows].numpy(), y, h, keep, delta)
        assert float(result["e_low"][i]) == pytest.approx(e_low, rel=1e-7)
        assert float(result["e_high"][i]) == pytest.approx(e_high, rel=1e-7)
    # the spectrum: equal to the metric on the kept samples, with ignored positions' outputs set to anything
    spectral = ProjectedSpectralError(n_freqs=8, class_dim=-1)
    spectral.update(x, logits, labels)
    garbage = logits.clone()
    garbage[labels == -100] = 50.0
    other = ProjectedSpectralError(n_freqs=8, class_dim=-1)
    other.update(x[rows], garbage[rows], labels[rows])
    torch.testing.assert_close(spectral.compute()["delta_f"], other.compute()["delta_f"])


def test_labels_outside_the_classes_name_ignore_index():
    with pytest.raises(ValueError, match=r"pass ignore_index=255"):
        prepare_targets(torch.zeros(2, 3, 2, 2), torch.tensor([[[0, 255], [1, 2]], [[2, 2], [0, 1]]]))


class Segmenter(L.LightningModule):
    """A user's per-pixel classifier whose void pixels are labelled 255 (as in Pascal VOC)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(),
                                       torch.nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y, ignore_index=255)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def segmentation_data():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 6, 6, generator=g)
    labels = (images[:, 0] * 3).long().clamp_max(2)
    labels[:, 0, :] = 255  # a void border row
    return torch.utils.data.TensorDataset(images, labels)


@pytest.mark.slow
def test_segmentation_void_pixels_with_ignore_index_255(tmp_path):
    data = segmentation_data()
    monitor = FrequencyPrincipleMonitor(probe_size=40, spectral=ProjectedSpectralError(n_freqs=10),
                                        filtering=LowHighFrequencyError(deltas=[1.0]))
    with pytest.warns(UserWarning, match=r"pass ignore_index=255"):
        L.Trainer(max_epochs=1, callbacks=[monitor], **TRAINER).fit(Segmenter(), torch.utils.data.DataLoader(data))
    assert monitor.history is None
    torch.manual_seed(0)
    module = Segmenter()
    monitor = FrequencyPrincipleMonitor(probe_size=40, ignore_index=255, strict=True,
                                        spectral=ProjectedSpectralError(n_freqs=10),
                                        filtering=LowHighFrequencyError(deltas=[1.0]))
    L.Trainer(max_epochs=2, callbacks=[monitor], **TRAINER).fit(module, torch.utils.data.DataLoader(data,
                                                                                                     batch_size=8))
    images, labels = data.tensors
    with torch.no_grad():
        probs = module.eval()(images).softmax(1).movedim(1, -1).double()  # (n, H, W, C)
    keep = (labels != 255).unsqueeze(-1).double()
    y = (torch.nn.functional.one_hot(torch.where(labels == 255, 0, labels), 3) * keep).reshape(40, -1).numpy()
    h = (probs * keep).reshape(40, -1).numpy()
    coords = monitor.spectral.projection.transform(images.reshape(40, -1).double())[:, 0].numpy()
    phase = np.exp(-2j * np.pi * np.outer(monitor.history.freqs, coords))
    expected = np.linalg.norm(phase @ y - phase @ h, axis=1) / np.linalg.norm(phase @ y, axis=1)
    np.testing.assert_allclose(monitor.history.records["delta_f"][-1], expected, rtol=1e-5)


class Slotted:
    """A user's batch class with ``__slots__`` (no ``__dict__``): fields are read by attribute access."""

    __slots__ = ("image", "label")

    def __init__(self, image, label):
        self.image, self.label = image, label


class SlottedModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(self, image):
        return self.net(image)

    def training_step(self, batch, _):
        return torch.nn.functional.mse_loss(self(batch.image), batch.label)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def test_slotted_batch_objects():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 4, generator=g)
    y = torch.sin(6 * x[:, :1])
    loader = torch.utils.data.DataLoader(list(zip(x, y)), batch_size=16, collate_fn=lambda samples: Slotted(
        torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])))
    module = SlottedModule()
    monitor = FrequencyPrincipleMonitor(probe_size=64, strict=True, spectral=ProjectedSpectralError(n_freqs=8),
                                        filtering=LowHighFrequencyError(deltas=[0.1]))
    L.Trainer(max_epochs=1, callbacks=[monitor], **TRAINER).fit(module, loader)
    with torch.no_grad():
        h = module.eval()(x)
    reference = ProjectedSpectralError(n_freqs=8, frequencies=monitor.history.freqs)
    reference.update(x, h, y)
    np.testing.assert_allclose(monitor.history.records["delta_f"][-1], reference.compute()["delta_f"].numpy(),
                               rtol=1e-6)


def _random_label_fit(callbacks, caplog):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(200, 4, generator=g), torch.randint(0, 10, (200,), generator=g))

    class Classifier(SlottedModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 10)

        def training_step(self, batch, _):
            loss = torch.nn.functional.cross_entropy(self(batch[0]), batch[1])
            self.log("loss", loss)
            return loss

    monitor = FrequencyPrincipleMonitor(probe_size=200, spectral=ProjectedSpectralError(n_freqs=8),
                                        filtering=LowHighFrequencyError(deltas=[0.5]))
    with warnings.catch_warnings(record=True) as record, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        L.Trainer(max_epochs=2, callbacks=[monitor, *callbacks], **TRAINER).fit(
            Classifier(), torch.utils.data.DataLoader(data, batch_size=50))
    return [str(w.message) for w in record if "denoised labels agree" in str(w.message)]


@pytest.mark.slow
def test_denoised_score_notice_is_information_unless_watched(caplog):
    # random labels: neighbours never share them, so the denoised labels agree about as often as chance
    assert _random_label_fit([], caplog) == []
    assert sum("denoised labels agree" in r.getMessage() for r in caplog.records) == 1  # said once, as info
    caplog.clear()
    warned = _random_label_fit([EarlyStopping(monitor="fp/denoised_loss", mode="min", patience=5)], caplog)
    assert len(warned) == 1 and "stops too early" in warned[0]


def test_denoised_loss_compute_after_reset_is_nan_with_torchmetrics_warning():
    metric = DenoisedLoss()
    metric.update(torch.rand(20, 3), torch.randn(20, 2), torch.arange(20) % 2)
    assert math.isfinite(float(metric.compute()["denoised_loss"]))
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update`` method"):
        assert math.isnan(float(metric.compute()["denoised_loss"]))
