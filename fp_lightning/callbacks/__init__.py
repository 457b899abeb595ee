"""Lightning callbacks (thin glue over ``fp_lightning.metrics`` and ``fp_lightning.functional``)."""

from fp_lightning.callbacks.curriculum import FrequencyCurriculum, PeakCurriculum
from fp_lightning.callbacks.early_stopping import FrequencyEarlyStopping
from fp_lightning.callbacks.history import FrequencyHistory, load_history
from fp_lightning.callbacks.monitor import FrequencyPrincipleMonitor

__all__ = ["FrequencyCurriculum", "FrequencyEarlyStopping", "FrequencyHistory", "FrequencyPrincipleMonitor",
           "PeakCurriculum", "load_history"]
