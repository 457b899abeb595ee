"""The part of a monitor that measures on another monitor's frequencies: a held-out probe beside the training one.

``FrequencyPrincipleMonitor(probe_dataloader=val_loader, spectral=train_monitor, name="val")`` waits for the
training monitor's first fit, freezes its projection, frequencies, cutoff (and δ, unless given its own
``filtering``) before its own first compute, and once both have recorded at a global step publishes
``fp_<name>/delta_f_gap/k=<k>``, held-out minus training Δ_F at each tracked k
(:func:`~fp_lightning.record.gap_values`). :class:`ReferenceProbe` holds these steps; the monitor's own module
keeps the hooks and the order of work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fp_lightning.callbacks.panels import publish_scalars
from fp_lightning.record import gap_values

__all__ = ["ReferenceProbe", "frame_ready"]


class ReferenceProbe:
    """The reference-monitor steps of :class:`~fp_lightning.FrequencyPrincipleMonitor` (a base class of it).

    They use the monitor's ``reference`` (the monitor given as ``spectral``, or ``None``), its Metrics, history,
    ``listeners`` and ``_record``; with no reference each step returns at once.

    Example:
        >>> from fp_lightning import FrequencyPrincipleMonitor
        >>> train = FrequencyPrincipleMonitor()
        >>> val = FrequencyPrincipleMonitor(spectral=train, name="val")
        >>> val.reference is train, isinstance(val, ReferenceProbe), frame_ready(train)
        (True, True, False)
    """

    reference: Any

    def _attach_reference(self, trainer: Any) -> None:
        """Listen to the reference's recordings (its first fit, the gap); it must be one of the Trainer's callbacks."""
        if self.reference is None:
            return
        if not any(callback is self.reference for callback in trainer.callbacks):
            raise ValueError(f"`spectral`: the FrequencyPrincipleMonitor given as {self.label}'s reference (its "
                             "frequencies and projection) is not among the Trainer's callbacks; add it to "
                             "`Trainer(callbacks=[...])` too.")
        if self._on_reference_recording not in self.reference.listeners:
            self.reference.listeners.append(self._on_reference_recording)

    def _record_when_ready(self, trainer: Any, pl_module: Any, epoch: int) -> None:
        """Record now, or, while the reference has not fitted its frequencies yet, right after it does."""
        if self.reference is not None and self.spectral.projection is None and not frame_ready(self.reference):
            self._pending_epoch = epoch  # the reference records later in this hook (it comes after us)
            return
        self._record(trainer, pl_module, epoch)

    def _on_reference_recording(self, trainer: Any, pl_module: Any) -> None:
        """The reference recorded: make a recording that waited for its fit, and publish the gap."""
        if self._pending_epoch is not None and frame_ready(self.reference):
            epoch, self._pending_epoch = self._pending_epoch, None
            self._record(trainer, pl_module, epoch)
        self._publish_gap(trainer)

    def _adopt_reference_frame(self) -> None:
        """Freeze the reference's projection, frequencies, cutoff (and δ) before this monitor's first compute."""
        reference = self.reference
        if reference is None or self.spectral.projection is not None or not frame_ready(reference):
            return
        self.spectral.projection = reference.spectral.projection
        self.spectral.fitted_freqs = reference.spectral.fitted_freqs.clone()
        self.spectral.fitted_cutoff = reference.spectral.fitted_cutoff
        mine, theirs = self.filtering, reference.filtering
        if (self._shares_deltas and theirs.fitted_deltas is not None and mine.input_components is None
                and theirs.input_components is None):
            mine.fitted_deltas = theirs.fitted_deltas.clone()

    def _publish_gap(self, trainer: Any) -> None:
        """``fp_<name>/delta_f_gap/k=<k>``, once both monitors have recorded at this global step."""
        reference = self.reference
        if reference is None or self.history is None or reference.history is None:
            return
        mine, theirs = self.history.records, reference.history.records
        if not mine["step"] or not theirs["step"] or self._gap_step == trainer.global_step:
            return
        same = (mine["step"][-1] == theirs["step"][-1] == trainer.global_step
                and mine["epoch"][-1] == theirs["epoch"][-1] and self.history.freqs == reference.history.freqs)
        if same:
            self._gap_step = trainer.global_step
            publish_scalars(trainer, gap_values(self.history.freqs, mine["delta_f"][-1], theirs["delta_f"][-1],
                                                self.prefix))

    def _reference_history_path(self) -> Path | None:
        """The reference's history file when it writes one to the same folder (for the generalization panel)."""
        reference = self.reference
        if reference is None or reference.history_file is None or reference._folder is None:
            return None
        return reference._folder / reference.history_file


def frame_ready(reference: Any) -> bool:
    """Whether the reference has fitted its projection, frequencies and cutoff (its first recording did)."""
    spectral = None if reference is None else reference.spectral
    return (spectral is not None and spectral.projection is not None and spectral.fitted_freqs is not None
            and spectral.fitted_cutoff is not None)
