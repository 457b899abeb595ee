"""The monitor on the targets people really have: per-pixel and per-token labels, binary logits, soft labels.

Each test trains a user's own tiny module in a real Trainer and checks the logged Δ_F(k) and e_low / e_high
against a direct recomputation on the monitor's probe samples, with a numpy one-hot / softmax / sigmoid oracle.
"""

import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.functional import low_high_errors, nufft_spectrum, principal_projection, relative_spectral_error
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests.conftest import EVERY_STEP, NO_FILES

N_FREQS = 16
TRAINER_KW = EVERY_STEP


def _softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _fit(module: LightningModule, loader: DataLoader, monitor: FrequencyPrincipleMonitor, tmp_path, logger,
         epochs: int = 2) -> tuple[Trainer, list[str]]:
    """Fit and return the trainer and the monitor's target-choice warnings."""
    trainer = Trainer(max_epochs=epochs, callbacks=[monitor], logger=logger, default_root_dir=tmp_path, **TRAINER_KW)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, loader)
    return trainer, [str(w.message) for w in caught if "output_transform='auto'" in str(w.message)]


def _final_outputs(module: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return module(inputs).double().numpy()


def _assert_logged_values_match(trainer: Trainer, monitor: FrequencyPrincipleMonitor, y: np.ndarray, h: np.ndarray,
                                deltas: list[float], wrong_h: np.ndarray) -> None:
    """Δ_F(k), e_low and e_high of the last epoch against the functional API on the oracle's y and h (n, c).

    ``wrong_h`` (the outputs under the transform a wrong choice would make) must give different Δ_F: the check
    can tell the choices apart.
    """
    inputs = monitor.probe.inputs.reshape(len(monitor.probe.inputs), -1).double()
    y_t, h_t = torch.from_numpy(y.reshape(len(y), -1)), torch.from_numpy(h.reshape(len(h), -1))
    coords = principal_projection(inputs).coords[:, 0]
    freqs = monitor.history.freqs
    fy = nufft_spectrum(coords, y_t, N_FREQS, backend="direct")
    fh = nufft_spectrum(coords, h_t, N_FREQS, backend="direct")
    expected = relative_spectral_error(fy[freqs], fh[freqs])
    metrics = trainer.callback_metrics
    got = torch.tensor([float(metrics[f"fp/delta_f/k={k}"]) for k in freqs], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    wrong = relative_spectral_error(fy[freqs], nufft_spectrum(coords, torch.from_numpy(wrong_h.reshape(len(h), -1)),
                                                              N_FREQS, backend="direct")[freqs])
    assert float((wrong - got).abs().max()) > 1e-3
    e_low, e_high = low_high_errors(inputs, y_t, h_t, deltas)
    for part, values in (("e_low", e_low), ("e_high", e_high)):
        logged = _by_delta(metrics, f"fp/{part}/")
        assert len(logged) == len(deltas)
        for delta, value in zip(deltas, values.tolist()):
            assert _closest(logged, delta) == pytest.approx(value, rel=1e-4)


def _by_delta(metrics: dict, prefix: str) -> dict[float, float]:
    """Logged values under ``prefix`` keyed by the δ written in their name (3 significant digits)."""
    return {float(key[len(prefix):].split("=")[1]): float(value) for key, value in metrics.items()
            if key.startswith(prefix)}


def _closest(logged: dict[float, float], delta: float) -> float:
    key = min(logged, key=lambda d: abs(d - delta))
    assert key == pytest.approx(delta, rel=1e-2)
    return logged[key]


# ---------------------------------------------------------------------- per-pixel segmentation, (n, C, H, W)
class TinySegmenter(LightningModule):
    """Three classes per pixel from a one-channel 8×8 image: a 3×3 conv, as a U-Net's last layer would be."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(),
                                       torch.nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch, _):
        images, masks = batch
        return torch.nn.functional.cross_entropy(self(images), masks)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


@pytest.mark.slow
def test_segmentation_per_pixel_labels(tmp_path):
    seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(40, 1, 8, 8, generator=g)
    masks = (images[:, 0] * 3).long().clamp(max=2)            # the class is the pixel's brightness band
    deltas = [2.0, 20.0]
    monitor = FrequencyPrincipleMonitor(probe_size=32, strict=True, spectral=ProjectedSpectralError(n_freqs=N_FREQS),
                                        filtering=LowHighFrequencyError(deltas=deltas), **NO_FILES)
    module = TinySegmenter()
    trainer, choice_warnings = _fit(module, DataLoader(TensorDataset(images, masks), batch_size=8, shuffle=True),
                                    monitor, tmp_path, TensorBoardLogger(tmp_path, name="seg"))
    assert choice_warnings == []                                # integer labels with logits: the obvious choice
    assert monitor.spectral.resolved_output_transform == "softmax"
    labels = monitor.probe.targets.numpy()
    assert labels.shape == (32, 8, 8)
    y = np.eye(3)[labels]                                       # (n, H, W, C)
    logits = _final_outputs(module, monitor.probe.inputs)
    h = _softmax(logits, 1).transpose(0, 2, 3, 1)
    wrong_axis = _softmax(logits, 2).transpose(0, 2, 3, 1)     # softmax over image rows instead of classes
    _assert_logged_values_match(trainer, monitor, y, h, deltas, wrong_h=wrong_axis)


# ---------------------------------------------------------------------- sequence tagger, (n, T, C)
class TokenDataset(Dataset):
    """Sentences of 5 tokens with 4 features each; the tag of a token is the sign pattern of its first features."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(2)
        self.tokens = torch.randn(n, 5, 4, generator=g)
        self.tags = (self.tokens[..., 0] > 0).long() + (self.tokens[..., 1] > 0.5).long()

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[i], "tags": self.tags[i]}


def collate_sentences(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {"tokens": torch.stack([item["tokens"] for item in items]),
            "tags": torch.stack([item["tags"] for item in items])}


class TinyTagger(LightningModule):
    """Per-token tag logits (n, T, C), as a transformer's head returns them."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(tokens)

    def training_step(self, batch, _):
        logits = self(batch["tokens"])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 3), batch["tags"].reshape(-1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_sequence_tagger_with_class_dim_minus_one(tmp_path):
    seed_everything(0, verbose=False)
    deltas = [5.0, 40.0]
    monitor = FrequencyPrincipleMonitor(**NO_FILES, probe_size=40, class_dim=-1, input_key="tokens", target_key="tags",
                                        strict=True, spectral=ProjectedSpectralError(n_freqs=N_FREQS),
                                        filtering=LowHighFrequencyError(deltas=deltas))
    module = TinyTagger()
    loader = DataLoader(TokenDataset(48), batch_size=16, shuffle=True, collate_fn=collate_sentences)
    trainer, choice_warnings = _fit(module, loader, monitor, tmp_path, CSVLogger(tmp_path, name="tagger"))
    assert choice_warnings == []
    tags = monitor.probe.targets.numpy()
    assert tags.shape == (40, 5)
    y = np.eye(3)[tags]                                         # (n, T, C)
    logits = _final_outputs(module, monitor.probe.inputs)
    h = _softmax(logits, -1)
    _assert_logged_values_match(trainer, monitor, y, h, deltas, wrong_h=_softmax(logits, 1))


@pytest.mark.parametrize("strict", [True, False])
def test_tagger_without_class_dim_names_it(tmp_path, strict):
    monitor = FrequencyPrincipleMonitor(**NO_FILES, probe_size=16, input_key="tokens", target_key="tags", strict=strict,
                                        spectral=ProjectedSpectralError(n_freqs=N_FREQS),
                                        filtering=LowHighFrequencyError(deltas=[5.0]))
    loader = DataLoader(TokenDataset(16), batch_size=8, collate_fn=collate_sentences)
    trainer = Trainer(max_epochs=1, callbacks=[monitor], logger=False, default_root_dir=tmp_path, **TRAINER_KW)
    if strict:
        with pytest.raises(ValueError, match="class_dim=-1"):
            trainer.fit(TinyTagger(), loader)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyTagger(), loader)                       # training goes on; one warning says what to pass
    named = [w for w in caught if "class_dim=-1" in str(w.message)]
    assert len(named) == 1
    assert not any(key.startswith("fp/") for key in trainer.callback_metrics)


# ---------------------------------------------------------------------- binary classifier, one logit
class TinyBinaryClassifier(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        self.loss = torch.nn.BCEWithLogitsLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return self.loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


@pytest.mark.slow
def test_binary_classifier_with_float_targets_gets_sigmoid_and_one_warning(tmp_path):
    seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48, 3, generator=g) * 2
    y = (torch.sin(2 * x[:, :1]) > 0).float()                   # (n, 1) float 0/1
    deltas = [1.0, 10.0]
    monitor = FrequencyPrincipleMonitor(probe_size=40, strict=True, spectral=ProjectedSpectralError(n_freqs=N_FREQS),
                                        filtering=LowHighFrequencyError(deltas=deltas), **NO_FILES)
    module = TinyBinaryClassifier()
    trainer, choice_warnings = _fit(module, DataLoader(TensorDataset(x, y), batch_size=12, shuffle=True), monitor,
                                    tmp_path, logger=False)
    assert len(choice_warnings) == 1                            # one for both metrics and every epoch
    assert "chose 'sigmoid'" in choice_warnings[0] and "output_transform='identity'" in choice_warnings[0]
    assert monitor.filtering.resolved_output_transform == "sigmoid"
    logits = _final_outputs(module, monitor.probe.inputs)
    _assert_logged_values_match(trainer, monitor, monitor.probe.targets.double().numpy(), _sigmoid(logits), deltas,
                                wrong_h=logits)


# ---------------------------------------------------------------------- soft labels (distillation, mixup)
class TinySoftLabelModel(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, _):
        x, soft = batch
        return torch.nn.functional.cross_entropy(self(x), soft)  # probability targets

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


@pytest.mark.slow
def test_soft_labels_get_softmax_and_one_warning(tmp_path):
    seed_everything(0, verbose=False)
    g = torch.Generator().manual_seed(4)
    x = torch.rand(40, 2, generator=g)
    teacher = torch.stack([torch.sin(3 * x[:, 0]), x[:, 1], -x[:, 0], torch.cos(5 * x[:, 1])], dim=1)
    soft = torch.softmax(2 * teacher, dim=1)                    # a teacher's probabilities
    deltas = [0.05, 0.5]
    monitor = FrequencyPrincipleMonitor(probe_size=32, strict=True, spectral=ProjectedSpectralError(n_freqs=N_FREQS),
                                        filtering=LowHighFrequencyError(deltas=deltas), **NO_FILES)
    module = TinySoftLabelModel()
    trainer, choice_warnings = _fit(module, DataLoader(TensorDataset(x, soft), batch_size=8, shuffle=True), monitor,
                                    tmp_path, TensorBoardLogger(tmp_path, name="soft"), epochs=1)
    assert len(choice_warnings) == 1 and "chose 'softmax'" in choice_warnings[0]
    logits = _final_outputs(module, monitor.probe.inputs)
    _assert_logged_values_match(trainer, monitor, monitor.probe.targets.double().numpy(), _softmax(logits, 1), deltas,
                                wrong_h=logits)
