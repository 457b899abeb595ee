"""Readers, downloads (against a local HTTP server only), label noise and the datamodules of fp_lightning.data."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import math
import os
import pickle
import shutil
import socket
import tarfile
import threading
import warnings
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

import fp_lightning.data.cifar as cifar_mod
from fp_lightning.data import (
    STAIRCASE_PRESETS,
    CIFAR10DataModule,
    DatasetDownloadError,
    MNISTDataModule,
    SineSeries1DDataModule,
    Staircase1DDataModule,
    corrupt_labels,
    default_data_dir,
    download_cifar10,
    download_mnist,
    evenly_spaced,
    load_cifar10,
    load_mnist,
    md5sum,
    quantize,
    read_idx,
    sine_series,
    staircase,
)
from fp_lightning.data._download import download_file
from fp_lightning.data.mnist import EMBEDDED_DIR, MNIST_FILES
from tests._paths import CIFAR_DIR, MNIST_RAW, SHARED_DATA, needs_shared

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
CIFAR_BATCH1_COUNTS = [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]

# the full MNIST and CIFAR-10 files are read from ../shared/data: these tests skip, saying why, without them
needs_mnist = needs_shared("MNIST/raw")
needs_cifar = needs_shared("cifar-10-batches-py")


# ---------------------------------------------------------------------------------------------------- helpers
@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test depends on the caller's FP_DATA_DIR / FP_DATA_MIRROR."""
    monkeypatch.delenv("FP_DATA_DIR", raising=False)
    monkeypatch.delenv("FP_DATA_MIRROR", raising=False)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[callable]:
    """Start HTTP servers on 127.0.0.1 (free port, a thread each) serving a folder; shut them down afterwards."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(folder: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _closed_port_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more: connection refused


def _write_idx(path: Path, magic: int, shape: tuple[int, ...], payload: bytes) -> None:
    header = magic.to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in shape)
    path.write_bytes(header + payload)


def _cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"tiny",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"x.png"] * n,
    }


def _tiny_cifar_archive(folder: Path) -> tuple[Path, dict, dict]:
    """A small cifar-10-python.tar.gz with data_batch_1 (20 images) and test_batch (10)."""
    train, test = _cifar_batch(20, 0), _cifar_batch(10, 1)
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, batch in (("data_batch_1", train), ("test_batch", test)):
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return archive, train, test


# ---------------------------------------------------------------------------------------------------- readers
@needs_mnist
def test_mnist_test_split_shapes_dtypes_and_class_counts() -> None:
    images, labels = load_mnist(SHARED_DATA, "test", download=False)
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == MNIST_TEST_COUNTS
    assert int(images.max()) == 255 and int(images.min()) == 0


@needs_mnist
def test_mnist_train_split_class_counts() -> None:
    images, labels = load_mnist(SHARED_DATA, "train", download=False)
    assert images.shape == (60000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels).tolist() == MNIST_TRAIN_COUNTS


@needs_mnist
@pytest.mark.parametrize(("name", "magic"), [("t10k-images-idx3-ubyte", 2051), ("t10k-labels-idx1-ubyte", 2049)])
def test_read_idx_gz_and_raw_agree(name: str, magic: int) -> None:
    raw = read_idx(MNIST_RAW / name, expected_magic=magic)
    gz = read_idx(MNIST_RAW / (name + ".gz"), expected_magic=magic)
    assert raw.dtype == gz.dtype == torch.uint8
    assert torch.equal(raw, gz)
    # independent check of the reader: the raw bytes after the header
    offset = 16 if magic == 2051 else 8
    expected = np.fromfile(MNIST_RAW / name, dtype=np.uint8, offset=offset)
    assert np.array_equal(raw.numpy().reshape(-1), expected)


def test_read_idx_magic_and_size_errors(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    _write_idx(labels, 2049, (3,), bytes([1, 2, 3]))
    assert read_idx(labels).tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match=r"magic number 2049, expected 2051"):
        read_idx(labels, expected_magic=2051)

    truncated = tmp_path / "truncated"
    _write_idx(truncated, 2051, (2, 28, 28), bytes(100))
    with pytest.raises(ValueError, match=r"truncated or corrupt"):
        read_idx(truncated)

    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x12\x34\x56\x78" + bytes(20))
    with pytest.raises(ValueError, match=r"not an IDX file"):
        read_idx(garbage)

    gz = tmp_path / "bad.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5))[:-6])
    with pytest.raises(ValueError, match=r"Cannot read IDX file"):
        read_idx(gz)

    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_read_idx_other_types(tmp_path: Path) -> None:
    path = tmp_path / "floats"
    values = np.array([[1.5, -2.0], [0.25, 8.0]], dtype=">f4")
    _write_idx(path, 0x00000D02, (2, 2), values.tobytes())
    out = read_idx(path)
    assert out.dtype == torch.float32 and out.tolist() == [[1.5, -2.0], [0.25, 8.0]]


def test_load_mnist_rejects_swapped_files(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", 2049, (2,), bytes(2))  # a labels file where images belong
    _write_idx(raw / "train-labels-idx1-ubyte", 2049, (2,), bytes(2))
    with pytest.raises(ValueError, match=r"expected 2051"):
        load_mnist(tmp_path, "train", download=False)


def test_load_mnist_missing_train_without_download(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"MNIST train files not found"):
        load_mnist(tmp_path, "train", download=False)
    with pytest.raises(ValueError, match=r"`split`"):
        load_mnist(tmp_path, "validation")


@needs_mnist
def test_embedded_copy_equals_shared_one(tmp_path: Path) -> None:
    for name, md5 in MNIST_FILES["test"]:
        assert md5sum(EMBEDDED_DIR / (name + ".gz")) == md5 == md5sum(MNIST_RAW / (name + ".gz"))
    assert (EMBEDDED_DIR / "README.md").is_file() and (EMBEDDED_DIR / "LICENSE").is_file()
    assert "CC BY-SA 3.0" in (EMBEDDED_DIR / "README.md").read_text(encoding="utf-8")
    emb_images, emb_labels = load_mnist(tmp_path, "test", download=False)  # empty folder → embedded copy
    images, labels = load_mnist(SHARED_DATA, "test", download=False)
    assert torch.equal(emb_images, images) and torch.equal(emb_labels, labels)


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_data_dir() == Path.home() / ".cache" / "fp_lightning" / "data"
    monkeypatch.setenv("FP_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    assert torch.bincount(load_mnist(split="test")[1]).tolist() == MNIST_TEST_COUNTS  # embedded, via the env dir


@needs_cifar
def test_cifar_train_uses_present_batches_and_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar_mod, "_WARNED", set())
    with pytest.warns(UserWarning, match=r"data_batch_2, data_batch_3, data_batch_4, data_batch_5 missing"):
        images, labels = load_cifar10(SHARED_DATA, "train", download=False)
    assert images.shape == (10000, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and torch.bincount(labels).tolist() == CIFAR_BATCH1_COUNTS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cifar10(SHARED_DATA, "train", download=False)  # second time: no warning
    # channel layout: row = 1024 red, 1024 green, 1024 blue values, each 32 × 32 row-major
    with open(CIFAR_DIR / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]
    assert np.array_equal(images[7, 1].numpy(), raw[7, 1024:2048].reshape(32, 32))


@needs_cifar
def test_cifar_test_split() -> None:
    images, labels = load_cifar10(SHARED_DATA, "test", download=False)
    assert images.shape == (10000, 3, 32, 32)
    assert torch.bincount(labels).tolist() == [1000] * 10


def test_cifar_loader_refuses_foreign_pickles(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": []}))
    with pytest.raises(ValueError, match=r"may not reference"):
        load_cifar10(tmp_path, "test", download=False)
    with pytest.raises(FileNotFoundError, match=r"No CIFAR-10 train batch file"):
        load_cifar10(tmp_path, "train", download=False)


# ---------------------------------------------------------------------------------------------------- downloads
@needs_mnist
def test_download_mnist_from_local_mirror(tmp_path: Path, serve: callable) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for name, _ in MNIST_FILES["test"]:
        shutil.copy(MNIST_RAW / (name + ".gz"), served)
    url = serve(served)
    raw = download_mnist(tmp_path / "data", ("test",), mirror=url, progress=True)
    for name, md5 in MNIST_FILES["test"]:
        assert md5sum(raw / (name + ".gz")) == md5
        assert md5sum(raw / name) == md5sum(MNIST_RAW / name)  # gunzipped like torchvision
    assert not list(raw.glob("*.part"))
    images, labels = load_mnist(tmp_path / "data", "test", download=False)
    assert torch.bincount(labels).tolist() == MNIST_TEST_COUNTS and images.shape == (10000, 28, 28)


@needs_mnist
def test_load_mnist_train_downloads_from_env_mirror(
    tmp_path: Path, serve: callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for name, _ in MNIST_FILES["train"]:
        (served / (name + ".gz")).symlink_to(MNIST_RAW / (name + ".gz"))
    monkeypatch.setenv("FP_DATA_MIRROR", serve(served))
    monkeypatch.setenv("FP_DATA_DIR", str(tmp_path / "data"))
    images, labels = load_mnist(split="train", progress=False)
    assert images.shape == (60000, 28, 28)
    assert torch.bincount(labels).tolist() == MNIST_TRAIN_COUNTS


def test_download_md5_mismatch_is_a_clear_error(tmp_path: Path, serve: callable) -> None:
    served = tmp_path / "served"
    served.mkdir()
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not the labels"))
    (served / "t10k-images-idx3-ubyte.gz").write_bytes(b"x")
    url = serve(served)
    dest = tmp_path / "data"
    with pytest.raises(DatasetDownloadError) as info:
        download_mnist(dest, ("test",), mirror=url, progress=False)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message and "MD5 mismatch" in message
    assert f"{url}t10k-images-idx3-ubyte.gz" in message and "9fb629c4189551a2d022fa330f9573f3" in message
    assert not any((dest / "MNIST" / "raw").iterdir())  # nothing half-written is left


def test_download_offline_names_file_and_urls(tmp_path: Path) -> None:
    urls = [_closed_port_url(), _closed_port_url()]
    with pytest.raises(DatasetDownloadError) as info:
        download_file("t10k-labels-idx1-ubyte.gz", tmp_path, urls, md5=None, progress=False, dataset="MNIST")
    message = str(info.value)
    assert "'t10k-labels-idx1-ubyte.gz'" in message
    for url in urls:
        assert f"{url}t10k-labels-idx1-ubyte.gz" in message
    assert "place the file by hand" in message and str(tmp_path) in message
    assert not list(tmp_path.iterdir())

    with pytest.raises(DatasetDownloadError, match=r"train-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path, "train", mirror=_closed_port_url(), progress=False)


def test_download_http_404_is_reported(tmp_path: Path, serve: callable) -> None:
    url = serve(tmp_path)  # serves an empty folder
    with pytest.raises(DatasetDownloadError, match=r"404"):
        download_file("missing.bin", tmp_path / "out", [url], md5=None, progress=False)


def test_download_cifar10_from_local_archive(tmp_path: Path, serve: callable, monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    served.mkdir()
    archive, train, test = _tiny_cifar_archive(served)
    url = serve(served)
    folder = download_cifar10(tmp_path / "data", mirror=url, archive_md5=md5sum(archive), progress=False)
    assert (folder / "data_batch_1").is_file() and (folder / "test_batch").is_file()
    monkeypatch.setattr(cifar_mod, "_WARNED", set())
    with pytest.warns(UserWarning, match=r"data_batch_2"):
        images, labels = load_cifar10(tmp_path / "data", "train", download=False)
    assert images.shape == (20, 3, 32, 32) and labels.tolist() == train[b"labels"]
    assert np.array_equal(images.reshape(20, -1).numpy(), train[b"data"])
    images, labels = load_cifar10(tmp_path / "data", "test", download=False)
    assert labels.tolist() == test[b"labels"]

    # the same archive under the official MD5 is rejected, with a clear message
    with pytest.raises(DatasetDownloadError, match=r"MD5 mismatch \(expected c58f30108f718f92721af3b95e74349a"):
        load_cifar10(tmp_path / "other", "test", mirror=url, progress=False)


def test_unsafe_tar_members_are_refused(tmp_path: Path, serve: callable) -> None:
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    url = serve(served)
    with pytest.raises(DatasetDownloadError, match=r"unsafe member"):
        download_cifar10(tmp_path / "data", mirror=url, archive_md5=md5sum(archive), progress=False)
    assert not (tmp_path / "escape.txt").exists()


# ---------------------------------------------------------------------------------------------------- label noise
def test_corrupt_labels_exact_fraction_seeded_and_no_global_rng() -> None:
    labels = torch.arange(10000) % 10
    state = torch.get_rng_state()
    noisy, chosen = corrupt_labels(labels, 0.3, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert int(chosen.sum()) == 3000
    assert torch.equal(noisy != labels, chosen)  # mode "other": every chosen label changes, no other does
    assert set(((noisy[chosen] - labels[chosen]) % 10).tolist()) == set(range(1, 10))
    again, chosen2 = corrupt_labels(labels, 0.3, 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, noisy) and torch.equal(chosen2, chosen)
    other, _ = corrupt_labels(labels, 0.3, 10, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(other, noisy)


def test_corrupt_labels_mode_all() -> None:
    labels = torch.arange(10000) % 10
    noisy, chosen = corrupt_labels(labels, 0.5, 10, mode="all", generator=torch.Generator().manual_seed(0))
    assert int(chosen.sum()) == 5000
    changed = int((noisy != labels).sum())
    assert bool(((noisy != labels) <= chosen).all())
    assert abs(changed - 4500) < 150  # 9/10 of the chosen ones
    with pytest.raises(ValueError, match=r"label_noise"):
        corrupt_labels(labels, 1.5, 10)
    with pytest.raises(ValueError, match=r"label_noise_mode"):
        corrupt_labels(labels, 0.1, 10, mode="pairs")


# ---------------------------------------------------------------------------------------------------- datamodules
@needs_mnist
def test_mnist_datamodule_noise_subset_and_reproducibility() -> None:
    def build(seed: int) -> MNISTDataModule:
        dm = MNISTDataModule(SHARED_DATA, subset_size=1000, label_noise=0.2, val_fraction=0.1, seed=seed)
        dm.setup("fit")
        return dm

    dm = build(3)
    assert dm.train_split == "test" and dm.test_split == "train"
    x, y = dm.train_dataset.tensors
    assert x.shape == (900, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert int((y != dm.clean_train_labels).sum()) == round(0.2 * 900) == int(dm.noise_mask.sum())
    assert len(dm.val_dataset) == 100
    assert not set(dm.train_indices.tolist()) & set(dm.val_indices.tolist())
    images, labels = load_mnist(SHARED_DATA, "test", download=False)
    assert torch.equal(dm.clean_train_labels, labels[dm.train_indices])
    assert torch.equal(dm.val_dataset.tensors[1], labels[dm.val_indices])  # validation labels stay clean
    assert torch.equal(x[5, 0], images[dm.train_indices[5]].float() / 255)

    same = build(3)
    assert all(torch.equal(a, b) for a, b in zip(dm.train_dataset.tensors, same.train_dataset.tensors))
    batches = [next(iter(d.train_dataloader()))[1] for d in (dm, same)]
    assert torch.equal(*batches)  # seeded shuffling
    assert not torch.equal(build(4).train_indices, dm.train_indices)


@needs_mnist
def test_mnist_datamodule_scalar_target_normalize_and_test_split() -> None:
    dm = MNISTDataModule(SHARED_DATA, train_split="train", subset_size=2000, target="scalar", normalize=True)
    dm.setup("fit")
    dm.setup("test")
    x, y = dm.train_dataset.tensors
    assert y.shape == (2000, 1) and y.dtype == torch.float32 and set(y.flatten().tolist()) <= set(range(10))
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    assert len(dm.test_dataset) == 10000  # the other split, whole
    xb, yb = next(iter(dm.test_dataloader()))
    assert xb.shape == (100, 1, 28, 28) and yb.shape == (100, 1)
    with pytest.raises(ValueError, match=r"`train_split`"):
        MNISTDataModule(train_split="val")
    with pytest.raises(ValueError, match=r"`subset_size`=20000 exceeds"):
        MNISTDataModule(SHARED_DATA, subset_size=20000).setup("fit")


@needs_cifar
def test_cifar_datamodule_shapes() -> None:
    dm = CIFAR10DataModule(SHARED_DATA, batch_size=16, subset_size=64, download=False)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 10


# ---------------------------------------------------------------------------------------------------- 1-D tasks
def test_staircase_against_hand_computation() -> None:
    x = torch.tensor([-1.0, -0.6, -0.2, 0.1, 0.3, 0.6, 1.0], dtype=torch.float64)
    assert staircase("x", 0.5)(x).tolist() == [-1.0, -0.5, 0.0, 0.0, 0.5, 0.5, 1.0]
    assert staircase("x", 0.0)(x).tolist() == x.tolist()
    assert staircase("abs", 1.0)(x).tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert staircase("square", 0.25)(x).tolist() == [1.0, 0.25, 0.0, 0.0, 0.0, 0.25, 1.0]
    points = [0.3, 1.0, math.pi / 6, 2.5, -4.0]
    for p in points:
        f0 = math.sin(p) + 2 * math.sin(3 * p) + 3 * math.sin(5 * p)
        expected = 2.0 * round(f0 / 2.0)
        assert staircase("sin3", 2.0)(torch.tensor([p], dtype=torch.float64)).item() == expected
    assert quantize(torch.tensor([0.25, 0.75]), 0.5).tolist() == [0.0, 1.0]  # ties to even, as numpy.round
    with pytest.raises(ValueError, match=r"`f0`"):
        staircase("cube", 0.5)
    with pytest.raises(ValueError, match=r"`alpha`"):
        staircase("x", -1.0)


def test_fig3_preset() -> None:
    dm = Staircase1DDataModule(preset="fig3")
    x, y = dm.x_train, dm.y_train
    assert x.shape == y.shape == (601, 1) and x.dtype == y.dtype == torch.float32
    assert float(x[0]) == -1.0 and float(x[-1]) == 1.0
    assert torch.allclose(x.diff(dim=0), torch.full((600, 1), 2 / 600), atol=1e-6)
    assert float(x[75]) == -0.75 and float(y[75]) == -1.0  # exact grid point, tie rounded to even
    expected = [0.5 * round(2 * (-1 + k / 300)) for k in range(601) if k not in (75, 225, 375, 525)]
    got = [v for k, v in enumerate(y.flatten().tolist()) if k not in (75, 225, 375, 525)]
    assert got == expected
    assert Staircase1DDataModule().hparams["preset"] is None and len(Staircase1DDataModule().train_dataset) == 601
    (xb, _), *rest = list(dm.train_dataloader())
    assert not rest and xb.shape == (601, 1)  # full batch


def test_fig4_and_fig6_presets() -> None:
    dm4 = Staircase1DDataModule.from_preset("fig4")
    assert dm4.n_train == 600 and dm4.x_range == (-10.0, 10.0) and dm4.alpha == 2.0
    assert set(dm4.y_train.flatten().tolist()) <= {-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0}
    assert dm4.test_dataset is None

    dm6 = Staircase1DDataModule(preset="fig6", seed=1)
    assert len(dm6.train_dataset) == 300 and len(dm6.test_dataset) == 6000
    assert float(dm6.x_test.min()) == -10.0 and float(dm6.x_test.max()) == 10.0
    clean = dm6.target_function(dm6.x_train)
    flipped = float((clean != dm6.y_train).float().mean())
    assert 0.02 < flipped < 0.4  # noise sd 0.1 before rounding to steps of 0.5
    assert set((dm6.y_train / 0.5).flatten().tolist()) <= {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
    assert torch.equal(Staircase1DDataModule(preset="fig6", seed=1).y_train, dm6.y_train)
    assert not torch.equal(Staircase1DDataModule(preset="fig6", seed=2).y_train, dm6.y_train)
    quiet = Staircase1DDataModule(preset="fig6", noise_on_test=False)
    assert torch.equal(quiet.y_test, quiet.target_function(quiet.x_test))
    override = Staircase1DDataModule(preset="fig6", noise_std=0.0, n_train=50)
    assert override.n_train == 50 and torch.equal(override.y_train, override.target_function(override.x_train))
    assert set(STAIRCASE_PRESETS) == {"fig3", "fig4", "fig6"}


def test_minibatches_and_random_sampling() -> None:
    dm = Staircase1DDataModule(preset="fig4", batch_size=64, sampling="random", seed=3)
    x = dm.x_train.flatten()
    assert bool((x.diff() >= 0).all()) and float(x.min()) >= -10 and float(x.max()) <= 10
    sizes = [len(b[0]) for b in dm.train_dataloader()]
    assert sizes == [64] * 9 + [24]


def test_sine_series() -> None:
    def by_hand(v: float) -> float:
        return sum(math.sin(j * v / 10) / j for j in range(1, 501))

    dm = SineSeries1DDataModule()
    assert dm.x_train.shape == dm.y_train.shape == (300, 1)
    assert math.isclose(float(dm.x_train[0]), -3.14, abs_tol=1e-6)
    assert math.isclose(float(dm.x_train[-1]), 3.14, abs_tol=1e-6)
    for k in (0, 77, 150, 299):
        assert math.isclose(float(dm.y_train[k]), by_hand(float(evenly_spaced(-3.14, 3.14, 300)[k])), abs_tol=1e-5)
    value = sine_series(torch.tensor([1.0], dtype=torch.float64)).item()
    assert math.isclose(value, by_hand(1.0), rel_tol=1e-12)
    assert SineSeries1DDataModule(sampling="random", n_test=100).x_test.shape == (100, 1)


def test_md5sum_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(os.urandom(200_000))
    assert md5sum(path) == hashlib.md5(path.read_bytes()).hexdigest()
