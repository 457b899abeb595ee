"""Small real subsets of the offline datasets read with numpy alone (independent of fp_lightning.data).

MNIST test images come from ``../shared/data`` when it is there, else from the copy embedded in the package (the
same bytes, checked in ``test_data.py``), so they are always available; CIFAR-10 needs ``../shared/data`` and its
reader skips the calling test, saying why, when the file is missing.
"""

import gzip
import pickle

import numpy as np

from tests._paths import CIFAR_DIR, MNIST_RAW, REPO_ROOT, require_shared

EMBEDDED_MNIST = REPO_ROOT / "fp_lightning" / "data" / "embedded"


def _mnist_bytes(name: str) -> bytes:
    if (MNIST_RAW / name).is_file():
        return (MNIST_RAW / name).read_bytes()
    with gzip.open(EMBEDDED_MNIST / (name + ".gz"), "rb") as handle:
        return handle.read()


def mnist_test_subset(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First n MNIST test images scaled to [0, 1] (n, 28, 28) and their labels."""
    images = np.frombuffer(_mnist_bytes("t10k-images-idx3-ubyte"), dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    labels = np.frombuffer(_mnist_bytes("t10k-labels-idx1-ubyte"), dtype=np.uint8, offset=8)[:n]
    return images.astype(np.float64) / 255.0, labels.astype(np.int64)


def cifar_test_subset(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First n CIFAR-10 test images scaled to [0, 1] (n, 3, 32, 32) and their labels; skips when the file is missing."""
    require_shared("cifar-10-batches-py/test_batch")
    with open(CIFAR_DIR / "test_batch", "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    images = batch[b"data"][:n].reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    return images, np.asarray(batch[b"labels"][:n], dtype=np.int64)
