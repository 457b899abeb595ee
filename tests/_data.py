"""Small real subsets of ../shared/data read with numpy alone (independent of fp_lightning.data)."""

import pickle

import numpy as np

from tests._paths import SHARED_DATA


def mnist_test_subset(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First n MNIST test images scaled to [0, 1] (n, 28, 28) and their labels."""
    raw = SHARED_DATA / "MNIST" / "raw"
    images = np.fromfile(raw / "t10k-images-idx3-ubyte", dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:n]
    labels = np.fromfile(raw / "t10k-labels-idx1-ubyte", dtype=np.uint8, offset=8)[:n]
    return images.astype(np.float64) / 255.0, labels.astype(np.int64)


def cifar_test_subset(n: int) -> tuple[np.ndarray, np.ndarray]:
    """First n CIFAR-10 test images scaled to [0, 1] (n, 3, 32, 32) and their labels."""
    with open(SHARED_DATA / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        batch = pickle.load(handle, encoding="bytes")
    images = batch[b"data"][:n].reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    return images, np.asarray(batch[b"labels"][:n], dtype=np.int64)
