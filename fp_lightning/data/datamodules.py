"""LightningDataModules for MNIST and CIFAR-10 with the paper's options (train on the test split, scalar labels).

Batches are ``(x, y)`` tuples. ``x`` is ``float32`` of shape (B, 1, 28, 28) for MNIST or (B, 3, 32, 32) for CIFAR-10,
with pixel values scaled to [0, 1] (``normalize=False``, the default) or standardized per channel with the usual
training-set mean and standard deviation (``normalize=True``). ``y`` is ``int64`` (B,) class labels
(``target="class"``) or the class index as a real number, ``float32`` (B, 1) (``target="scalar"``, the paper's
regression of the digit value, §2.1). All data are held in memory as tensors.
"""

from __future__ import annotations

from typing import ClassVar

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning.data.cifar import cifar10_dir, download_cifar10, load_cifar10
from fp_lightning.data.label_noise import corrupt_labels
from fp_lightning.data.mnist import download_mnist, load_mnist

__all__ = ["CIFAR10DataModule", "MNISTDataModule"]

_SPLITS = ("train", "test")


class _ImageDataModule(pl.LightningDataModule):
    """Shared logic of :class:`MNISTDataModule` and :class:`CIFAR10DataModule`."""

    name: ClassVar[str] = ""
    input_shape: ClassVar[tuple[int, ...]] = ()
    num_classes: ClassVar[int] = 10
    _mean: ClassVar[tuple[float, ...]] = ()
    _std: ClassVar[tuple[float, ...]] = ()

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 100,
        train_split: str = "test",
        subset_size: int | None = None,
        label_noise: float = 0.0,
        label_noise_mode: str = "other",
        target: str = "class",
        normalize: bool = False,
        val_fraction: float = 0.0,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = True,
        mirror: str | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"`batch_size` must be an int ≥ 1, got {batch_size!r}.")
        if train_split not in _SPLITS:
            raise ValueError(f"`train_split` must be 'train' or 'test', got {train_split!r}.")
        if subset_size is not None and not (isinstance(subset_size, int) and subset_size >= 1):
            raise ValueError(f"`subset_size` must be None or an int ≥ 1, got {subset_size!r}.")
        if not (isinstance(label_noise, (int, float)) and 0.0 <= label_noise <= 1.0):
            raise ValueError(f"`label_noise` must be a fraction in [0, 1], got {label_noise!r}.")
        if label_noise_mode not in ("other", "all"):
            raise ValueError(f"`label_noise_mode` must be 'other' or 'all', got {label_noise_mode!r}.")
        if target not in ("class", "scalar"):
            raise ValueError(f"`target` must be 'class' or 'scalar', got {target!r}.")
        if not (isinstance(val_fraction, (int, float)) and 0.0 <= val_fraction < 1.0):
            raise ValueError(f"`val_fraction` must be in [0, 1), got {val_fraction!r}.")
        if not (isinstance(num_workers, int) and num_workers >= 0):
            raise ValueError(f"`num_workers` must be an int ≥ 0, got {num_workers!r}.")
        self.save_hyperparameters()
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.train_split = train_split
        self.test_split = "train" if train_split == "test" else "test"
        self.subset_size = subset_size
        self.label_noise = float(label_noise)
        self.label_noise_mode = label_noise_mode
        self.target = target
        self.normalize = normalize
        self.val_fraction = float(val_fraction)
        self.num_workers = num_workers
        self.seed = seed
        self.download = download
        self.mirror = mirror
        self.train_dataset: TensorDataset | None = None
        self.val_dataset: TensorDataset | None = None
        self.test_dataset: TensorDataset | None = None
        #: bool mask over the training set: True where the label was replaced by noise (after ``setup("fit")``).
        self.noise_mask: torch.Tensor | None = None
        #: the training labels before noise, int64 (after ``setup("fit")``).
        self.clean_train_labels: torch.Tensor | None = None
        #: positions in the training split of the training / validation images (after ``setup("fit")``).
        self.train_indices: torch.Tensor | None = None
        self.val_indices: torch.Tensor | None = None
        if self.val_fraction > 0:
            # Lightning runs a validation loop only when `val_dataloader` is defined: define it only when there is one.
            self.val_dataloader = self._val_dataloader

    # -- loading ---------------------------------------------------------------------------------------------------
    def _load(self, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _to_inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32).div_(255.0).reshape(images.shape[0], *self.input_shape)
        if self.normalize:
            mean = torch.tensor(self._mean, dtype=torch.float32).view(1, -1, 1, 1)
            std = torch.tensor(self._std, dtype=torch.float32).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def _to_targets(self, labels: torch.Tensor) -> torch.Tensor:
        if self.target == "scalar":
            return labels.to(torch.float32).unsqueeze(1)
        return labels.to(torch.int64)

    def _generator(self, offset: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def _prepare(self, split: str) -> None:
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Download the training split's files if they are missing and ``download`` is true (one process only).

        The other split is fetched, if needed, by ``setup("test")``.
        """
        if self.download:
            self._prepare(self.train_split)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets: training (+ validation) for ``fit``/``validate``, the other split for ``test``."""
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            self._setup_fit()
        if stage in (None, "test") and self.test_dataset is None:
            images, labels = self._load(self.test_split, download=self.download)
            self.test_dataset = TensorDataset(self._to_inputs(images), self._to_targets(labels))

    def _setup_fit(self) -> None:
        images, labels = self._load(self.train_split, download=self.download)
        n = labels.shape[0]
        idx = torch.arange(n)
        if self.subset_size is not None:
            if self.subset_size > n:
                raise ValueError(
                    f"`subset_size`={self.subset_size} exceeds the {n} images of the {self.train_split} split."
                )
            idx = torch.sort(torch.randperm(n, generator=self._generator(1))[: self.subset_size]).values
        val_idx = None
        if self.val_fraction > 0:
            n_val = min(max(round(self.val_fraction * idx.numel()), 1), idx.numel() - 1)
            if n_val < 1:
                raise ValueError("`val_fraction` > 0 needs at least 2 training images.")
            perm = torch.randperm(idx.numel(), generator=self._generator(2))
            val_idx = torch.sort(idx[perm[:n_val]]).values
            idx = torch.sort(idx[perm[n_val:]]).values
        self.train_indices, self.val_indices = idx, val_idx
        train_labels = labels[idx]
        self.clean_train_labels = train_labels.clone()
        noisy, self.noise_mask = corrupt_labels(
            train_labels, self.label_noise, self.num_classes, mode=self.label_noise_mode, generator=self._generator(3)
        )
        self.train_dataset = TensorDataset(self._to_inputs(images[idx]), self._to_targets(noisy))
        if val_idx is not None:
            self.val_dataset = TensorDataset(self._to_inputs(images[val_idx]), self._to_targets(labels[val_idx]))

    # -- loaders -----------------------------------------------------------------------------------------------------
    def _loader(self, dataset: TensorDataset | None, what: str, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"No {what} dataset: call `setup()` first.")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            generator=self._generator(4) if shuffle else None,
        )

    def train_dataloader(self) -> DataLoader:
        """Return shuffled batches of the training set (shuffling seeded by ``seed``)."""
        return self._loader(self.train_dataset, "training", shuffle=True)

    def _val_dataloader(self) -> DataLoader:
        """Return the held-out part of the training split (clean labels); bound as ``val_dataloader`` if any."""
        return self._loader(self.val_dataset, "validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Return the whole other split (``"train"`` when training on ``"test"`` and vice versa), never noisy."""
        return self._loader(self.test_dataset, "test", shuffle=False)


class MNISTDataModule(_ImageDataModule):
    """MNIST digits as a LightningDataModule, with the paper's defaults (train on the 10000 test images).

    Args:
        data_dir: root folder with ``MNIST/raw/``; ``None`` → ``$FP_DATA_DIR`` or ``~/.cache/fp_lightning/data``.
            The test split falls back to the copy embedded in the package, so the default setup needs no download.
        batch_size: batch size of every loader (the paper: 100 for the FC network, 128 for the CNN).
        train_split: split used for training, ``"test"`` (the paper, §2.1) or ``"train"``; the test loader serves
            the other split.
        subset_size: train on a random subset of this many images (seeded, kept in the original order).
        label_noise: fraction of the training labels replaced by symmetric noise (see
            :func:`~fp_lightning.data.corrupt_labels`); validation and test labels stay clean.
        label_noise_mode: ``"other"`` (each corrupted label becomes one of the 9 other digits, so exactly
            ``round(label_noise · n)`` labels change) or ``"all"`` (drawn among all 10 digits).
        target: ``"class"`` (int64 labels, shape (B,)) or ``"scalar"`` (the digit as float32, shape (B, 1)).
        normalize: standardize with MNIST's mean 0.1307 and std 0.3081 instead of keeping [0, 1].
        val_fraction: hold out this fraction of the training images (after ``subset_size``) as a validation set,
            with clean labels; ``val_dataloader`` exists only when it is > 0 (so Lightning runs no validation loop
            otherwise).
        num_workers: DataLoader worker processes.
        seed: seeds the subset, the validation split, the label noise and the shuffling (own generators, never
            the global RNG).
        download: allow downloading missing training files (the test split never needs it).
        mirror: base URL replacing the official mirrors (also ``$FP_DATA_MIRROR``).

    Example:
        >>> import tempfile
        >>> dm = MNISTDataModule(data_dir=tempfile.mkdtemp(), subset_size=256, label_noise=0.25, target="scalar")
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, x.dtype, y.shape, y.dtype
        (torch.Size([100, 1, 28, 28]), torch.float32, torch.Size([100, 1]), torch.float32)
        >>> float(x.min()) >= 0.0 and float(x.max()) <= 1.0, int(dm.noise_mask.sum())
        (True, 64)
    """

    name: ClassVar[str] = "mnist"
    input_shape: ClassVar[tuple[int, ...]] = (1, 28, 28)
    _mean: ClassVar[tuple[float, ...]] = (0.1307,)
    _std: ClassVar[tuple[float, ...]] = (0.3081,)

    def _load(self, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return load_mnist(self.data_dir, split, download=download, mirror=self.mirror)

    def _prepare(self, split: str) -> None:
        if split == "train":  # the test split is embedded in the package
            download_mnist(self.data_dir, ("train",), mirror=self.mirror)


class CIFAR10DataModule(_ImageDataModule):
    """CIFAR-10 as a LightningDataModule, with the paper's defaults (train on the 10000 test images).

    Same options as :class:`MNISTDataModule`; inputs are (3, 32, 32) RGB. ``normalize=True`` uses the per-channel
    training-set mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616). The training split uses whichever
    ``data_batch_*`` files are present (with one warning naming the missing ones); the archive is downloaded only
    when no file of a needed split exists and ``download`` is true.

    Example:
        >>> dm = CIFAR10DataModule(data_dir="/nonexistent", batch_size=128)
        >>> dm.input_shape, dm.num_classes, dm.test_split
        ((3, 32, 32), 10, 'train')
    """

    name: ClassVar[str] = "cifar10"
    input_shape: ClassVar[tuple[int, ...]] = (3, 32, 32)
    _mean: ClassVar[tuple[float, ...]] = (0.4914, 0.4822, 0.4465)
    _std: ClassVar[tuple[float, ...]] = (0.2470, 0.2435, 0.2616)

    def _load(self, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return load_cifar10(self.data_dir, split, download=download, mirror=self.mirror)

    def _prepare(self, split: str) -> None:
        names = ("test_batch",) if split == "test" else tuple(f"data_batch_{i}" for i in range(1, 6))
        if not any((cifar10_dir(self.data_dir) / n).is_file() for n in names):
            download_cifar10(self.data_dir, mirror=self.mirror)
