"""The paper's fully connected tanh network for MNIST / CIFAR-10 (Fig. 1, second column)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from fp_lightning.models._base import FPModule, make_mlp

__all__ = ["FullyConnectedNet"]


class FullyConnectedNet(FPModule):
    """Fully connected network: flatten, hidden layers 200-100-100 with tanh, then a linear output layer.

    Paper, Fig. 1: widths 200-100-100, tanh, batch size 100, learning rate 1e-6 (MNIST) or 1e-5 (CIFAR-10),
    Gaussian initialization of weights and biases with mean 0 and standard deviation 1e-4. The paper regresses the
    scalar label (``num_outputs=1`` with ``target="scalar"`` data); ``num_outputs=10`` with class labels uses
    one-hot MSE (``loss="mse"``) or cross-entropy. See :class:`~fp_lightning.models.FPModule` for the loss,
    logging and initialization conventions.

    Args:
        in_features: input size after flattening; or give ``input_shape`` instead. Default: (1, 28, 28), i.e. 784.
        input_shape: shape of one input, e.g. (1, 28, 28) for MNIST or (3, 32, 32) for CIFAR-10.
        hidden: widths of the hidden layers.
        num_outputs: size of the output layer (10 for class scores, 1 for the scalar label).
        activation: ``"tanh"`` (paper) or ``"relu"``.
        loss: ``"mse"`` or ``"cross_entropy"``.
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: learning rate (default: the paper's MNIST value).
        momentum: SGD momentum (ignored by Adam).
        init_std: standard deviation of the Gaussian initialization, ``None`` for PyTorch's default.
        init_seed: seed of a private generator for the initialization (``None``: global RNG).

    Example:
        >>> model = FullyConnectedNet(init_seed=0)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in model.parameters()) == 784 * 200 + 200 + 200 * 100 + 100 + 100 * 100 + 100 + 1010
        True
    """

    def __init__(
        self,
        in_features: int | None = None,
        input_shape: Sequence[int] | None = None,
        hidden: Sequence[int] = (200, 100, 100),
        num_outputs: int = 10,
        activation: str = "tanh",
        loss: str = "mse",
        optimizer: str = "adam",
        lr: float = 1e-6,
        momentum: float = 0.0,
        init_std: float | None = 1e-4,
        init_seed: int | None = None,
    ) -> None:
        super().__init__(num_outputs, loss, optimizer, lr, momentum, init_std, init_seed)
        if input_shape is not None:
            input_shape = tuple(int(s) for s in input_shape)
            flat = math.prod(input_shape)
            if in_features is not None and in_features != flat:
                raise ValueError(f"`in_features`={in_features} does not match `input_shape`={input_shape} ({flat}).")
        elif in_features is not None:
            input_shape = (in_features,)
        else:
            input_shape = (1, 28, 28)
        if not all(s >= 1 for s in input_shape):
            raise ValueError(f"`input_shape` / `in_features` must be positive, got {input_shape}.")
        self.save_hyperparameters()
        self.input_shape = input_shape
        self.in_features = math.prod(input_shape)
        self.net = nn.Sequential(
            nn.Flatten(), make_mlp((self.in_features, *(int(h) for h in hidden), num_outputs), activation)
        )
        self.example_input_array = torch.zeros(1, *input_shape)
        self._init_weights()
