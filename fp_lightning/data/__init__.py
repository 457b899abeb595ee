"""Data: MNIST / CIFAR-10 readers and LightningDataModules, the paper's 1-D tasks and its image regression (Fig. 2).

Datasets are read from a folder (``data_dir`` argument, else ``$FP_DATA_DIR``, else ``~/.cache/fp_lightning/data``)
in torchvision's layout; the MNIST test split also ships inside the package. Missing files are downloaded only when
allowed, from the official mirrors (or ``$FP_DATA_MIRROR``), with MD5 checks.
"""

from fp_lightning.data._download import DatasetDownloadError, default_data_dir, md5sum
from fp_lightning.data.cifar import CIFAR10_CLASSES, download_cifar10, load_cifar10
from fp_lightning.data.datamodules import CIFAR10DataModule, MNISTDataModule
from fp_lightning.data.label_noise import corrupt_labels
from fp_lightning.data.mnist import download_mnist, load_mnist, read_idx
from fp_lightning.data.synthetic import (
    COORDINATE_SCALES,
    F0_FUNCTIONS,
    SAMPLINGS,
    STAIRCASE_PRESETS,
    TRAIN_COLUMNS,
    ImageRegression2DDataModule,
    SineSeries1DDataModule,
    Staircase1DDataModule,
    evenly_spaced,
    load_grey_image,
    pixel_coordinates,
    quantize,
    sample_image_path,
    sine_series,
    staircase,
)

__all__ = [
    "CIFAR10_CLASSES",
    "COORDINATE_SCALES",
    "F0_FUNCTIONS",
    "SAMPLINGS",
    "STAIRCASE_PRESETS",
    "TRAIN_COLUMNS",
    "CIFAR10DataModule",
    "DatasetDownloadError",
    "ImageRegression2DDataModule",
    "MNISTDataModule",
    "SineSeries1DDataModule",
    "Staircase1DDataModule",
    "corrupt_labels",
    "default_data_dir",
    "download_cifar10",
    "download_mnist",
    "evenly_spaced",
    "load_cifar10",
    "load_grey_image",
    "load_mnist",
    "md5sum",
    "pixel_coordinates",
    "quantize",
    "read_idx",
    "sample_image_path",
    "sine_series",
    "staircase",
]
