"""Input validators shared by the functional API: one function per concern.

Every validator raises ``ValueError`` (or ``ArgumentTypeError``, both a ``TypeError`` and a ``ValueError``, for a
wrong type) whose message names the argument in backticks and says what was expected, so that bad input never
turns into a silent NaN further down. The functional API, the Metrics and the callbacks all validate through this
module, so one kind of mistake reads the same everywhere. ``bool`` is never accepted as an integer or a number:
``n_freqs=True`` is a mistake, not 1.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Collection, Sequence

import torch

__all__ = [
    "ArgumentTypeError",
    "check_choice",
    "check_dtype",
    "check_finite",
    "check_int",
    "check_key",
    "check_min_samples",
    "check_ndim",
    "check_number",
    "check_optional_int",
    "check_positive",
    "check_same_length",
    "check_tensor",
    "values_as_2d",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: both a ``TypeError`` and a ``ValueError``.

    ``TypeError`` by Python's convention; ``ValueError`` because the callbacks raised it for every bad argument,
    so ``except ValueError`` around a constructor keeps catching it.

    Example:
        >>> issubclass(ArgumentTypeError, TypeError) and issubclass(ArgumentTypeError, ValueError)
        True
    """


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` in [``minimum``, ``maximum``] (each bound optional, inclusive), else raise.

    Anything with ``__index__`` is an integer (``int``, NumPy integers, 0-d integer tensors); ``bool`` and floats are
    not (``ArgumentTypeError``). Out of range raises ``ValueError``.

    Example:
        >>> check_int("n_freqs", 64, minimum=3)
        64
        >>> try:
        ...     check_int("n_freqs", True, minimum=3)
        ... except ValueError as error:  # an ArgumentTypeError: a TypeError and a ValueError
        ...     print(error)
        `n_freqs` must be an int, got bool.
        >>> check_int("cutoff", 9, 0, 7)
        Traceback (most recent call last):
        ...
        ValueError: `cutoff` must be an int in [0, 7], got 9.
    """
    if isinstance(value, bool):
        raise ArgumentTypeError(f"`{name}` must be an int, got bool.")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentTypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"`{name}` must be an int {_range_text(minimum, maximum)}, got {number}.")
    return number


def check_optional_int(name: str, value: object, minimum: int | None = None,
                       maximum: int | None = None) -> int | None:
    """``None``, or ``check_int(name, value, minimum, maximum)``.

    Example:
        >>> check_optional_int("chunk_size", None, 1) is None
        True
        >>> check_optional_int("chunk_size", 0, 1)
        Traceback (most recent call last):
        ...
        ValueError: `chunk_size` must be None or an int ≥ 1, got 0.
    """
    if value is None:
        return None
    try:
        return check_int(name, value, minimum, maximum)
    except ArgumentTypeError as error:
        raise ArgumentTypeError(str(error).replace("must be an int", "must be None or an int", 1)) from None
    except ValueError as error:
        raise ValueError(str(error).replace("must be an int", "must be None or an int", 1)) from None


def check_number(name: str, value: object, minimum: float | None = None, maximum: float | None = None, *,
                 strict_minimum: bool = False, strict_maximum: bool = False) -> float:
    """Return ``value`` as a finite ``float`` within the bounds (inclusive unless ``strict_*``), else raise.

    ``int`` and ``float`` (NumPy scalars included) are numbers; ``bool``, strings and NaN are not.

    Example:
        >>> check_number("plateau_rtol", 0.1, 0.0, 1.0, strict_maximum=True)
        0.1
        >>> check_number("plateau_rtol", 1.0, 0.0, 1.0, strict_maximum=True)
        Traceback (most recent call last):
        ...
        ValueError: `plateau_rtol` must be a finite number in [0, 1), got 1.0.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"`{name}` must be a number, got {type(value).__name__} {value!r}.")
    number = float(value)
    low_ok = minimum is None or (number > minimum if strict_minimum else number >= minimum)
    high_ok = maximum is None or (number < maximum if strict_maximum else number <= maximum)
    if not (math.isfinite(number) and low_ok and high_ok):
        interval = _interval_text(minimum, maximum, strict_minimum, strict_maximum)
        raise ValueError(f"`{name}` must be a finite number{interval}, got {value!r}.")
    return number


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """Return ``value`` if it is one of the strings ``choices``, else raise ``ValueError`` listing them.

    Example:
        >>> check_choice("backend", "direct", ("auto", "finufft", "cufinufft", "direct"))
        'direct'
        >>> check_choice("backend", "fftw", ("auto", "finufft", "cufinufft", "direct"))
        Traceback (most recent call last):
        ...
        ValueError: `backend` must be one of 'auto', 'finufft', 'cufinufft', 'direct'; got 'fftw'.
    """
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"`{name}` must be one of {', '.join(repr(c) for c in choices)}; got {value!r}.")
    return value


def check_dtype(name: str, value: object, allowed: Collection[torch.dtype]) -> torch.dtype:
    """Return ``value`` if it is one of the torch dtypes ``allowed``, else raise ``ValueError`` listing them.

    Example:
        >>> check_dtype("dtype", torch.float64, (torch.float32, torch.float64))
        torch.float64
        >>> check_dtype("dtype", "float16", (torch.float32, torch.float64))
        Traceback (most recent call last):
        ...
        ValueError: `dtype` must be torch.float32 or torch.float64, got 'float16'.
    """
    if not isinstance(value, torch.dtype) or value not in allowed:
        raise ValueError(f"`{name}` must be {' or '.join(str(d) for d in allowed)}, got {value!r}.")
    return value


def check_key(name: str, value: object) -> int | str | None:
    """Return ``value`` if it is ``None``, an ``int`` position or a ``str`` name (never a ``bool``), else raise.

    Example:
        >>> check_key("input_key", "image")
        'image'
        >>> check_key("output_key", 1.5)
        Traceback (most recent call last):
        ...
        fp_lightning.functional._validation.ArgumentTypeError: `output_key` must be None, an int position or a str \
name, got 1.5.
    """
    if value is not None and (not isinstance(value, (int, str)) or isinstance(value, bool)):
        raise ArgumentTypeError(f"`{name}` must be None, an int position or a str name, got {value!r}.")
    return value


def _range_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"in [{minimum}, {maximum}]"
    return f"≥ {minimum}" if minimum is not None else f"≤ {maximum}"


def _interval_text(minimum: float | None, maximum: float | None, strict_minimum: bool, strict_maximum: bool) -> str:
    if minimum is None and maximum is None:
        return ""
    if maximum is None:
        return f" {'>' if strict_minimum else '≥'} {minimum:g}"
    if minimum is None:
        return f" {'<' if strict_maximum else '≤'} {maximum:g}"
    return f" in {'(' if strict_minimum else '['}{minimum:g}, {maximum:g}{')' if strict_maximum else ']'}"


def check_tensor(name: str, value: object) -> torch.Tensor:
    """Return ``value`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}.")
    return value


def check_ndim(name: str, value: torch.Tensor, allowed: Sequence[int]) -> torch.Tensor:
    """Raise if ``value.ndim`` is not one of ``allowed``."""
    if value.ndim not in allowed:
        expected = " or ".join(f"{n}-D" for n in allowed)
        raise ValueError(f"`{name}` must be {expected}, got shape {tuple(value.shape)}.")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise if ``value`` holds a NaN or an infinity."""
    # A sum is NaN or infinite whenever an element is (and, rarely, when finite values overflow), so one
    # reduction without isfinite's full-size temporaries clears the common case; the exact test runs only then.
    if not value.numel() or bool(torch.isfinite(value.sum())):
        return value
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"`{name}` must be finite, found {bad} NaN or infinite value(s).")
    return value


def check_min_samples(name: str, value: torch.Tensor, minimum: int = 2) -> torch.Tensor:
    """Raise if the first dimension of ``value`` has fewer than ``minimum`` samples."""
    if value.ndim == 0 or value.shape[0] < minimum:
        n = 0 if value.ndim == 0 else value.shape[0]
        raise ValueError(f"`{name}` needs at least {minimum} samples along dim 0, got {n}.")
    return value


def check_same_length(names: Sequence[str], *values: torch.Tensor) -> None:
    """Raise if the tensors do not share their first dimension."""
    lengths = [v.shape[0] if v.ndim else 0 for v in values]
    if len(set(lengths)) > 1:
        detail = ", ".join(f"`{n}` has {length}" for n, length in zip(names, lengths))
        raise ValueError(f"Mismatched number of samples: {detail}; they must be equal.")


def check_positive(name: str, value: float | torch.Tensor) -> None:
    """Raise unless every entry of ``value`` is a finite number > 0."""
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.numel() == 0:
        raise ValueError(f"`{name}` must not be empty.")
    if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
        raise ValueError(f"`{name}` must be finite and > 0, got {t.tolist()}.")


def values_as_2d(name: str, values: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """View ``values`` of shape ``(n,)`` or ``(n, c)`` as ``(n, c)``; also say whether it was 1-D."""
    check_ndim(name, values, (1, 2))
    squeeze = values.ndim == 1
    return (values.unsqueeze(1) if squeeze else values), squeeze


def check_spectrum_pair(target_spec: object, output_spec: object) -> None:
    """Raise unless ``target_spec`` and ``output_spec`` are finite tensors of one shape, (K,) or (K, c)."""
    check_tensor("target_spec", target_spec)
    check_tensor("output_spec", output_spec)
    check_ndim("target_spec", target_spec, (1, 2))
    if output_spec.shape != target_spec.shape:
        raise ValueError(f"`output_spec` shape {tuple(output_spec.shape)} must equal `target_spec` shape "
                         f"{tuple(target_spec.shape)}.")
    check_finite("target_spec", target_spec)
    check_finite("output_spec", output_spec)
