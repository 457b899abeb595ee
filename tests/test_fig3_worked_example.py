"""The paper's Fig. 3 target, f0(x) = x, α = 0.5, 601 points in [−1, 1], worked through the functional API."""

import numpy as np
import pytest
import torch

from fp_lightning.functional import (
    nufft_spectrum,
    principal_projection,
    relative_spectral_error,
    select_frequencies,
)


def _fig3(n=601):
    x = torch.linspace(-1, 1, n, dtype=torch.float64).unsqueeze(1)
    f0 = x[:, 0]
    y = 0.5 * torch.round(f0 / 0.5)  # Eq. (2)
    return x, f0, y


def test_projection_of_a_line_is_the_dft_grid():
    x, _, _ = _fig3()
    coords = principal_projection(x).coords[:, 0]
    assert torch.allclose(coords, torch.arange(601, dtype=torch.float64) / 601, atol=1e-14)


@pytest.mark.parametrize("n", [601, 600, 64, 65, 7])
def test_spectrum_of_the_evenly_spaced_set_is_numpy_fft(n):
    # coords j/n: F[y](k) = Σ_j y_j exp(−2πi k j/n) is numpy.fft.fft(y)[k], the authors' convention, for all k < n
    x, _, y = _fig3(n)
    coords = principal_projection(x).coords[:, 0]
    expected = np.fft.fft(y.numpy())
    got = nufft_spectrum(coords, y, n, backend="direct").numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    got = nufft_spectrum(coords, y, min(n, 40), backend="finufft", eps=1e-14).numpy()
    np.testing.assert_allclose(got, expected[: min(n, 40)], rtol=0, atol=1e-9)


def test_peaks_and_the_f_principle_picture():
    x, f0, y = _fig3()
    coords = principal_projection(x).coords[:, 0]
    fy = nufft_spectrum(coords, y, 40)
    freqs = select_frequencies(fy.abs(), max_freqs=6)
    assert freqs.tolist() == [1, 4, 9, 12, 20, 28]
    # The smooth f0 shares the staircase's dominant first peak exactly (paper: "the dominant first peak of |F[f0]|
    # and |F[f]| coincide") but not the peaks the rounding creates at multiples of 4 (period 0.25 on [0, 1]).
    delta_f = relative_spectral_error(fy[freqs], nufft_spectrum(coords, f0, 40)[freqs])
    assert delta_f[0] < 1e-3  # 1.9e-4 on the 601-point DFT grid
    assert torch.all(delta_f[torch.tensor([1, 3, 4, 5])] > 0.3)
