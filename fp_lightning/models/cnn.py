"""The paper's small convolutional network for MNIST / CIFAR-10 (Fig. 1, third column)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fp_lightning.models._base import ACTIVATIONS, FPModule, make_mlp

__all__ = ["SmallCNN"]


class SmallCNN(FPModule):
    """Two 3×3 convolutions of 32 features with 2×2 max-pooling, then dense layers 128-64, ReLU.

    Paper, Fig. 1: "two layers of 32 features with 3×3 convolutional kernel and 2×2 max-pooling, followed by 128-64
    dense networks; activation: relu; batch size: 128; learning rate: 1e-4 for CIFAR10 and 1e-5 for MNIST; Gaussian
    initialization with mean 0 and standard deviation 0.05". The paper does not say whether each convolution is
    followed by a pooling; by default (``pool="each"``) both are (conv-ReLU-pool twice), ``pool="last"`` pools once
    after the second convolution. Convolutions are unpadded ("valid"): MNIST 28 → 26 → 13 → 11 → 5, CIFAR-10
    32 → 30 → 15 → 13 → 6 per side. See :class:`~fp_lightning.models.FPModule` for loss, logging and init.

    Args:
        input_shape: (channels, height, width): (1, 28, 28) for MNIST, (3, 32, 32) for CIFAR-10.
        conv_channels: features of each convolution.
        kernel_size: side of the square kernels.
        dense: widths of the dense hidden layers.
        num_outputs: size of the output layer (10 for class scores, 1 for the scalar label).
        pool: ``"each"`` or ``"last"`` (see above).
        activation: ``"relu"`` (paper) or ``"tanh"``.
        loss: ``"mse"`` or ``"cross_entropy"``.
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: learning rate (default: the paper's MNIST value).
        momentum: SGD momentum (ignored by Adam).
        init_std: standard deviation of the Gaussian initialization, ``None`` for PyTorch's default.
        init_seed: seed of a private generator for the initialization (``None``: global RNG).

    Example:
        >>> model = SmallCNN(input_shape=(3, 32, 32), init_seed=0)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
        >>> model.flat_features  # 32 channels × 6 × 6
        1152
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        conv_channels: Sequence[int] = (32, 32),
        kernel_size: int = 3,
        dense: Sequence[int] = (128, 64),
        num_outputs: int = 10,
        pool: str = "each",
        activation: str = "relu",
        loss: str = "mse",
        optimizer: str = "adam",
        lr: float = 1e-5,
        momentum: float = 0.0,
        init_std: float | None = 0.05,
        init_seed: int | None = None,
    ) -> None:
        super().__init__(num_outputs, loss, optimizer, lr, momentum, init_std, init_seed)
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"`input_shape` must be (channels, height, width), got {input_shape}.")
        if pool not in ("each", "last"):
            raise ValueError(f"`pool` must be 'each' or 'last', got {pool!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {tuple(ACTIVATIONS)}, got {activation!r}.")
        if not conv_channels or not all(int(c) >= 1 for c in conv_channels):
            raise ValueError(f"`conv_channels` must be ints ≥ 1, got {conv_channels!r}.")
        self.save_hyperparameters()
        self.input_shape = input_shape
        layers: list[nn.Module] = []
        channels, height, width = input_shape
        for i, features in enumerate(int(c) for c in conv_channels):
            layers += [nn.Conv2d(channels, features, kernel_size), ACTIVATIONS[activation]()]
            channels, height, width = features, height - kernel_size + 1, width - kernel_size + 1
            if pool == "each" or i == len(conv_channels) - 1:
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            if height < 1 or width < 1:
                raise ValueError(f"`input_shape` {input_shape} is too small for {len(conv_channels)} conv layers.")
        self.flat_features = channels * height * width
        head = make_mlp((self.flat_features, *(int(d) for d in dense), num_outputs), activation)
        self.net = nn.Sequential(*layers, nn.Flatten(), head)
        self.example_input_array = torch.zeros(1, *input_shape)
        self._init_weights()
