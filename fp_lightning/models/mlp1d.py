"""The paper's fully connected network for its synthetic tasks: 1-D staircases (Figs. 3–8) and the image (Fig. 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fp_lightning.losses import FrequencyWeightedLoss
from fp_lightning.models._base import FPModule, make_mlp

__all__ = ["TanhMLP1D"]


class TanhMLP1D(FPModule):
    """Fully connected tanh network 1-200-200-200-100-1 for the 1-D staircase and sine-series tasks.

    Paper, Fig. 3 (also used for Figs. 4–6): "a full-connected tanh-DNN of 4 hidden layers with width:
    200-200-200-100 … initialized following a Gaussian distribution with mean 0 and standard deviation 0.1 …
    trained by full batch Adam optimizer with learning rate 2×10⁻⁵ … the loss function is the mean squared error".
    Pair it with a 1-D datamodule whose ``batch_size`` is ``None`` (full batch). See
    :class:`~fp_lightning.models.FPModule` for loss, logging and initialization conventions.

    The same class builds the paper's other fully connected networks: ReLU instead of tanh (Fig. 7a,
    ``activation="relu"``), other widths (Fig. 7b: 400-400-400-200-200), and the image regression of Fig. 2 with
    2-D inputs (``in_features=2``, pixel coordinates) and a small (0.01) or large (0.5) ``init_std``.

    Args:
        in_features: input dimension.
        hidden: widths of the hidden layers.
        num_outputs: output dimension.
        activation: ``"tanh"`` (paper) or ``"relu"`` (the paper's Fig. 7a).
        loss: ``"mse"`` (paper), ``"l4"`` (mean fourth power, the theory paper's Fig. 2) or ``"cross_entropy"``.
        optimizer: ``"adam"`` (paper) or ``"sgd"``.
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        init_std: standard deviation of the Gaussian initialization, ``None`` for PyTorch's default.
        init_seed: seed of a private generator for the initialization (``None``: global RNG).
        weighted_loss_samples: train with the frequency-weighted loss L_wf of the paper's Eq. (4) on this many
            samples N instead of the MSE (``None``: the MSE). It needs the whole uniform grid in order in one batch
            (a datamodule with ``batch_size=None``); its weights start at w ≡ 1 (= the MSE) and a
            :class:`~fp_lightning.FrequencyCurriculum` moves them (paper Fig. 5). ``train_loss`` is then L_wf and
            ``train_mse`` the plain MSE.

    Example:
        >>> model = TanhMLP1D(init_seed=0)
        >>> model(torch.zeros(5, 1)).shape
        torch.Size([5, 1])
        >>> sum(p.numel() for p in model.parameters())  # 400 + 2·40200 + 20100 + 101
        101001
        >>> image_net = TanhMLP1D(in_features=2, hidden=(8, 8), activation="relu", init_std=0.5, init_seed=0)
        >>> image_net.net
        Sequential(
          (0): Linear(in_features=2, out_features=8, bias=True)
          (1): ReLU()
          (2): Linear(in_features=8, out_features=8, bias=True)
          (3): ReLU()
          (4): Linear(in_features=8, out_features=1, bias=True)
        )
    """

    def __init__(
        self,
        in_features: int = 1,
        hidden: Sequence[int] = (200, 200, 200, 100),
        num_outputs: int = 1,
        activation: str = "tanh",
        loss: str = "mse",
        optimizer: str = "adam",
        lr: float = 2e-5,
        momentum: float = 0.0,
        init_std: float | None = 0.1,
        init_seed: int | None = None,
        weighted_loss_samples: int | None = None,
    ) -> None:
        super().__init__(num_outputs, loss, optimizer, lr, momentum, init_std, init_seed)
        if not (isinstance(in_features, int) and in_features >= 1):
            raise ValueError(f"`in_features` must be an int ≥ 1, got {in_features!r}.")
        if weighted_loss_samples is not None and loss != "mse":
            raise ValueError(f"`weighted_loss_samples` replaces the MSE; it needs `loss='mse'`, got {loss!r}.")
        self.save_hyperparameters()
        self.in_features = in_features
        self.net = make_mlp((in_features, *(int(h) for h in hidden), num_outputs), activation)
        self.example_input_array = torch.zeros(1, in_features)
        self._init_weights()
        self.frequency_loss = None if weighted_loss_samples is None else FrequencyWeightedLoss(weighted_loss_samples)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """The MSE step of :class:`FPModule`, or L_wf when ``weighted_loss_samples`` is set (and ``train_mse``)."""
        if self.frequency_loss is None:
            return super().training_step(batch, batch_idx)
        x, y = batch
        outputs = self(x)
        target = y.to(outputs.dtype).reshape(outputs.shape)
        loss = self.frequency_loss(outputs, target)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=x.shape[0])
        self.log("train_mse", F.mse_loss(outputs, target), on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss
