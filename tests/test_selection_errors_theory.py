import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fp_lightning.functional import (
    frequency_loss_split,
    low_frequency_share,
    relative_spectral_error,
    select_frequencies,
)

# ---------------------------------------------------------------- select_frequencies


def _numpy_peaks(amp: np.ndarray) -> list[int]:
    """Oracle in numpy: strict local maxima over 1 ≤ k ≤ K − 2; k = 1 is compared with k = 2 only."""
    k = np.arange(1, len(amp) - 1)
    left = np.where(k == 1, -np.inf, amp[np.maximum(k - 1, 0)])
    return k[(amp[k] > left) & (amp[k] > amp[k + 1])].tolist()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(3, 40), elements=st.floats(0, 10)))
def test_peaks_match_loop_oracle(amp):
    expected = _numpy_peaks(amp)
    if not expected:
        with pytest.raises(ValueError, match="no local maximum"):
            select_frequencies(torch.from_numpy(amp))
        return
    assert select_frequencies(torch.from_numpy(amp)).tolist() == expected


def test_k1_counts_when_above_k2_and_k0_never():
    assert select_frequencies(torch.tensor([100.0, 5.0, 1.0, 2.0, 1.0])).tolist() == [1, 3]
    assert select_frequencies(torch.tensor([100.0, 1.0, 5.0, 2.0])).tolist() == [2]


def test_last_frequency_is_never_a_peak():
    # |F|(K − 1) is the largest value, but its right neighbour was not computed: no peak there
    assert select_frequencies(torch.tensor([0.0, 1.0, 3.0, 2.0, 9.0])).tolist() == [2]
    with pytest.raises(ValueError, match="no local maximum"):
        select_frequencies(torch.tensor([5.0, 1.0, 2.0, 3.0]))


def test_max_freqs_keeps_largest_in_ascending_k():
    amp = torch.tensor([0.0, 1.0, 0.0, 5.0, 0.0, 3.0, 0.0, 4.0, 0.0])
    assert select_frequencies(amp, max_freqs=2).tolist() == [3, 7]


def test_multichannel_uses_norm_over_channels():
    amp = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0], [0.0, 0.0]])
    # norms: 0, 3, 1, 2, 0 -> peaks at 1 and 3
    assert select_frequencies(amp).tolist() == [1, 3]


@pytest.mark.parametrize(
    ("amp", "kwargs", "match"),
    [
        (torch.ones(2), {}, "`amplitude`"),
        (torch.ones(3, 2, 2), {}, "`amplitude`"),
        (torch.tensor([1.0, float("nan"), 0.0]), {}, "`amplitude` must be finite"),
        (torch.tensor([0.0, 2.0, 1.0]), {"max_freqs": 0}, "`max_freqs`"),
        (torch.ones(5), {}, "no local maximum"),
    ],
)
def test_selection_bad_input(amp, kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_frequencies(amp, **kwargs)


# ---------------------------------------------------------------- relative_spectral_error

complex_specs = arrays(np.complex128, st.tuples(st.integers(1, 8), st.integers(1, 4)),
                       elements=st.complex_numbers(max_magnitude=1e3, allow_nan=False, allow_infinity=False))


@settings(max_examples=50, deadline=None)
@given(complex_specs, st.floats(0.1, 10))
def test_delta_f_zero_at_fit_and_scale_invariant(spec, scale):
    y = torch.from_numpy(spec) + (1 + 1j)  # keep away from zero norm
    assume(bool(torch.all(torch.linalg.vector_norm(y, dim=1) > 1e-6)))  # (a spec entry of exactly −1 − 1j)
    h = y * 0.7 + 0.1j
    assert torch.all(relative_spectral_error(y, y) == 0)
    assert torch.allclose(relative_spectral_error(y * scale, h * scale), relative_spectral_error(y, h))


def test_delta_f_is_complex_difference_not_magnitude():
    y = torch.tensor([1 + 0j])
    h = torch.tensor([-1 + 0j])  # same magnitude, opposite phase
    assert relative_spectral_error(y, h).item() == pytest.approx(2.0)


def test_delta_f_channels_against_numpy():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 3)) + 1j * rng.normal(size=(6, 3))
    h = rng.normal(size=(6, 3)) + 1j * rng.normal(size=(6, 3))
    expected = np.sqrt((np.abs(y - h) ** 2).sum(1)) / np.sqrt((np.abs(y) ** 2).sum(1))
    np.testing.assert_allclose(relative_spectral_error(torch.from_numpy(y), torch.from_numpy(h)).numpy(), expected)


def test_delta_f_bad_input():
    with pytest.raises(ValueError, match="`output_spec` shape"):
        relative_spectral_error(torch.ones(3, dtype=torch.complex128), torch.ones(2, dtype=torch.complex128))
    with pytest.raises(ValueError, match="`target_spec` is zero"):
        relative_spectral_error(torch.zeros(2, dtype=torch.complex128), torch.ones(2, dtype=torch.complex128))
    with pytest.raises(ValueError, match="`output_spec` must be finite"):
        relative_spectral_error(torch.ones(2, dtype=torch.complex128),
                                torch.tensor([1, float("nan")], dtype=torch.complex128))


# ---------------------------------------------------------------- theory split


def test_loss_split_against_sum_and_parseval_total():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(10, 2)) + 1j * rng.normal(size=(10, 2))
    h = rng.normal(size=(10, 2)) + 1j * rng.normal(size=(10, 2))
    q = (np.abs(h - y) ** 2).sum(1)
    low, high = frequency_loss_split(torch.from_numpy(y), torch.from_numpy(h), cutoff=3)
    assert low.item() == pytest.approx(q[:4].sum())
    assert high.item() == pytest.approx(q[4:].sum())


def test_low_share_direct():
    # |ΔL_low| = 2 + 1 = 3, |ΔL_high| = 0.5 + 0 = 0.5 (a rise counts by its size too)
    assert low_frequency_share([4.0, 2.0, 1.0], [1.0, 1.5, 1.5]).item() == pytest.approx(3 / 3.5)
    assert low_frequency_share([1.0, 1.0], [2.0, 2.0]).item() == 0.5


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: frequency_loss_split(torch.ones(4, dtype=torch.complex128), torch.ones(4, dtype=torch.complex128),
                                      cutoff=3), "`cutoff`"),
        (lambda: frequency_loss_split(torch.ones(4, dtype=torch.complex128), torch.ones(4, dtype=torch.complex128),
                                      cutoff=-1), "`cutoff`"),
        (lambda: low_frequency_share([1.0], [1.0]), "`loss_low`"),
        (lambda: low_frequency_share([1.0, 2.0], [1.0]), "`loss_high`"),
        (lambda: low_frequency_share([1.0, float("inf")], [1.0, 2.0]), "`loss_low` must be finite"),
    ],
)
def test_theory_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
