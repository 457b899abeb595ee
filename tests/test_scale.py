"""Scale of inputs and probes: the projection fitted block by block, and the filter on PCA-reduced inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.functional import projection as projection_module
from fp_lightning.functional.projection import principal_components, principal_projection
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError


def _image_like(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """uint8 'images': a random brightness per image plus pixel noise, so one direction dominates."""
    g = torch.Generator().manual_seed(seed)
    brightness = torch.rand(n, *([1] * len(shape)), generator=g)
    return (255 * (0.7 * brightness + 0.3 * torch.rand(n, *shape, generator=g))).to(torch.uint8)


def _numpy_top_directions(x: torch.Tensor, m: int) -> np.ndarray:
    """Oracle: top-m eigenvectors of the covariance by numpy's eigh, signed by their largest entry."""
    flat = x.reshape(x.shape[0], -1).double().numpy()
    centred = flat - flat.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred / (len(flat) - 1))
    top = vectors[:, ::-1][:, :m]
    return top * np.sign(top[np.abs(top).argmax(axis=0), np.arange(m)])


def _numpy_errors(z: np.ndarray, y: np.ndarray, h: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Oracle: the dense Gaussian filter of y and h on points z, e_low and e_high per δ."""
    sq = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    e_low, e_high = [], []
    for delta in deltas:
        kernel = np.exp(-sq / (2 * delta))
        y_low = kernel @ y / kernel.sum(1, keepdims=True)
        h_low = kernel @ h / kernel.sum(1, keepdims=True)
        e_low.append(np.linalg.norm(h_low - y_low) / np.linalg.norm(y_low))
        e_high.append(np.linalg.norm((h - h_low) - (y - y_low)) / np.linalg.norm(y - y_low))
    return np.array(e_low), np.array(e_high)


def _low_rank_data(n: int = 80, d: int = 40, rank: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, d, generator=g, dtype=torch.float64)
    x = x + 3.0  # an offset: the reduction must centre
    y = torch.sin(x[:, :2])
    h = y + 0.1 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, y, h


# ------------------------------------------------------------------------------- block-by-block projection
#: module limits that select each eigensolver path on small inputs (k = min(n, d) here is 150 or 192)
_PATHS = {
    "dense": {},  # k ≤ 256: one eigendecomposition of XᵀX or XXᵀ summed by blocks
    "explicit": {"_DENSE_EIGH_MAX": 16},  # subspace iteration on that k×k matrix
    "operator": {"_DENSE_EIGH_MAX": 16, "_EXPLICIT_MAX": 32},  # iteration on V ↦ Σ X_Bᵀ(X_B V), a pass per step
}


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(_PATHS))
@pytest.mark.parametrize(("n", "shape", "m"), [(240, (3, 8, 8), 3), (150, (3, 10, 10), 2)])
def test_blockwise_projection_equals_numpy_eigh(monkeypatch, path, n, shape, m):
    # (240, 192): covariance side (d ≤ n); (150, 300): Gram side (n < d)
    x = _image_like(n, shape, seed=1)
    # decaying feature scales: a clear gap after the top eigenvalues, so the iterations converge
    weights = torch.linspace(3.0, 0.2, x[0].numel(), dtype=torch.float64).reshape(shape)
    x = (x.double() * weights).round().to(torch.int16)
    for name, value in _PATHS[path].items():
        monkeypatch.setattr(projection_module, name, value)
    dense = principal_projection(x.double(), m)  # all rows at once
    blockwise = principal_projection(x, m, block_size=17)
    oracle = _numpy_top_directions(x, m)
    # the projection's direction; the later ones are only as accurate as the solver's residual bound
    # (1e-11·λ₁ over the eigenvalue gap), the same for both paths
    assert np.abs(blockwise.directions[:, 0].numpy() - oracle[:, 0]).max() < 1e-10
    values = np.linalg.eigvalsh(np.cov(x.reshape(n, -1).double().numpy().T))[::-1]
    assert np.abs(blockwise.directions.numpy() - oracle).max() < 1e-10 * values[0] / (values[m - 1] - values[m])
    assert torch.allclose(blockwise.coords[:, 0], dense.coords[:, 0], rtol=0, atol=1e-10)
    assert torch.allclose(blockwise.eigenvalues, dense.eigenvalues, rtol=1e-10, atol=0)
    assert torch.allclose(blockwise.transform(x)[:, 0], dense.transform(x.double())[:, 0], rtol=0, atol=1e-10)


def test_spectral_metric_on_uint8_inputs_converted_by_blocks_equals_float64(monkeypatch):
    x = _image_like(90, (3, 6, 6), seed=2)
    g = torch.Generator().manual_seed(3)
    labels, logits = torch.randint(0, 4, (90,), generator=g), torch.randn(90, 4, generator=g)
    reference = ProjectedSpectralError(n_freqs=16, output_transform="softmax")
    reference.update(x.double(), logits, labels)
    expected = reference.compute()
    # a tiny budget: the uint8 inputs are converted 3 rows (864 bytes in float64) at a time, never whole
    monkeypatch.setattr(projection_module, "_WHOLE_INPUT_BYTES", 1000)
    monkeypatch.setattr(projection_module, "_BLOCK_BYTES", 900)
    blockwise = ProjectedSpectralError(n_freqs=16, output_transform="softmax")
    blockwise.update(x, logits, labels)
    got = blockwise.compute()
    assert torch.equal(got["freqs"], expected["freqs"])
    assert torch.allclose(got["delta_f"], expected["delta_f"], rtol=1e-10, atol=0)
    assert torch.allclose(blockwise.projection.coords, reference.projection.coords, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------- reduced filter
@pytest.mark.parametrize("components", [5, 6, 200])
def test_reduced_filter_equals_exact_when_components_reach_the_rank(components):
    x, y, h = _low_rank_data()  # centred rank 5 in 40 dims; 200 is more than min(n − 1, d): clamped, still exact
    exact = LowHighFrequencyError(n_deltas=4, filter_precision="float64", output_transform="identity")
    reduced = LowHighFrequencyError(n_deltas=4, filter_precision="float64", output_transform="identity",
                                    input_components=components)
    for metric in (exact, reduced):
        metric.update(x, h, y)
    want, got = exact.compute(), reduced.compute()
    assert reduced.input_reduction.n_components == 5  # directions without variance are dropped
    assert torch.allclose(got["deltas"], want["deltas"], rtol=1e-10, atol=0)  # default δ of the reduced inputs
    assert torch.allclose(got["e_low"], want["e_low"], rtol=0, atol=1e-10)
    assert torch.allclose(got["e_high"], want["e_high"], rtol=0, atol=1e-10)
    oracle_low, oracle_high = _numpy_errors(x.numpy(), y.numpy(), h.numpy(), want["deltas"].numpy())
    assert np.abs(got["e_low"].numpy() - oracle_low).max() < 1e-10
    assert np.abs(got["e_high"].numpy() - oracle_high).max() < 1e-10


def test_reduced_filter_below_the_rank_filters_the_pca_scores():
    x, y, h = _low_rank_data()
    deltas = [2.0, 8.0, 30.0]
    reduced = LowHighFrequencyError(deltas=deltas, filter_precision="float64", output_transform="identity",
                                    input_components=2)
    reduced.update(x, h, y)
    got = reduced.compute()
    flat = x.numpy()
    scores = (flat - flat.mean(axis=0)) @ _numpy_top_directions(x, 2)
    oracle_low, oracle_high = _numpy_errors(scores, y.numpy(), h.numpy(), np.array(deltas))
    assert np.abs(got["e_low"].numpy() - oracle_low).max() < 1e-10
    assert np.abs(got["e_high"].numpy() - oracle_high).max() < 1e-10
    exact_low, _ = _numpy_errors(flat, y.numpy(), h.numpy(), np.array(deltas))
    assert np.abs(got["e_low"].numpy() - exact_low).max() > 1e-3  # two of five directions: not the exact filter


def test_reduced_filter_on_uint8_images_in_float32_stays_close_to_float64():
    x = _image_like(200, (3, 8, 8), seed=4)
    g = torch.Generator().manual_seed(5)
    labels, logits = torch.randint(0, 3, (200,), generator=g), torch.randn(200, 3, generator=g)
    results = {}
    for precision in ("float32", "float64"):
        metric = LowHighFrequencyError(n_deltas=3, filter_precision=precision, input_components=16)
        metric.update(x, logits, labels)
        results[precision] = metric.compute()
    assert torch.equal(results["float32"]["deltas"], results["float64"]["deltas"])
    assert torch.allclose(results["float32"]["e_low"], results["float64"]["e_low"], rtol=1e-5)
    assert torch.allclose(results["float32"]["e_high"], results["float64"]["e_high"], rtol=1e-4)


def _through_bytes(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_reduction_round_trips_through_state_dict_without_refitting():
    x, y, h = _low_rank_data(seed=0)
    fitted = LowHighFrequencyError(n_deltas=3, filter_precision="float64", output_transform="identity",
                                   input_components=3)
    fitted.update(x, h, y)
    fitted.compute()
    state = _through_bytes(fitted.state_dict())
    assert state["_input_directions"].shape == (40, 3) and state["_input_mean"].shape == (40,)
    restored = LowHighFrequencyError(n_deltas=3, filter_precision="float64", output_transform="identity",
                                     input_components=3)
    restored.load_state_dict(state)
    assert torch.equal(restored.input_reduction.directions, fitted.input_reduction.directions)
    # new data would give other directions; both metrics keep the frozen ones and agree (to the last bits: the
    # float64 kernel products may sum in another order)
    new_x, new_y, new_h = _low_rank_data(seed=7)
    fitted.reset()
    for metric in (fitted, restored):
        metric.update(new_x, new_h, new_y)
    want, got = fitted.compute(), restored.compute()
    torch.testing.assert_close(got["e_low"], want["e_low"], rtol=1e-12, atol=0)
    torch.testing.assert_close(got["e_high"], want["e_high"], rtol=1e-12, atol=0)
    assert torch.equal(restored.input_reduction.mean, fitted.input_reduction.mean)
    refit = principal_components(new_x, 3).directions
    assert not torch.allclose(refit.abs(), restored.input_reduction.directions.abs(), atol=1e-3)
    # an unfitted metric restores "not fitted" (empty buffers) and fits on its first compute
    fresh = LowHighFrequencyError(input_components=3)
    fresh.load_state_dict(LowHighFrequencyError(input_components=3).state_dict())
    assert fresh.input_reduction is None


# ------------------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_bad_input_components_name_the_argument(bad):
    with pytest.raises(ValueError, match="input_components"):
        LowHighFrequencyError(input_components=bad)
    with pytest.raises(ValueError, match="input_components"):
        FrequencyPrincipleMonitor(filtering=LowHighFrequencyError(input_components=bad))


def test_bad_pca_arguments_name_the_argument():
    x = _image_like(20, (4,), seed=0)
    with pytest.raises(ValueError, match="n_components"):
        principal_components(x, 0)
    with pytest.raises(ValueError, match="block_size"):
        principal_components(x, 2, block_size=0)
    with pytest.raises(ValueError, match="block_size"):
        principal_projection(x, 1, block_size=-1)
    with pytest.raises(ValueError, match="no variance"):
        principal_components(torch.ones(10, 3), 2)
    with pytest.raises(ValueError, match="features"):
        principal_components(x, 2).transform(torch.zeros(3, 5))


# ------------------------------------------------------------------------------------------ in a Trainer
class TinyImageClassifier(LightningModule):
    """A user's classifier of uint8 8×8 images, converted to float inside forward (the probe stays uint8)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255)

    def training_step(self, batch, _):
        images, labels = batch
        return torch.nn.functional.cross_entropy(self(images), labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


@pytest.mark.slow
def test_monitor_filters_reduced_inputs_in_a_trainer(make_trainer):
    torch.manual_seed(0)
    images = _image_like(96, (1, 8, 8), seed=6)
    labels = (images.float().mean(dim=(1, 2, 3)) > 128).long() + (images[:, 0, 0, 0] > 200).long()
    probe_x, probe_y = images[:64], labels[:64]
    monitor = FrequencyPrincipleMonitor(log_images=False, history_file=None, probe_dataloader=(probe_x, probe_y),
                                        spectral=ProjectedSpectralError(n_freqs=16),
                                        filtering=LowHighFrequencyError(n_deltas=2, input_components=6))
    model = TinyImageClassifier()
    trainer = make_trainer(max_epochs=2, callbacks=[monitor])
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=32, shuffle=True))
    reduction = monitor.filtering.input_reduction
    assert reduction is not None and reduction.n_components == 6
    assert torch.allclose(reduction.directions, principal_components(probe_x, 6).directions, atol=1e-12, rtol=0)
    # the last recording came after the last step: the same Metric settings on the final model agree
    model.eval()
    with torch.no_grad():
        logits = model(probe_x)
    direct = LowHighFrequencyError(deltas=monitor.filtering.fitted_deltas.tolist(), input_components=6)
    direct.update(probe_x, logits, probe_y)
    expected = direct.compute()
    for i, delta in enumerate(expected["deltas"].tolist()):
        key = next(k for k in trainer.callback_metrics if k.startswith("fp/e_low/delta=")
                   and abs(float(k.split("=")[1]) - delta) <= 5e-3 * delta)
        assert float(trainer.callback_metrics[key]) == pytest.approx(float(expected["e_low"][i]), rel=1e-5)
