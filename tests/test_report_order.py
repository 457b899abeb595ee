import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fp_lightning.report import frequency_order_correlation


@settings(max_examples=40, deadline=None)
@given(st.permutations(list(range(8))))
def test_matches_closed_form_without_ties(perm):
    freqs = np.arange(1, 9) * 3
    epochs = [100 * (p + 1) for p in perm]
    d = np.arange(8) - np.asarray(perm)
    expected = 1 - 6 * (d**2).sum() / (8 * (8**2 - 1))  # Spearman's formula for distinct ranks
    assert abs(frequency_order_correlation(freqs, epochs) - expected) < 1e-12


def test_unreached_rank_last_and_tied():
    # k = 20 and 28 never fitted: they tie for the last two ranks (3.5 each, 1-based)
    rho = frequency_order_correlation([1, 4, 12, 20, 28], [10, 30, 20, None, None])
    ranks_k, ranks_e = np.array([1, 2, 3, 4, 5.0]), np.array([1, 3, 2, 4.5, 4.5])
    assert abs(rho - np.corrcoef(ranks_k, ranks_e)[0, 1]) < 1e-12
