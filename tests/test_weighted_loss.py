"""The paper's frequency-weighted loss L_wf (Eq. (4)): Parseval, masks, gradients, the projected form, bad input."""

import math

import numpy as np
import pytest
import torch

from fp_lightning import FrequencyWeightedLoss
from fp_lightning.functional import (
    frequency_weighted_loss,
    high_pass_weights,
    low_pass_weights,
    nufft_spectrum,
    principal_projection,
    projected_frequency_weighted_loss,
)


def _random(shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("shape", [(601,), (64,), (65, 3), (2, 1), (1,)])
def test_uniform_weights_give_the_mse(shape):
    h, y = _random(shape, 0), _random(shape, 1)
    loss = frequency_weighted_loss(h, y, torch.ones(shape[0], dtype=torch.float64))
    assert abs(float(loss) - float(torch.mean((h - y) ** 2))) < 1e-12


def test_low_mask_sees_only_the_low_sine():
    # y = sin(2π·2t) + sin(2π·9t), h = 0.7 sin(2π·2t) + 0.2 sin(2π·9t) on t = j/N: the error is
    # 0.3 sin(2π·2t) + 0.8 sin(2π·9t), and the mean of a² sin² over whole periods is a²/2.
    n = 48
    t = torch.arange(n, dtype=torch.float64) / n
    low, high = torch.sin(2 * math.pi * 2 * t), torch.sin(2 * math.pi * 9 * t)
    y, h = low + high, 0.7 * low + 0.2 * high
    lowpass = frequency_weighted_loss(h, y, low_pass_weights(n, 5, dtype=torch.float64))
    highpass = frequency_weighted_loss(h, y, high_pass_weights(n, 6, dtype=torch.float64))
    assert abs(float(lowpass) - 0.3**2 / 2) < 1e-12
    assert abs(float(highpass) - 0.8**2 / 2) < 1e-12
    assert abs(float(lowpass + highpass) - float(torch.mean((h - y) ** 2))) < 1e-12
    # the mask keeps its frequencies only: k_max = 8 still misses the k = 9 sine, k_max = 9 sees it
    assert abs(float(frequency_weighted_loss(h, y, low_pass_weights(n, 8))) - 0.045) < 1e-7
    assert float(frequency_weighted_loss(h, y, low_pass_weights(n, 9))) == pytest.approx(0.045 + 0.32, abs=1e-7)


def _numpy_symmetric_mask(n, keep):
    """The paper's recipe: weights on the first half 0 ≤ γ ≤ N/2, the second half copied by symmetry w(N−γ) = w(γ)."""
    w = np.zeros(n)
    for gamma in range(n // 2 + 1):
        w[gamma] = 1.0 if keep(gamma) else 0.0
    for gamma in range(1, (n + 1) // 2):
        w[n - gamma] = w[gamma]
    return w


@pytest.mark.parametrize("n", [1, 2, 7, 8, 601])
@pytest.mark.parametrize("k", [0, 1, 3, 4, 300, 1000])
def test_symmetric_masks_match_the_papers_construction(n, k):
    np.testing.assert_array_equal(low_pass_weights(n, k).numpy(), _numpy_symmetric_mask(n, lambda g: g <= k))
    np.testing.assert_array_equal(high_pass_weights(n, k).numpy(), _numpy_symmetric_mask(n, lambda g: g >= k))


def test_masks_dtype_and_device():
    w = low_pass_weights(10, 2, dtype=torch.float64, device="cpu")
    assert w.dtype == torch.float64 and w.device.type == "cpu"
    assert low_pass_weights(10, 2).dtype == torch.get_default_dtype()


@pytest.mark.parametrize("shape", [(31,), (24, 2)])
def test_gradient_matches_a_dense_dft_matrix(shape):
    n = shape[0]
    h = _random(shape, 2).requires_grad_(True)
    y = _random(shape, 3)
    w = torch.rand(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)  # not symmetric on purpose
    j = np.arange(n)
    dft = torch.from_numpy(np.exp(-2j * np.pi * np.outer(j, j) / n))  # D[γ, j] = exp(−2πi γ j / N)
    error = (h - y).reshape(n, -1).to(torch.complex128)
    channels = error.shape[1]
    dense = (w.unsqueeze(1) * (dft @ error).abs() ** 2).sum() / (n * n * channels)
    loss = frequency_weighted_loss(h, y, w)
    assert abs(loss.item() - dense.item()) < 1e-12
    (grad,) = torch.autograd.grad(loss, h)
    (expected,) = torch.autograd.grad(dense, h)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


def test_float32_preds_give_a_float32_loss_with_gradients():
    h = torch.randn(40, 1, generator=torch.Generator().manual_seed(0), requires_grad=True)
    loss = frequency_weighted_loss(h, torch.zeros(40), low_pass_weights(40, 3))
    loss.backward()
    assert loss.dtype == torch.float32 and h.grad is not None and h.grad.shape == (40, 1)


# ------------------------------------------------------------------------------------------ the projected form
def test_projected_form_on_the_odd_dft_grid_is_the_mse():
    # x evenly spaced → coords j/n; n odd and K = (n + 1)/2 cover every frequency once: Parseval holds
    n = 41
    x = torch.linspace(-3.0, 5.0, n, dtype=torch.float64).unsqueeze(1)
    h, y = _random((n, 2), 5), _random((n, 2), 6)
    loss = projected_frequency_weighted_loss(x, h, y, torch.ones(21, dtype=torch.float64))
    assert abs(float(loss) - float(torch.mean((h - y) ** 2))) < 1e-12


def test_projected_form_on_scattered_points_is_the_dirichlet_quadratic_form():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1, 1, 1, 0.5, 0.1])
    h, y = _random((50,), 8), _random((50,), 9)
    K = 12
    loss = projected_frequency_weighted_loss(x, h, y, torch.ones(K, dtype=torch.float64))
    coords = principal_projection(x).coords[:, 0].numpy()
    e = (h - y).numpy()
    u = coords[:, None] - coords[None, :]
    dirichlet = 1 + 2 * sum(np.cos(2 * np.pi * k * u) for k in range(1, K))
    assert abs(float(loss) - e @ dirichlet @ e / 50**2) < 1e-12
    assert abs(float(loss) - float(torch.mean((h - y) ** 2))) > 0.05  # not the MSE off the grid


def test_projected_form_agrees_with_nufft_spectrum_and_is_differentiable():
    g = torch.Generator().manual_seed(10)
    x = torch.rand(80, 3, 4, generator=g, dtype=torch.float64)  # images of any shape are flattened
    h = _random((80, 2), 11).requires_grad_(True)
    y = _random((80, 2), 12)
    w = torch.tensor([0.0, 1.0, 2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    projection = principal_projection(x[:60])  # a frozen fit applied to other samples
    loss = projected_frequency_weighted_loss(x, h, y, w, projection=projection, chunk_size=100)
    spec = nufft_spectrum(projection.transform(x)[:, 0], (h - y).detach(), 6, backend="direct")
    power = (spec.abs() ** 2).sum(dim=1)
    expected = (w[0] * power[0] + 2 * (w[1:] * power[1:]).sum()) / (80**2 * 2)
    assert abs(loss.item() - expected.item()) < 1e-10 * expected.item()
    (grad,) = torch.autograd.grad(loss, h)
    eps = 1e-6
    bumped = h.detach().clone()
    bumped[5, 1] += eps
    numeric = (projected_frequency_weighted_loss(x, bumped, y, w, projection=projection) - loss.detach()) / eps
    assert abs(float(grad[5, 1]) - float(numeric)) < 1e-5 * max(1.0, abs(float(numeric)))


# ------------------------------------------------------------------------------------------ the module
def test_module_holds_weights_as_a_buffer_and_steers():
    loss = FrequencyWeightedLoss(low_pass_weights(16, 2))
    assert "weights" in loss.state_dict() and loss.n_samples == 16
    h, y = _random((16, 1), 13).float(), torch.zeros(16, 1)
    assert torch.equal(loss(h, y), frequency_weighted_loss(h, y, low_pass_weights(16, 2)))
    loss.set_weights(torch.ones(16))
    assert abs(float(loss(h, y)) - float(torch.mean(h**2))) < 1e-6
    assert "nonzero=16" in repr(loss)
    restored = FrequencyWeightedLoss(16)
    restored.load_state_dict(FrequencyWeightedLoss(high_pass_weights(16, 3)).state_dict())
    assert torch.equal(restored.weights, high_pass_weights(16, 3))
    assert restored.double().weights.dtype == torch.float64


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: frequency_weighted_loss(torch.ones(4), torch.ones(5), torch.ones(4)), ValueError, "`target`"),
        (lambda: frequency_weighted_loss(torch.ones(4), torch.ones(4), torch.ones(3)), ValueError, "`weights`"),
        (lambda: frequency_weighted_loss(torch.ones(4), torch.ones(4), -torch.ones(4)), ValueError, "`weights`"),
        (lambda: frequency_weighted_loss(torch.ones(4), torch.ones(4), torch.full((4,), math.nan)), ValueError,
         "`weights`"),
        (lambda: frequency_weighted_loss(torch.ones(4, 2, 2), torch.ones(4, 2, 2), torch.ones(4)), ValueError,
         "`preds`"),
        (lambda: frequency_weighted_loss(torch.ones(4, dtype=torch.long), torch.ones(4), torch.ones(4)), ValueError,
         "`preds`"),
        (lambda: frequency_weighted_loss(torch.tensor([1.0, math.inf]), torch.ones(2), torch.ones(2)), ValueError,
         "`preds`"),
        (lambda: frequency_weighted_loss([1.0], torch.ones(1), torch.ones(1)), TypeError, "`preds`"),
        (lambda: low_pass_weights(0, 1), ValueError, "`n_samples`"),
        (lambda: low_pass_weights(8, -1), ValueError, "`k_max`"),
        (lambda: high_pass_weights(8, 1.5), TypeError, "`k_min`"),
        (lambda: low_pass_weights(8, 1, dtype=torch.long), ValueError, "`dtype`"),
        (lambda: projected_frequency_weighted_loss(torch.rand(5, 2), torch.ones(4), torch.ones(4), torch.ones(3)),
         ValueError, "`x`"),
        (lambda: projected_frequency_weighted_loss(torch.rand(5, 2), torch.ones(5), torch.ones(5),
                                                   torch.ones(2, 2)), ValueError, "`weights`"),
        (lambda: FrequencyWeightedLoss(0), ValueError, "`weights`"),
        (lambda: FrequencyWeightedLoss(torch.ones(3, 1)), ValueError, "`weights`"),
        (lambda: FrequencyWeightedLoss(4)(torch.ones(5), torch.ones(5)), ValueError, "full-batch"),
        (lambda: FrequencyWeightedLoss(4).set_weights(torch.ones(5)), ValueError, "`weights`"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------------------------------ the 1-D model's option
def test_tanh_mlp_trains_with_the_weighted_loss(make_trainer):
    from fp_lightning.data import Staircase1DDataModule
    from fp_lightning.models import TanhMLP1D

    dm = Staircase1DDataModule(preset="fig3", n_train=33, batch_size=None)
    model = TanhMLP1D(hidden=(16, 16), lr=1e-3, init_seed=0, weighted_loss_samples=33)
    model.frequency_loss.set_weights(low_pass_weights(33, 2))
    with torch.no_grad():
        h = model(dm.x_train)
    expected = frequency_weighted_loss(h, dm.y_train, low_pass_weights(33, 2))
    trainer = make_trainer(max_epochs=1)
    trainer.fit(model, dm)
    # the one full-batch step logged the loss of the initial parameters: L_wf with the mask, and the plain MSE
    assert abs(float(trainer.callback_metrics["train_loss"]) - float(expected)) < 1e-6
    assert abs(float(trainer.callback_metrics["train_mse"]) - float(torch.mean((h - dm.y_train) ** 2))) < 1e-6
    assert abs(float(expected) - float(torch.mean((h - dm.y_train) ** 2))) > 1e-3
    with pytest.raises(ValueError, match="`weighted_loss_samples`"):
        TanhMLP1D(loss="cross_entropy", num_outputs=2, weighted_loss_samples=33)
