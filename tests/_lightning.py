"""Tiny LightningModules and data for the callback tests, buildable from either Lightning import root."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset


def regression_data(n: int = 256, seed: int = 0) -> TensorDataset:
    """y = sin(2πx₀) + 0.3 sin(10πx₀) on 4-D inputs: a low and a high frequency along the main direction."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, generator=g) * torch.tensor([1.0, 0.2, 0.2, 0.2])
    y = torch.sin(2 * torch.pi * x[:, :1]) + 0.3 * torch.sin(10 * torch.pi * x[:, :1])
    return TensorDataset(x, y)


class DictDataset(Dataset):
    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x, y = self.base[i]
        return {"features": x, "y": y}


def make_module(root: str = "lightning.pytorch", dropout: float = 0.0, nan_after: int | None = None,
                out_features: int = 1):
    import importlib

    L = importlib.import_module(root)

    class TinyRegressor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                                           torch.nn.Linear(32, out_features))
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x.reshape(x.shape[0], -1))
            if nan_after is not None and self.current_epoch >= nan_after:
                out = out * float("nan")
            return out

        def training_step(self, batch, _):
            x, y = (batch["features"], batch["y"]) if isinstance(batch, dict) else batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    return TinyRegressor()


def loader(dataset: Dataset, batch_size: int = 32, shuffle: bool = True) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(0))
