"""Shared LightningModule logic of the paper's networks: loss, optimizer, Gaussian init, logging."""

from __future__ import annotations

import itertools
import math

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ACTIVATIONS", "LOSSES", "OPTIMIZERS", "FPModule", "gaussian_init_", "make_mlp"]

LOSSES = ("mse", "cross_entropy", "l4")
OPTIMIZERS = ("adam", "sgd")
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def gaussian_init_(module: nn.Module, std: float, generator: torch.Generator | None = None) -> nn.Module:
    """Set every weight and bias of the ``Linear`` and ``Conv2d`` layers of ``module`` to N(0, std²) draws, in place.

    Draws come from ``generator`` when given, else from the global RNG (seed it with
    ``lightning.seed_everything``). Layers are visited in ``module.modules()`` order, weight before bias.

    Example:
        >>> net = nn.Linear(1000, 100)
        >>> _ = gaussian_init_(net, 0.1, torch.Generator().manual_seed(0))
        >>> round(float(net.weight.detach().std()), 2), round(float(net.bias.detach().std()), 1)
        (0.1, 0.1)
    """
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std > 0):
        raise ValueError(f"`init_std` must be None or a finite number > 0, got {std!r}.")
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d)):
                nn.init.normal_(layer.weight, 0.0, std, generator=generator)
                if layer.bias is not None:
                    nn.init.normal_(layer.bias, 0.0, std, generator=generator)
    return module


def make_mlp(sizes: tuple[int, ...] | list[int], activation: str) -> nn.Sequential:
    """Return Linear layers ``sizes[0] → sizes[1] → … → sizes[-1]`` with ``activation`` between them (not after).

    Example:
        >>> make_mlp((3, 5, 2), "tanh")
        Sequential(
          (0): Linear(in_features=3, out_features=5, bias=True)
          (1): Tanh()
          (2): Linear(in_features=5, out_features=2, bias=True)
        )
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {tuple(ACTIVATIONS)}, got {activation!r}.")
    if len(sizes) < 2 or not all(isinstance(s, int) and s >= 1 for s in sizes):
        raise ValueError(f"Layer widths must be ints ≥ 1, got {tuple(sizes)}.")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        if i:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class FPModule(pl.LightningModule):
    """Base LightningModule: a network ``self.net``, a loss and an optimizer chosen by name.

    Loss convention:
        ``loss="mse"`` is the mean of the squared differences over all samples and outputs. Real targets must have
        the outputs' shape, or (n,) with one output. Integer class labels are turned into one-hot vectors when the
        network has ``num_outputs > 1`` (one-hot MSE), and into the class index as a real number when it has one
        output (the paper's regression of the digit value). ``loss="cross_entropy"`` needs integer labels and
        ``num_outputs > 1`` (the outputs are logits). ``loss="l4"`` is the mean of the fourth powers of the
        differences, (1/M) Σ (h − y)⁴ (the theory paper's Fig. 2), with the targets prepared as for the MSE.

    Logged (``self.log``): ``train_loss`` per epoch (mean over the epoch's batches), ``val_loss`` and ``test_loss``
    when those loops run; with integer labels and ``num_outputs > 1`` also ``train_acc``, ``val_acc``, ``test_acc``
    (arg-max accuracy).

    Initialization: with ``init_std`` a float, every weight and bias is drawn from N(0, init_std²); with ``None``
    PyTorch's default initialization is kept. The draws use a private generator seeded with ``init_seed`` when it
    is given, else the global RNG (call ``lightning.seed_everything`` first for reproducible runs).
    """

    def __init__(
        self,
        num_outputs: int,
        loss: str,
        optimizer: str,
        lr: float,
        momentum: float,
        init_std: float | None,
        init_seed: int | None,
    ) -> None:
        super().__init__()
        if not (isinstance(num_outputs, int) and num_outputs >= 1):
            raise ValueError(f"`num_outputs` must be an int ≥ 1, got {num_outputs!r}.")
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}.")
        if loss == "cross_entropy" and num_outputs < 2:
            raise ValueError("`loss='cross_entropy'` needs `num_outputs` ≥ 2 (one logit per class).")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"`optimizer` must be one of {OPTIMIZERS}, got {optimizer!r}.")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"`lr` must be a finite number > 0, got {lr!r}.")
        if not (isinstance(momentum, (int, float)) and 0 <= momentum < 1):
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum!r}.")
        if init_std is not None and not (
            isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std > 0
        ):
            raise ValueError(f"`init_std` must be None or a finite number > 0, got {init_std!r}.")
        self.num_outputs = num_outputs
        self.loss_name = loss
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.init_std = init_std
        self.init_seed = init_seed
        self.net: nn.Module

    def _init_weights(self) -> None:
        if self.init_std is not None:
            generator = None if self.init_seed is None else torch.Generator().manual_seed(self.init_seed)
            gaussian_init_(self.net, float(self.init_std), generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the network's outputs, shape (B, num_outputs)."""
        return self.net(x)

    # -- loss ----------------------------------------------------------------------------------------------------
    def _is_labels(self, y: torch.Tensor) -> bool:
        return not y.is_floating_point() and not y.is_complex()

    def compute_loss(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Return the loss of ``outputs`` (B, num_outputs) against targets ``y`` (see the class docstring)."""
        if self.loss_name == "cross_entropy":
            if not self._is_labels(y) or y.ndim != 1:
                raise ValueError(
                    f"`loss='cross_entropy'` needs integer class labels of shape (B,), got {tuple(y.shape)} {y.dtype}."
                )
            return F.cross_entropy(outputs, y)
        if self._is_labels(y):
            y = y.reshape(-1)
            if self.num_outputs > 1:
                target = F.one_hot(y, self.num_outputs).to(outputs.dtype)
            else:
                target = y.to(outputs.dtype).unsqueeze(1)
        else:
            target = y.to(outputs.dtype)
            if target.ndim == 1 and outputs.shape[1] == 1:
                target = target.unsqueeze(1)
        if target.shape != outputs.shape:
            raise ValueError(f"Targets of shape {tuple(y.shape)} do not match outputs of shape {tuple(outputs.shape)}.")
        if self.loss_name == "l4":
            return (outputs - target).pow(4).mean()
        return F.mse_loss(outputs, target)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        outputs = self(x)
        loss = self.compute_loss(outputs, y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        if self._is_labels(y) and y.ndim == 1 and self.num_outputs > 1:
            acc = (outputs.argmax(dim=1) == y).to(torch.float32).mean()
            self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Compute and log the training loss of one batch."""
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Log the validation loss (and accuracy) of one batch."""
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Log the test loss (and accuracy) of one batch."""
        self._step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, ...] | torch.Tensor, batch_idx: int) -> torch.Tensor:
        """Return the outputs for a batch ``(x, ...)`` or a tensor ``x``."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Return Adam (PyTorch's default betas and eps, as in the paper) or SGD (with ``momentum``)."""
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.lr)
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)
