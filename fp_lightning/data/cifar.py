"""CIFAR-10 (python version): the loader of the pickled batch files and the download of the official archive.

Layout (the one the official archive extracts to, and torchvision uses)::

    <data_dir>/cifar-10-batches-py/data_batch_1 … data_batch_5, test_batch, batches.meta

Whatever training batches are present are used; missing ones give one warning naming them (the offline copy in
``../shared/data`` has only ``data_batch_1`` and ``test_batch``). The archive is downloaded only when *no* file of
the requested split is there.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from fp_lightning.data._download import download_file, md5sum, mirror_urls, resolve_data_dir, safe_extract_tar

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_ARCHIVE_MD5",
    "CIFAR10_CLASSES",
    "CIFAR10_MIRRORS",
    "cifar10_dir",
    "download_cifar10",
    "load_cifar10",
]

CIFAR10_MIRRORS: tuple[str, ...] = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_FOLDER = "cifar-10-batches-py"
_SPLIT_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_WARNED: set[tuple[str, tuple[str, ...]]] = set()

# The batch files are pickles of a dict holding a numpy array: only these globals are needed to rebuild it.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that only rebuilds numpy arrays (the batch files need nothing else)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"CIFAR-10 batch files may not reference {module}.{name}.")
        if module == "numpy.core.multiarray":  # numpy ≥ 2 moved it; the original files name the old place
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def cifar10_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return ``<data_dir>/cifar-10-batches-py`` (``data_dir`` defaults to ``default_data_dir()``).

    Example:
        >>> cifar10_dir("/data").as_posix()
        '/data/cifar-10-batches-py'
    """
    return resolve_data_dir(data_dir) / _FOLDER


def download_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    archive_md5: str = CIFAR10_ARCHIVE_MD5,
    progress: bool = True,
    keep_archive: bool = True,
) -> Path:
    """Download ``cifar-10-python.tar.gz`` into ``data_dir``, check its MD5 and extract it there.

    An archive already in ``data_dir`` with the right MD5 is reused. URLs: ``mirror`` if given, else
    ``$FP_DATA_MIRROR``, else :data:`CIFAR10_MIRRORS`; ``archive_md5`` may be overridden (e.g. for a local test
    archive).

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        DatasetDownloadError: no URL gave the archive with the expected MD5, or the archive has unsafe members.
    """
    root = resolve_data_dir(data_dir)
    archive = root / CIFAR10_ARCHIVE
    if not (archive.is_file() and md5sum(archive) == archive_md5.lower()):
        archive = download_file(
            CIFAR10_ARCHIVE,
            root,
            mirror_urls(CIFAR10_MIRRORS, mirror),
            archive_md5,
            progress=progress,
            dataset="CIFAR-10",
            manual_hint=f" (or extract it there so that '{root / _FOLDER}' holds the batch files)",
        )
    safe_extract_tar(archive, root)
    if not keep_archive:
        archive.unlink()
    return root / _FOLDER


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        batch = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:
        raise ValueError(f"'{path}' is not a CIFAR-10 python batch file: {err}") from err
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"'{path}' is not a CIFAR-10 batch: expected a dict with b'data' and b'labels'.")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise ValueError(
            f"'{path}' holds data {data.shape} {data.dtype} and {labels.shape[0]} labels, "
            "expected (n, 3072) uint8 and n labels."
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"'{path}' has labels outside 0..9.")
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = True,
    mirror: str | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one CIFAR-10 split from the python batch files in ``<data_dir>/cifar-10-batches-py/``.

    The training split concatenates whichever of ``data_batch_1`` … ``data_batch_5`` exist, in order; missing ones
    give one ``UserWarning`` naming them (per folder). When no file of the split exists and ``download`` is true,
    the official archive is downloaded with :func:`download_cifar10`. The pickles are read with
    ``encoding="bytes"`` by an unpickler that only accepts numpy arrays.

    Args:
        data_dir: root folder; ``None`` → ``$FP_DATA_DIR`` or ``~/.cache/fp_lightning/data``.
        split: ``"train"`` (up to 50000 images) or ``"test"`` (10000).
        download: allow the download when the split's files are all missing.
        mirror: base URL replacing the official one (also ``$FP_DATA_MIRROR``).
        progress: progress bar while downloading.

    Returns:
        ``(images, labels)``: ``uint8`` tensor (n, 3, 32, 32), channels RGB, and ``int64`` tensor (n,) of class
        indices into :data:`CIFAR10_CLASSES`.

    Raises:
        ValueError: unknown split or malformed batch file.
        FileNotFoundError: the split's files are missing and ``download=False``.
        DatasetDownloadError: the download failed.

    Example:
        >>> import pickle, tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "cifar-10-batches-py").mkdir()
        >>> batch = {b"data": np.arange(4 * 3072).astype(np.uint8).reshape(4, 3072), b"labels": [3, 1, 4, 1]}
        >>> with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        ...     pickle.dump(batch, f, protocol=2)
        >>> images, labels = load_cifar10(root, "test", download=False)
        >>> images.shape, images.dtype, labels.tolist()
        (torch.Size([4, 3, 32, 32]), torch.uint8, [3, 1, 4, 1])
    """
    if split not in _SPLIT_FILES:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    folder = cifar10_dir(data_dir)
    names = _SPLIT_FILES[split]
    present = [n for n in names if (folder / n).is_file()]
    if not present:
        if not download:
            raise FileNotFoundError(
                f"No CIFAR-10 {split} batch file ({', '.join(names)}) in '{folder}' and download=False. Extract the "
                f"official {CIFAR10_ARCHIVE} into '{folder.parent}', set FP_DATA_DIR (or `data_dir`), or allow the "
                "download."
            )
        download_cifar10(data_dir, mirror=mirror, progress=progress)
        present = [n for n in names if (folder / n).is_file()]
        if not present:
            raise FileNotFoundError(f"The CIFAR-10 archive did not provide {', '.join(names)} in '{folder}'.")
    missing = tuple(n for n in names if n not in present)
    key = (str(folder.resolve()), missing)
    if missing and key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(
            f"CIFAR-10 {split} split in '{folder}' is incomplete: {', '.join(missing)} missing; using "
            f"{', '.join(present)} only.",
            UserWarning,
            stacklevel=2,
        )
    parts = [_read_batch(folder / n) for n in present]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)
