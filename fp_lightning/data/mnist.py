"""MNIST: an IDX reader, the loader (torchvision's folder layout, an embedded test set) and the download.

Layout (the one torchvision uses, so the same folder serves both)::

    <data_dir>/MNIST/raw/train-images-idx3-ubyte[.gz]
    <data_dir>/MNIST/raw/train-labels-idx1-ubyte[.gz]
    <data_dir>/MNIST/raw/t10k-images-idx3-ubyte[.gz]
    <data_dir>/MNIST/raw/t10k-labels-idx1-ubyte[.gz]

The test split (10000 images) also ships inside the package (``fp_lightning/data/embedded/``, the original archives,
CC BY-SA 3.0, see the README there), so ``load_mnist(split="test")`` never needs the network.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from fp_lightning.data._download import DatasetDownloadError, download_file, mirror_urls, resolve_data_dir

__all__ = [
    "EMBEDDED_DIR",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "download_mnist",
    "load_mnist",
    "mnist_raw_dir",
    "read_idx",
]

#: Base URLs tried in order (the first is the S3 mirror torchvision uses).
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: split -> ((images file, MD5 of its .gz), (labels file, MD5 of its .gz)); names without ``.gz``.
MNIST_FILES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "train": (
        ("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}

#: Folder with the packaged copy of the MNIST test split.
EMBEDDED_DIR: Path = Path(__file__).resolve().parent / "embedded"

# IDX type byte -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TORCH_DTYPES = {
    np.dtype("u1"): torch.uint8,
    np.dtype("i1"): torch.int8,
    np.dtype("i2"): torch.int16,
    np.dtype("i4"): torch.int32,
    np.dtype("f4"): torch.float32,
    np.dtype("f8"): torch.float64,
}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"Cannot read IDX file '{path}': {err}") from err


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> torch.Tensor:
    """Read an IDX file (the MNIST format), gzipped or not, into a tensor.

    The header is two zero bytes, a type byte (0x08 = uint8, …) and the number of dimensions, then one big-endian
    int32 per dimension; the data follow, big-endian. MNIST images have magic 2051 (uint8, 3 dimensions), labels 2049
    (uint8, 1 dimension). Compression is detected from the file's first bytes, not its name.

    Args:
        path: the file, ``.gz`` or not.
        expected_magic: if given, the header's magic number (e.g. 2051 or 2049) must equal it.

    Returns:
        A tensor with the file's shape and type (``torch.uint8`` for MNIST), in native byte order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: bad magic number, unknown type byte, or a file size that does not match the header.

    Example:
        >>> labels = read_idx(EMBEDDED_DIR / "t10k-labels-idx1-ubyte.gz", expected_magic=2049)
        >>> labels.shape, labels.dtype, labels[:5].tolist()
        (torch.Size([10000]), torch.uint8, [7, 2, 1, 0, 4])
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: '{path}'")
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"'{path}' is not an IDX file: only {len(data)} bytes.")
    magic = int.from_bytes(data[:4], "big")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"'{path}' has IDX magic number {magic}, expected {expected_magic} "
            "(2051 = uint8 images with 3 dimensions, 2049 = uint8 labels with 1 dimension)."
        )
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"'{path}' is not an IDX file: bad magic number {magic} (0x{magic:08x}).")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"'{path}' is truncated: header for {ndim} dimensions needs {header} bytes.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"'{path}' has {len(data)} bytes but its header (magic {magic}, shape {shape}) implies {expected}: "
            "the file is truncated or corrupt."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    array = array.astype(dtype.newbyteorder("="))  # copies: writable, native order
    return torch.from_numpy(array).to(_TORCH_DTYPES[array.dtype.newbyteorder("=")])


def mnist_raw_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return ``<data_dir>/MNIST/raw`` (``data_dir`` defaults to :func:`~fp_lightning.data.default_data_dir`).

    Example:
        >>> mnist_raw_dir("/data").as_posix()
        '/data/MNIST/raw'
    """
    return resolve_data_dir(data_dir) / "MNIST" / "raw"


def _find(raw: Path, name: str) -> Path | None:
    """Prefer the gunzipped file (faster to read), else the archive."""
    for candidate in (raw / name, raw / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def download_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    splits: tuple[str, ...] = ("train", "test"),
    *,
    mirror: str | None = None,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Download the MNIST archives of ``splits`` into ``<data_dir>/MNIST/raw``, check their MD5s and gunzip them.

    Files already present (archive or gunzipped copy) are skipped unless ``force``. URLs: ``mirror`` if given, else
    ``$FP_DATA_MIRROR`` if set, else :data:`MNIST_MIRRORS` in order; the file name is appended to the base URL.

    Returns:
        The ``MNIST/raw`` folder.

    Raises:
        DatasetDownloadError: a file could not be fetched with the right MD5 from any URL (the message names the
            file and the URLs, and how to place the files by hand).
        ValueError: unknown split.
    """
    raw = mnist_raw_dir(data_dir)
    urls = mirror_urls(MNIST_MIRRORS, mirror)
    for split in splits:
        if split not in MNIST_FILES:
            raise ValueError(f"`splits` must contain 'train' or 'test', got {split!r}.")
        for name, md5 in MNIST_FILES[split]:
            if not force and _find(raw, name) is not None:
                continue
            archive = download_file(
                name + ".gz",
                raw,
                urls,
                md5,
                progress=progress,
                dataset="MNIST",
                manual_hint=" (the original archive from the MNIST site; its gunzipped copy without '.gz' also works)",
            )
            with gzip.open(archive, "rb") as src, open(raw / (name + ".part"), "wb") as dst:
                shutil.copyfileobj(src, dst)
            (raw / (name + ".part")).replace(raw / name)
    return raw


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "train",
    *,
    download: bool = True,
    mirror: str | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one MNIST split as tensors.

    Files are looked up in ``<data_dir>/MNIST/raw/`` (gunzipped copy first, then the ``.gz`` archive). When the
    test split is not there, the copy embedded in the package is used (no download). When the training split is not
    there and ``download`` is true, it is fetched with :func:`download_mnist`; otherwise a ``FileNotFoundError`` says
    where to put the files.

    Args:
        data_dir: root folder; ``None`` → ``$FP_DATA_DIR`` or ``~/.cache/fp_lightning/data``.
        split: ``"train"`` (60000 images) or ``"test"`` (10000).
        download: allow a download of missing training files.
        mirror: base URL replacing the official mirrors (also ``$FP_DATA_MIRROR``).
        progress: progress bar while downloading.

    Returns:
        ``(images, labels)``: ``uint8`` tensor of shape (n, 28, 28) with values 0..255 (0 = background) and
        ``int64`` tensor of shape (n,) with digits 0..9.

    Raises:
        ValueError: unknown split, or files that are not valid MNIST IDX files.
        FileNotFoundError: training files missing and ``download=False``.
        DatasetDownloadError: the download failed.

    Example:
        >>> import tempfile
        >>> images, labels = load_mnist(tempfile.mkdtemp(), split="test")  # empty folder: embedded copy
        >>> images.shape, images.dtype, labels.shape, labels.dtype
        (torch.Size([10000, 28, 28]), torch.uint8, torch.Size([10000]), torch.int64)
        >>> torch.bincount(labels)[:3].tolist()
        [980, 1135, 1032]
    """
    if split not in MNIST_FILES:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    raw = mnist_raw_dir(data_dir)
    (img_name, _), (lbl_name, _) = MNIST_FILES[split]
    img_path, lbl_path = _find(raw, img_name), _find(raw, lbl_name)
    if img_path is None or lbl_path is None:
        if split == "test":
            img_path, lbl_path = EMBEDDED_DIR / (img_name + ".gz"), EMBEDDED_DIR / (lbl_name + ".gz")
        elif download:
            download_mnist(data_dir, (split,), mirror=mirror, progress=progress)
            img_path, lbl_path = _find(raw, img_name), _find(raw, lbl_name)
        else:
            raise FileNotFoundError(
                f"MNIST {split} files not found in '{raw}' (need {img_name}[.gz] and {lbl_name}[.gz]) and "
                "download=False. Place the original archives there by hand, set FP_DATA_DIR (or `data_dir`) to a "
                "folder with an MNIST/raw/ subfolder, or allow the download."
            )
    if img_path is None or lbl_path is None:  # pragma: no cover - download_mnist raises first
        raise DatasetDownloadError(f"MNIST {split} files still missing in '{raw}' after the download.")
    images = read_idx(img_path, expected_magic=2051)
    labels = read_idx(lbl_path, expected_magic=2049)
    if images.dtype != torch.uint8 or images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"'{img_path}' holds {tuple(images.shape)} {images.dtype}, expected (n, 28, 28) uint8.")
    if labels.dtype != torch.uint8 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"'{lbl_path}' holds {tuple(labels.shape)} labels for {images.shape[0]} images.")
    labels = labels.to(torch.int64)
    if labels.numel() and int(labels.max()) > 9:
        raise ValueError(f"'{lbl_path}' has labels outside 0..9 (max {int(labels.max())}).")
    return images, labels
