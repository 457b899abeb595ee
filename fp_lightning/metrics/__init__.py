"""torchmetrics ``Metric`` classes over ``fp_lightning.functional``: state, DDP gathering and frozen fits."""

from fp_lightning.metrics.denoised import DenoisedLoss
from fp_lightning.metrics.filtering import LowHighFrequencyError
from fp_lightning.metrics.prediction_changes import PredictionChanges
from fp_lightning.metrics.spectral import ProjectedSpectralError

__all__ = ["DenoisedLoss", "LowHighFrequencyError", "PredictionChanges", "ProjectedSpectralError"]
