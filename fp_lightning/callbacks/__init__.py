"""Lightning callbacks (thin glue over ``fp_lightning.metrics`` and ``fp_lightning.functional``)."""

from fp_lightning.callbacks.curriculum import FrequencyCurriculum, PeakCurriculum
from fp_lightning.callbacks.early_stopping import FrequencyEarlyStopping
from fp_lightning.callbacks.monitor import FrequencyPrincipleMonitor
from fp_lightning.callbacks.stopping_rule import Decision, FrequencyStoppingRule, history_checks
from fp_lightning.record import FrequencyHistory, load_history

__all__ = ["Decision", "FrequencyCurriculum", "FrequencyEarlyStopping", "FrequencyHistory", "FrequencyPrincipleMonitor",
           "FrequencyStoppingRule", "PeakCurriculum", "history_checks", "load_history"]
