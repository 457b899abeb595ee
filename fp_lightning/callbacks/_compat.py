"""Lightning import root and the glue that lets one callback serve ``lightning.pytorch`` and ``pytorch_lightning``.

Our import root is ``lightning.pytorch``. When the standalone ``pytorch_lightning`` package is also installed, our
callbacks derive from both packages' ``Callback`` classes (they are plain classes of no-op hooks), so a Trainer
from either package accepts them. Everything else the callbacks use from the Trainer is duck-typed.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback as _LightningCallback
from lightning.pytorch.callbacks import EarlyStopping as _LightningEarlyStopping
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

try:  # the standalone package is optional
    from pytorch_lightning import Callback as _PLCallback
    from pytorch_lightning.callbacks import EarlyStopping as _PLEarlyStopping
except ImportError:  # pragma: no cover - exercised only without pytorch_lightning
    _PLCallback = None
    _PLEarlyStopping = None

__all__ = ["CALLBACK_BASES", "EARLY_STOPPING_BASES", "is_tensorboard", "rank_zero_info", "rank_zero_warn"]

CALLBACK_BASES: tuple[type, ...] = (_LightningCallback,) + ((_PLCallback,) if _PLCallback is not None else ())
EARLY_STOPPING_BASES: tuple[type, ...] = (_LightningEarlyStopping,) + (
    (_PLEarlyStopping,) if _PLEarlyStopping is not None else ()
)


def is_tensorboard(logger: Any) -> bool:
    """True for a TensorBoardLogger of either package (its ``experiment`` is a SummaryWriter)."""
    return type(logger).__name__ == "TensorBoardLogger" and hasattr(logger, "experiment")
