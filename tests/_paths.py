"""Where the tests find the offline datasets: ``../shared/data`` beside the repository.

Tests that need more than the MNIST test set embedded in the package read that folder, and skip, saying why,
when the part they read is missing (:func:`needs_shared` as a mark, :func:`require_shared` inside a test).
"""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
MNIST_RAW = SHARED_DATA / "MNIST" / "raw"
CIFAR_DIR = SHARED_DATA / "cifar-10-batches-py"


def missing_shared(*parts: str) -> str | None:
    """The skip reason when one of ``parts`` (paths under ``SHARED_DATA``) is missing, else ``None``."""
    missing = [part for part in parts if not (SHARED_DATA / part).exists()]
    if not missing:
        return None
    return (f"offline data not found: {', '.join(missing)} under {SHARED_DATA} (the datasets folder beside the "
            "checkout; only the embedded MNIST test set ships with the package)")


def needs_shared(*parts: str) -> pytest.MarkDecorator:
    """A skip mark for tests that read ``parts`` under ``SHARED_DATA``."""
    reason = missing_shared(*parts)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def require_shared(*parts: str) -> None:
    """Skip the running test (or fixture) when one of ``parts`` under ``SHARED_DATA`` is missing."""
    reason = missing_shared(*parts)
    if reason is not None:
        pytest.skip(reason)
