import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fp_lightning.functional import principal_projection
from fp_lightning.functional import projection as projection_module
from tests._data import cifar_test_subset, mnist_test_subset


def _numpy_directions(flat: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The top m principal directions and covariance eigenvalues by numpy's SVD of the centred data.

    The same as eigh of the covariance (right singular vectors, s² / (n − 1)), at n²d instead of d³ when n < d.
    """
    centred = flat - flat.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:m].T, s[:m] ** 2 / (len(flat) - 1)


def _numpy_projection(x: np.ndarray, m: int) -> np.ndarray:
    """Independent oracle: numpy's principal directions, sign by largest |entry|, rescale to [0, (n − 1)/n]."""
    flat = x.reshape(len(x), -1).astype(np.float64)
    p, _ = _numpy_directions(flat, m)
    p = p * np.sign(p[np.abs(p).argmax(axis=0), np.arange(m)])
    raw = flat @ p
    return (raw - raw.min(0)) / (raw.max(0) - raw.min(0)) * (len(x) - 1) / len(x)


@pytest.mark.slow
def test_matches_numpy_on_mnist_images():
    images, _ = mnist_test_subset(400)
    proj = principal_projection(torch.from_numpy(images), n_components=2)
    np.testing.assert_allclose(proj.coords.numpy(), _numpy_projection(images, 2), atol=1e-9)
    assert proj.coords.min() == 0.0 and abs(float(proj.coords.max()) - 399 / 400) < 1e-15


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "n"), [("mnist", 600), ("cifar", 1100)])
def test_subspace_iteration_matches_numpy(dataset, n):
    # MNIST 600 × 784: the explicit 600 × 600 Gram matrix, iterated; CIFAR 1100 × 3072: products with X and Xᵀ only
    images, _ = mnist_test_subset(n) if dataset == "mnist" else cifar_test_subset(n)
    centred = torch.from_numpy(images).reshape(n, -1).double()
    centred = centred - centred.mean(dim=0)
    assert projection_module._subspace_iteration(lambda q: centred.T @ (centred @ q), centred.shape[1], 3,
                                                 centred) is not None  # converged: no fallback taken
    proj = principal_projection(torch.from_numpy(images), n_components=3)
    np.testing.assert_allclose(proj.coords.numpy(), _numpy_projection(images, 3), atol=1e-9)
    flat = images.reshape(n, -1).astype(np.float64)
    top = np.linalg.eigvalsh(np.cov(flat, rowvar=False))[::-1][:3] if n < 1000 else _numpy_directions(flat, 3)[1]
    np.testing.assert_allclose(proj.eigenvalues.numpy(), top, rtol=1e-10)


@pytest.mark.slow
def test_slow_subspace_iteration_falls_back_to_dense_eigh():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 300, generator=g, dtype=torch.float64)  # nearly equal eigenvalues: slow convergence
    centred = x - x.mean(dim=0)
    assert projection_module._subspace_iteration(lambda q: centred.T @ (centred @ q), 300, 1, centred) is None
    np.testing.assert_allclose(principal_projection(x).coords.numpy(), _numpy_projection(x.numpy(), 1), atol=1e-9)


def test_gram_path_equals_covariance_path():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 200, generator=g, dtype=torch.float64)  # n < d: Gram trick
    x[:, 0] *= 10
    proj = principal_projection(x)
    np.testing.assert_allclose(proj.coords.numpy(), _numpy_projection(x.numpy(), 1), atol=1e-9)
    assert torch.allclose(proj.directions.norm(dim=0), torch.ones(1, dtype=torch.float64))


def test_sign_convention_largest_entry_positive():
    x = torch.tensor([[0.0, 0.0], [-1.0, -3.0], [-2.0, -6.0], [1.0, 3.1]])
    p = principal_projection(x).directions[:, 0]
    assert p[p.abs().argmax()] > 0


def test_transform_uses_frozen_direction_and_range():
    # 3 fitted samples on a line land on 0, 1/3, 2/3; the frozen map sends the points 4 and 1 to 4/3 and 1/3
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    proj = principal_projection(x)
    assert torch.allclose(proj.coords[:, 0], torch.tensor([0.0, 1 / 3, 2 / 3], dtype=torch.float64))
    new = proj.transform(torch.tensor([[4.0, 4.0], [1.0, 1.0]]))
    assert torch.allclose(new[:, 0], torch.tensor([4 / 3, 1 / 3], dtype=torch.float64))
    assert torch.allclose(proj.transform(x), proj.coords)


def test_images_of_any_shape():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 3, 8, 8, generator=g)
    assert principal_projection(x).coords.shape == (50, 1)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.01, 100.0), shift=st.floats(-5, 5))
def test_affine_invariance_of_coords(scale, shift):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(40, 5, generator=g, dtype=torch.float64) * torch.tensor([4.0, 1, 1, 0.5, 0.1], dtype=torch.float64)
    a = principal_projection(x).coords
    b = principal_projection(x * scale + shift).coords
    assert torch.allclose(a, b, atol=1e-8)


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (torch.ones(1, 3), {}, "`x`"),
        (torch.ones(5, 3), {}, "degenerate"),
        (torch.tensor([[0.0, 1.0], [float("nan"), 2.0]]), {}, "`x` must be finite"),
        (torch.ones(5), {}, "`x`"),
        (torch.rand(5, 3), {"n_components": 0}, "`n_components`"),
        (torch.rand(5, 3), {"n_components": 4}, "`n_components`"),
    ],
)
def test_bad_input(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        principal_projection(x, **kwargs)


def test_transform_rejects_other_feature_count():
    proj = principal_projection(torch.rand(10, 3))
    with pytest.raises(ValueError, match="`x` has 4 features"):
        proj.transform(torch.rand(2, 4))
