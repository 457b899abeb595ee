"""The package on a CUDA device: NUFFT backends, the Gaussian filter bank, the monitor and early stopping in a Trainer.

Every test is marked ``gpu`` and runs on the device named by ``FP_CHECK_DEVICE`` (default ``cuda``; skipped when
no CUDA device is present). ``bash benchmarks/gpu_check.sh OUT --device cpu`` runs the same test functions with
``FP_CHECK_DEVICE=cpu``, so every line here is exercised on a machine without a GPU too.
"""

from __future__ import annotations

import math
import os

# cuBLAS picks its workspace at handle creation: set before any CUDA call of this process (bit-identity tests).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import lightning.pytorch as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning import FrequencyEarlyStopping, FrequencyPrincipleMonitor
from fp_lightning.functional import GaussianFilterBank, default_deltas, gaussian_lowpass, low_high_errors
from fp_lightning.functional.spectrum import available_backends, nufft_spectrum
from fp_lightning.metrics import ProjectedSpectralError

DEVICE = os.environ.get("FP_CHECK_DEVICE", "cuda")
ACCELERATOR = "gpu" if DEVICE == "cuda" else "cpu"
ON_CUDA = DEVICE == "cuda"

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device "
                       "(FP_CHECK_DEVICE=cpu runs these tests on the CPU)"),
]

# cufinufft computes on the GPU, direct in float64 torch on the GPU, finufft on the CPU with the result moved back.
BACKENDS = ("cufinufft", "direct", "finufft") if ON_CUDA else ("finufft", "direct")
FAST_BACKEND = "cufinufft" if ON_CUDA else "finufft"


# ---------------------------------------------------------------------- oracles (numpy, float64, on the CPU)
def numpy_spectrum(x: np.ndarray, v: np.ndarray, n_freqs: int, block: int = 64) -> np.ndarray:
    """F[v](k) = Σ_j v_j exp(−2πi k x_j), k < n_freqs, as a plain float64 sum (blocks of frequencies)."""
    out = np.empty((n_freqs, v.shape[1]), dtype=np.complex128)
    for start in range(0, n_freqs, block):
        k = np.arange(start, min(start + block, n_freqs))
        out[k] = np.exp(-2j * np.pi * np.outer(k, x)) @ v
    return out


def numpy_filter_errors(x: np.ndarray, y: np.ndarray, h: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """(e_low, e_high) per δ from the dense float64 kernel exp(−‖x_i − x_j‖²/(2δ)), row-normalised."""
    flat = x.reshape(len(x), -1)
    dist = ((flat[:, None, :] - flat[None, :, :]) ** 2).sum(-1)
    errors = []
    for delta in deltas:
        kernel = np.exp(-dist / (2 * delta))
        kernel /= kernel.sum(1, keepdims=True)
        y_low, h_low = kernel @ y, kernel @ h
        errors.append((np.linalg.norm(h_low - y_low) / np.linalg.norm(y_low),
                       np.linalg.norm((h - h_low) - (y - y_low)) / np.linalg.norm(y - y_low)))
    return np.asarray(errors).T


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ---------------------------------------------------------------------- a user's data and model
def image_classes(n: int = 384, seed: int = 0) -> TensorDataset:
    """Random 3×16×16 images whose class (4) is the quartile of their mean red intensity: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 16, 16, generator=g)
    images[:, 0] += torch.rand(n, 1, 1, generator=g)  # spread the red channel so the classes separate
    red = images[:, 0].mean(dim=(1, 2))
    labels = torch.bucketize(red, red.quantile(torch.tensor([0.25, 0.5, 0.75])))
    return TensorDataset(images, labels)


class UserCNN(L.LightningModule):
    """Conv-ReLU-pool-conv-ReLU and a linear head, cross-entropy, SGD with momentum."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3), nn.ReLU())
        self.head = nn.Linear(8 * 5 * 5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))

    def training_step(self, batch, _):
        x, y = batch
        # cross-entropy through gather: torch documents NLLLoss on CUDA as refusing deterministic mode
        loss = -F.log_softmax(self(x), dim=1).gather(1, y[:, None]).mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def fit(tmp_path, callbacks: list, max_epochs: int = 2, **trainer_kwargs) -> tuple[UserCNN, L.Trainer]:
    L.seed_everything(0, verbose=False)
    model = UserCNN()
    loader = DataLoader(image_classes(), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    trainer_kwargs.setdefault("logger", False)
    trainer = L.Trainer(accelerator=ACCELERATOR, devices=1, max_epochs=max_epochs, callbacks=callbacks,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        default_root_dir=tmp_path, **trainer_kwargs)
    trainer.fit(model, loader)
    return model, trainer


def small_monitor(**kwargs) -> FrequencyPrincipleMonitor:
    kwargs.setdefault("log_images", False)
    return FrequencyPrincipleMonitor(probe_size=256, probe_batch_size=100, strict=True,
                                     spectral=ProjectedSpectralError(n_freqs=24, max_freqs=4), **kwargs)


@pytest.fixture
def restore_determinism():
    """Trainer(deterministic=True) switches global torch flags on; put them back for the other tests."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


# ---------------------------------------------------------------------- NUFFT backends
@pytest.fixture(scope="module")
def spectrum_case() -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """10⁴ random points, 3 channels of values exact in float32, and their first 1,000 frequencies (numpy sum)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(10_000, generator=g, dtype=torch.float64)
    v = torch.randn(10_000, 3, generator=g).double()
    return x, v, numpy_spectrum(x.numpy(), v.numpy(), 1_000)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_on_the_device_matches_the_float64_sum_on_cpu(backend, spectrum_case):
    x, v, oracle = spectrum_case
    n_freqs = oracle.shape[0]

    spec = nufft_spectrum(x.to(DEVICE), v.to(DEVICE), n_freqs, backend=backend)

    assert spec.device.type == DEVICE and spec.dtype == torch.complex128 and spec.shape == (n_freqs, 3)
    assert relative_error(spec.cpu().numpy(), oracle) < 1e-6
    # one channel of float32 values: complex64 on the device, still within 1e-6 of the float64 sum
    single = nufft_spectrum(x.to(DEVICE), v[:, 0].float().to(DEVICE), n_freqs, backend=backend)
    assert single.dtype == torch.complex64 and single.device.type == DEVICE and single.shape == (n_freqs,)
    assert relative_error(single.cpu().numpy(), oracle[:, 0]) < 1e-6


def test_auto_backend_is_the_fast_one_on_the_device():
    assert FAST_BACKEND in available_backends(DEVICE)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(5_000, generator=g, dtype=torch.float64).to(DEVICE)
    v = torch.randn(5_000, generator=g, dtype=torch.float64).to(DEVICE)
    auto = nufft_spectrum(x, v, 300)
    chosen = nufft_spectrum(x, v, 300, backend=FAST_BACKEND)
    # equal up to the order of cuFINUFFT's atomic additions (bit-identical on the CPU)
    assert relative_error(auto.cpu().numpy(), chosen.cpu().numpy()) < 1e-13


# ---------------------------------------------------------------------- Gaussian filter bank
def probe_like(n: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CIFAR-shaped (3×8×8) inputs, one-hot targets over 10 classes and softmax 'outputs'."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g)
    y = F.one_hot(torch.randint(0, 10, (n,), generator=g), 10).double()
    h = torch.softmax(torch.randn(n, 10, generator=g, dtype=torch.float64) + 3 * y, dim=1)
    return x, y, h


def test_low_high_errors_on_the_device_match_a_dense_float64_kernel():
    x, y, h = probe_like(300)
    deltas = default_deltas(x, 4)
    oracle = numpy_filter_errors(x.double().numpy(), y.numpy(), h.numpy(), deltas.numpy())

    e_low, e_high = low_high_errors(x.to(DEVICE), y.to(DEVICE), h.to(DEVICE), deltas, dtype=torch.float64,
                                    chunk_size=128)

    assert e_low.device.type == DEVICE
    np.testing.assert_allclose(torch.stack([e_low, e_high]).cpu().numpy(), oracle, rtol=1e-10)


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_low_high_errors_on_the_device_match_the_cpu_result(dtype, rtol):
    x, y, h = probe_like(1_500)
    deltas = default_deltas(x, 5)
    on_cpu = low_high_errors(x, y, h, deltas, dtype=dtype)
    # several tiles, so the symmetric tile loop runs on the device too
    on_device = low_high_errors(x.to(DEVICE), y.to(DEVICE), h.to(DEVICE), deltas, dtype=dtype, chunk_size=512)
    for dev, cpu in zip(on_device, on_cpu):
        assert dev.device.type == DEVICE
        np.testing.assert_allclose(dev.cpu().numpy(), cpu.numpy(), rtol=rtol)


@pytest.mark.parametrize("cache", ["kernels", "distances"])
def test_filter_bank_on_the_device_caches_and_matches_cpu_every_epoch(cache):
    x, y, h = probe_like(1_200)
    deltas = default_deltas(x, 3)
    # kernels of 3 δ in float32 take about 3·n²·4/2 bytes; the distances alone a third of that
    budget = 2**30 if cache == "kernels" else 3 * 1_200**2
    bank = GaussianFilterBank(x.to(DEVICE), deltas, chunk_size=512, memory_budget=budget)
    for epoch in range(3):
        output = torch.softmax(torch.log(h) + epoch * y, dim=1)  # the 'network' improves every epoch
        e_low, e_high = bank.errors(y.to(DEVICE), output.to(DEVICE))
        ref_low, ref_high = low_high_errors(x, y, output, deltas)
        np.testing.assert_allclose(e_low.cpu().numpy(), ref_low.numpy(), rtol=1e-4)
        np.testing.assert_allclose(e_high.cpu().numpy(), ref_high.numpy(), rtol=1e-4)
    assert bank.caches_kernels == (cache == "kernels")
    assert bank.caches_distances  # the kernels are made from cached distances too
    low = bank.lowpass(h[:, 0].to(DEVICE))
    np.testing.assert_allclose(low.cpu().numpy(), gaussian_lowpass(x, h[:, 0], deltas).numpy(), rtol=1e-5)


# ---------------------------------------------------------------------- the monitor in a real Trainer
def delta_f_from_outputs(monitor: FrequencyPrincipleMonitor, outputs: torch.Tensor) -> np.ndarray:
    """Δ_F(k) = ‖F[y](k) − F[h](k)‖ / ‖F[y](k)‖ at the tracked k, from the frozen projection and softmax outputs."""
    inputs, labels = monitor.probe.inputs, monitor.probe.targets
    coords = monitor.spectral.projection.transform(inputs.double())[:, 0].cpu().numpy()
    y = F.one_hot(labels.cpu(), outputs.shape[1]).double().numpy()
    h = torch.softmax(outputs.double().cpu(), dim=1).numpy()
    freqs = np.asarray(monitor.history.freqs)
    basis = np.exp(-2j * np.pi * np.outer(freqs, coords))
    return np.linalg.norm(basis @ y - basis @ h, axis=1) / np.linalg.norm(basis @ y, axis=1)


def probe_outputs(model: UserCNN, trainer: L.Trainer, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The model's outputs as Lightning computes a batch: eval(), no_grad, inside the precision plugin's context."""
    model.eval()
    with torch.no_grad(), trainer.precision_plugin.forward_context():
        chunks = [model(inputs[i:i + batch_size].to(model.device)).float()
                  for i in range(0, len(inputs), batch_size)]
    return torch.cat(chunks)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_monitor_records_every_epoch_in_a_device_trainer(tmp_path, precision):
    monitor = small_monitor(log_images=precision == "32-true")  # the panels once: matplotlib is slow on a CPU
    logger = TensorBoardLogger(tmp_path, name="fp")
    model, trainer = fit(tmp_path, [monitor], max_epochs=2, precision=precision, logger=logger)

    assert next(model.parameters()).device.type == DEVICE
    history = monitor.history.as_arrays()
    assert history["epoch"].tolist() == [0, 1, 2]
    for key in ("delta_f", "e_low", "e_high", "loss_low", "loss_high"):
        assert np.isfinite(history[key]).all(), key
    logged = {key for key in trainer.callback_metrics if key.startswith("fp/")}
    assert {f"fp/delta_f/k={k}" for k in monitor.history.freqs} <= logged
    assert any(key.startswith("fp/e_high/delta=") for key in logged)
    assert len(monitor.timings) == 3 and all(t["spectrum"] >= 0 and t["filtering"] >= 0 for t in monitor.timings)
    assert list((tmp_path / "fp").rglob("events.out.tfevents.*"))

    # the last recording's Δ_F is that of the trained model's outputs on the probe set
    expected = delta_f_from_outputs(monitor, probe_outputs(model, trainer, monitor.probe.inputs, 100))
    # float32 forward: the same outputs up to kernel order; bf16 forward: outputs rounded to ~3 significant digits
    tolerance = 1e-4 if precision == "32-true" else 2e-2
    np.testing.assert_allclose(history["delta_f"][-1], expected, atol=tolerance, rtol=tolerance)
    assert history["delta_f"][-1].mean() < history["delta_f"][0].mean()  # the low frequencies are being learnt


def test_final_weights_are_bit_identical_with_and_without_the_monitor(tmp_path, restore_determinism):
    def weights(callbacks: list) -> dict[str, torch.Tensor]:
        model, _ = fit(tmp_path, callbacks, max_epochs=2, deterministic=True)
        return {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}

    plain = weights([])
    monitored = weights([small_monitor()])
    plain_again = weights([])

    # the control: two plain runs agree bit for bit, so a difference below is the monitor's doing
    assert all(torch.equal(plain[name], plain_again[name]) for name in plain)
    assert all(torch.equal(plain[name], monitored[name]) for name in plain)


def test_frequency_early_stopping_stops_where_the_history_says(tmp_path, restore_determinism):
    max_epochs = 5
    # a dry run records ε (e_low at the largest δ) after every epoch and never stops
    watch = small_monitor()
    dry = FrequencyEarlyStopping(low_threshold=0.0, share_threshold=None, plateau_rtol=None, arm_threshold=None,
                                 patience=1, dry_run=True)
    fit(tmp_path, [watch, dry], max_epochs=max_epochs, deterministic=True)
    history = watch.history.as_arrays()
    largest = int(np.argmax(watch.history.deltas))
    eps = history["e_low"][:, largest]  # index = completed epochs, 0 = before training
    assert np.isfinite(eps).all() and dry.rule.criterion is None
    threshold = float(eps[1:max_epochs].min())
    stop_after = 1 + int(np.argmax(eps[1:max_epochs] <= threshold))  # first check at or below the threshold

    monitor = small_monitor()
    stopper = FrequencyEarlyStopping(low_threshold=threshold * (1 + 1e-6), share_threshold=None, plateau_rtol=None,
                                     arm_threshold=None, patience=1)
    _, trainer = fit(tmp_path, [monitor, stopper], max_epochs=max_epochs, deterministic=True)

    assert stopper.rule.criterion == "low_converged"
    assert stopper.rule.stopped_after == stop_after < max_epochs
    assert trainer.current_epoch == stop_after
    assert monitor.history.as_arrays()["epoch"].tolist() == list(range(stop_after + 1))
    low = next(value for key, value in stopper.rule.last_values.items() if key.startswith("e_low"))
    assert math.isclose(low, eps[stop_after], rel_tol=1e-6)
