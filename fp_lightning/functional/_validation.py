"""Input validators shared by the functional API: one function per concern.

Every validator raises ``ValueError`` (or ``TypeError`` for a wrong type) whose message names the argument and
what was expected, so that bad input never turns into a silent NaN further down.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "check_finite",
    "check_min_samples",
    "check_ndim",
    "check_positive",
    "check_same_length",
    "check_tensor",
    "values_as_2d",
]


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
