"""The paper's Fig. 3 target, f0(x) = x, α = 0.5, 601 points in [−1, 1], worked through the functional API."""

import numpy as np
import torch

from fp_lightning.functional import (
    nufft_spectrum,
    principal_projection,
    relative_spectral_error,
    select_frequencies,
)


def _fig3():
    x = torch.linspace(-1, 1, 601, dtype=torch.float64).unsqueeze(1)
    f0 = x[:, 0]
    y = 0.5 * torch.round(f0 / 0.5)  # Eq. (2)
    return x, f0, y


def test_projection_of_a_line_is_the_affine_rescaling():
    x, _, _ = _fig3()
    coords = principal_projection(x).coords[:, 0]
    assert torch.allclose(coords, torch.arange(601, dtype=torch.float64) / 600, atol=1e-14)


def test_spectrum_equals_numpy_fft_of_the_wrapped_samples():
    # coords j/600, j = 0..600: the point j = 600 sits on j = 0 of a period-600 DFT, so it adds to sample 0.
    x, _, y = _fig3()
    coords = principal_projection(x).coords[:, 0]
    wrapped = y.numpy()[:600].copy()
    wrapped[0] += y.numpy()[600]
    expected = np.fft.fft(wrapped)[:40]
    for backend in ("finufft", "direct"):
        got = nufft_spectrum(coords, y, 40, backend=backend).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-7 * np.abs(expected).max())


def test_peaks_and_the_f_principle_picture():
    x, f0, y = _fig3()
    coords = principal_projection(x).coords[:, 0]
    fy = nufft_spectrum(coords, y, 40)
    freqs = select_frequencies(fy.abs(), max_freqs=6)
    assert freqs.tolist() == [1, 4, 9, 12, 20, 28]
    # The smooth f0 shares the staircase's dominant first peak exactly (paper: "the dominant first peak of |F[f0]|
    # and |F[f]| coincide") but not the peaks the rounding creates at multiples of 4 (period 0.25 on [0, 1]).
    delta_f = relative_spectral_error(fy[freqs], nufft_spectrum(coords, f0, 40)[freqs])
    assert delta_f[0] < 1e-6
    assert torch.all(delta_f[torch.tensor([1, 3, 4, 5])] > 0.3)
