"""One set of validators: the same rules (bool is never an int) and messages in every layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fp_lightning import FrequencyEarlyStopping, FrequencyPrincipleMonitor
from fp_lightning.functional import GaussianFilterBank, default_deltas, nufft_spectrum, select_frequencies
from fp_lightning.functional._validation import (
    ArgumentTypeError,
    check_choice,
    check_dtype,
    check_int,
    check_key,
    check_number,
    check_optional_int,
)
from fp_lightning.functional.spectrum import BACKENDS
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError


@pytest.mark.parametrize("value", [3, np.int64(3), torch.tensor(3)])
def test_check_int_accepts_integers(value):
    assert check_int("n", value, 1, 5) == 3 and type(check_int("n", value)) is int


@pytest.mark.parametrize("value", [True, False, 2.0, "3", None, torch.tensor(3.0)])
def test_check_int_rejects_non_integers_with_a_type_error_that_is_also_a_value_error(value):
    with pytest.raises(ArgumentTypeError, match=r"^`n_freqs` must be an int, got ") as info:
        check_int("n_freqs", value, 1)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(("value", "minimum", "maximum", "message"), [
    (0, 1, None, "`k` must be an int ≥ 1, got 0."),
    (9, None, 7, "`k` must be an int ≤ 7, got 9."),
    (9, 0, 7, "`k` must be an int in [0, 7], got 9."),
])
def test_check_int_range_messages(value, minimum, maximum, message):
    with pytest.raises(ValueError) as info:
        check_int("k", value, minimum, maximum)
    assert str(info.value) == message and not isinstance(info.value, TypeError)


def test_check_optional_int():
    assert check_optional_int("chunk_size", None, 1) is None
    assert check_optional_int("chunk_size", 4, 1) == 4
    with pytest.raises(ValueError, match=r"^`chunk_size` must be None or an int ≥ 1, got 0\.$"):
        check_optional_int("chunk_size", 0, 1)
    with pytest.raises(ArgumentTypeError, match=r"^`chunk_size` must be None or an int, got bool"):
        check_optional_int("chunk_size", True, 1)


@pytest.mark.parametrize(("value", "ok"), [
    (0.0, True), (0.5, True), (0.999, True), (1.0, False), (-0.1, False), (math.nan, False), (math.inf, False),
])
def test_check_number_bounds(value, ok):
    if ok:
        assert check_number("rtol", value, 0, 1, strict_maximum=True) == float(value)
    else:
        with pytest.raises(ValueError, match=r"^`rtol` must be a finite number in \[0, 1\)"):
            check_number("rtol", value, 0, 1, strict_maximum=True)


@pytest.mark.parametrize("value", [True, "0.5", None, [0.5]])
def test_check_number_rejects_non_numbers(value):
    with pytest.raises(ArgumentTypeError, match=r"^`delta` must be a number"):
        check_number("delta", value, 0, strict_minimum=True)


def test_check_choice_dtype_and_key():
    assert check_choice("backend", "direct", BACKENDS) == "direct"
    with pytest.raises(ValueError, match=r"^`backend` must be one of 'auto', 'finufft', 'cufinufft', 'direct'; "
                                         r"got 'fftw'\.$"):
        check_choice("backend", "fftw", BACKENDS)
    with pytest.raises(ValueError, match=r"^`backend` must be one of"):
        check_choice("backend", None, BACKENDS)
    assert check_dtype("dtype", torch.float32, (torch.float32, torch.float64)) is torch.float32
    with pytest.raises(ValueError, match=r"^`dtype` must be torch.float32 or torch.float64, got torch.float16\.$"):
        check_dtype("dtype", torch.float16, (torch.float32, torch.float64))
    assert check_key("input_key", 0) == 0 and check_key("input_key", None) is None
    with pytest.raises(ArgumentTypeError, match=r"^`input_key` must be None, an int position or a str name"):
        check_key("input_key", False)


# ------------------------------------------------------------------------------ the same rule in every layer
x = torch.rand(20, 2, generator=torch.Generator().manual_seed(0))

BOOL_AS_INT = [
    ("n_freqs", lambda: nufft_spectrum(x[:, 0], x[:, 1], True)),
    ("max_freqs", lambda: select_frequencies(torch.rand(8), True)),
    ("chunk_size", lambda: GaussianFilterBank(x, [1.0], chunk_size=True)),
    ("n_deltas", lambda: default_deltas(x, True)),
    ("n_freqs", lambda: ProjectedSpectralError(n_freqs=True)),
    ("max_freqs", lambda: ProjectedSpectralError(max_freqs=True)),
    ("cutoff", lambda: ProjectedSpectralError(n_freqs=8, cutoff=True)),
    ("frequencies", lambda: ProjectedSpectralError(n_freqs=8, frequencies=[1, True])),
    ("n_deltas", lambda: LowHighFrequencyError(n_deltas=True)),
    ("chunk_size", lambda: LowHighFrequencyError(chunk_size=True)),
    ("probe_size", lambda: FrequencyPrincipleMonitor(probe_size=True)),
    ("probe_seed", lambda: FrequencyPrincipleMonitor(probe_seed=False)),
    ("every_n_epochs", lambda: FrequencyPrincipleMonitor(every_n_epochs=True)),
    ("patience", lambda: FrequencyEarlyStopping(patience=True)),
    ("min_epochs", lambda: FrequencyEarlyStopping(min_epochs=False)),
    ("delta", lambda: FrequencyEarlyStopping(delta=True)),
    ("low_threshold", lambda: FrequencyEarlyStopping(low_threshold=True)),
]


@pytest.mark.parametrize(("name", "call"), BOOL_AS_INT, ids=[f"{i}-{name}" for i, (name, _) in
                                                              enumerate(BOOL_AS_INT)])
def test_bool_is_never_an_int_in_any_layer(name, call):
    with pytest.raises(ArgumentTypeError, match=f"^`{name}` must be .*got (bool|True|False)"):
        call()


CHOICES = [
    ("backend", lambda: nufft_spectrum(x[:, 0], x[:, 1], 4, backend="fftw")),
    ("backend", lambda: ProjectedSpectralError(backend="fftw")),
    ("backend", lambda: FrequencyPrincipleMonitor(spectral=ProjectedSpectralError(backend="fftw"))),
    ("filter_precision", lambda: LowHighFrequencyError(filter_precision="float16")),
    ("filter_precision", lambda: FrequencyPrincipleMonitor(
        filtering=LowHighFrequencyError(filter_precision="float16"))),
    ("dtype", lambda: GaussianFilterBank(x, [1.0], dtype=torch.float16)),
    ("frequencies", lambda: ProjectedSpectralError(frequencies="peaks")),
    ("cutoff", lambda: FrequencyPrincipleMonitor(spectral=ProjectedSpectralError(cutoff="median"))),
    ("deltas", lambda: LowHighFrequencyError(deltas="wide")),
    ("low_metric", lambda: FrequencyEarlyStopping(low_metric="loss")),
    ("delta", lambda: FrequencyEarlyStopping(delta="median")),
]


@pytest.mark.parametrize(("name", "call"), CHOICES, ids=[f"{i}-{name}" for i, (name, _) in enumerate(CHOICES)])
def test_a_bad_choice_lists_the_valid_ones(name, call):
    with pytest.raises(ValueError, match=f"^`{name}` must be (one of|torch)") as info:
        call()
    assert "got" in str(info.value)
