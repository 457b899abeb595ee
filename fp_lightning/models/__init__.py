"""The paper's networks as LightningModules: fully connected tanh (Fig. 1), small CNN (Fig. 1), MLP (Figs. 2–8).

Every model takes the loss and the optimizer by name (``loss="mse" | "cross_entropy"``, ``optimizer="adam" | "sgd"``,
``lr``, ``init_std``), so LightningCLI / YAML configs can build them, and logs ``train_loss`` per epoch and
``val_loss`` / ``test_loss`` (and accuracies for class labels) when those loops run.
"""

from fp_lightning.models._base import FPModule, gaussian_init_
from fp_lightning.models.cnn import SmallCNN
from fp_lightning.models.fc import FullyConnectedNet
from fp_lightning.models.mlp1d import TanhMLP1D

__all__ = ["FPModule", "FullyConnectedNet", "SmallCNN", "TanhMLP1D", "gaussian_init_"]
