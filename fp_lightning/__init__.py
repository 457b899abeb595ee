"""fp_lightning: see the Frequency Principle while you train with PyTorch Lightning.

Add :class:`FrequencyPrincipleMonitor` to a ``Trainer`` to measure, every epoch, how well the network fits each
frequency of its targets (projected NUFFT spectrum error Δ_F(k), Gaussian-filter errors e_low / e_high).
"""

from fp_lightning.callbacks import (
    FrequencyCurriculum,
    FrequencyEarlyStopping,
    FrequencyPrincipleMonitor,
    FrequencyStoppingRule,
)
from fp_lightning.losses import FrequencyWeightedLoss
from fp_lightning.metrics import DenoisedLoss

__all__ = ["FrequencyCurriculum", "FrequencyEarlyStopping", "FrequencyPrincipleMonitor", "FrequencyStoppingRule",
           "FrequencyWeightedLoss", "__version__"]
__all__ += ["DenoisedLoss"]
__version__ = "0.1.0"
