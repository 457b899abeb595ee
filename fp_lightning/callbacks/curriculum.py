"""``FrequencyCurriculum``: train with the paper's frequency-weighted loss, its mask moved over the spectrum's peaks.

The F-Principle paper (§3.2, Fig. 5) tests whether low frequencies converge first only because the loss weights
them: it trains with L_wf (Eq. (4)) whose weights w(γ) keep the frequencies up to the i-th peak γ_i and moves to
the next peak once Δ_F(γ_i) < 10% ("low to high", Fig. 5a), or keeps the frequencies from γ_i up and moves down
("high to low", Fig. 5b; also after a budget of steps, since high frequencies alone converge very slowly).

:class:`PeakCurriculum` is the rule alone (no Lightning: peaks and Δ_F values in, weights out; replayable);
:class:`FrequencyCurriculum` is the Lightning glue that feeds it the monitor's Δ_F and sets the loss's weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fp_lightning.callbacks._compat import CALLBACK_BASES, rank_zero_info, rank_zero_warn
from fp_lightning.functional._validation import check_choice, check_int, check_number, check_optional_int
from fp_lightning.functional.weighted_loss import high_pass_weights, low_pass_weights
from fp_lightning.losses import FrequencyWeightedLoss
from fp_lightning.record import DELTA_F_PREFIX

__all__ = ["DIRECTIONS", "FrequencyCurriculum", "PeakCurriculum"]

#: Values of ``direction``.
DIRECTIONS = ("low_to_high", "high_to_low")



class PeakCurriculum:
    """The paper's Fig. 5 schedule of L_wf weights over the target's spectral peaks (no Lightning involved).

    Convention (paper §3.2):
        The peaks γ_1 < … < γ_m are visited one at a time; i is the current one.

        - ``"low_to_high"``: i = 1, 2, …, m; w(γ) = 1 for |γ| ≤ γ_i, else 0 (``low_pass_weights``).
        - ``"high_to_low"``: i = m, m − 1, …, 1; w(γ) = 1 for |γ| ≥ γ_i, else 0 (``high_pass_weights``).

        |γ| = min(γ, N − γ): the DFT index and its mirror get the same weight ("the second half fulfilled by
        symmetry"). At each recording (:meth:`update`) i moves on by one when Δ_F(γ_i) < ``threshold`` (strictly;
        the paper's 10%), or when ``max_steps_per_peak`` is set and at least that many steps have passed since γ_i
        became current (the paper's budget of 5000 for high to low). At the last peak of the order it stays. A NaN
        Δ_F never moves it (it still counts towards the budget).

    Args:
        peaks: the frequencies γ_i (DFT indices, distinct ints in [1, N/2]), any order.
        n_samples: N, the DFT length of the loss.
        direction: ``"low_to_high"`` or ``"high_to_low"``.
        threshold: Δ_F level below which the current peak counts as fitted (> 0).
        max_steps_per_peak: move on after this many steps on a peak even if it is not fitted (``None``: never).

    Attributes:
        transitions: ``(step, peak)`` each time a peak became current, the first at step 0.

    Example:
        >>> schedule = PeakCurriculum([4, 1, 12], n_samples=32)
        >>> schedule.current_peak, schedule.weights()[:6].tolist()
        (1, [1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
        >>> schedule.update({1: 0.5, 4: 0.9, 12: 1.0}, step=100)  # Δ_F(1) = 0.5: not yet
        False
        >>> schedule.update({1: 0.05, 4: 0.9, 12: 1.0}, step=200)  # fitted: move on to k = 4
        True
        >>> schedule.current_peak, schedule.transitions
        (4, [(0, 1), (200, 4)])
    """

    def __init__(
        self,
        peaks: Sequence[int],
        n_samples: int,
        direction: str = "low_to_high",
        threshold: float = 0.1,
        max_steps_per_peak: int | None = None,
    ) -> None:
        check_int("n_samples", n_samples, 2)
        self.n_samples = n_samples
        self.peaks = _check_peaks(peaks, n_samples)
        _check_settings(direction, threshold, max_steps_per_peak)
        self.direction, self.threshold, self.max_steps_per_peak = direction, float(threshold), max_steps_per_peak
        #: the peaks in the order they are visited
        self.order = self.peaks if direction == "low_to_high" else self.peaks[::-1]
        self.stage = 0
        self.stage_start_step = 0
        self.transitions: list[tuple[int, int]] = [(0, self.order[0])]

    @property
    def current_peak(self) -> int:
        """γ_i, the peak whose Δ_F decides the next move."""
        return self.order[self.stage]

    @property
    def finished(self) -> bool:
        """Whether the last peak of the order is current (the weights no longer change)."""
        return self.stage == len(self.order) - 1

    def weights(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """The (N,) weights w(γ) of the current stage (see the class Convention)."""
        build = low_pass_weights if self.direction == "low_to_high" else high_pass_weights
        return build(self.n_samples, self.current_peak, dtype=dtype, device=device)

    def update(self, delta_f: Mapping[int, float], step: int) -> bool:
        """Take one recording's Δ_F per tracked k (at least the current peak's) at training step ``step``.

        Returns:
            True when the current peak changed.

        Raises:
            ValueError: ``delta_f`` has no value for the current peak.
        """
        if self.finished:
            return False
        peak = self.current_peak
        if peak not in delta_f:
            raise ValueError(f"`delta_f` has no value for the current peak k={peak} (keys: {sorted(delta_f)}); the "
                             "monitor must track every peak of the curriculum.")
        value = float(delta_f[peak])
        fitted = value < self.threshold  # False for NaN
        out_of_budget = self.max_steps_per_peak is not None and step - self.stage_start_step >= self.max_steps_per_peak
        if not (fitted or out_of_budget):
            return False
        self.stage += 1
        self.stage_start_step = int(step)
        self.transitions.append((int(step), self.current_peak))
        return True

    def state_dict(self) -> dict[str, Any]:
        """Settings and position, enough for :meth:`load_state_dict` to continue exactly."""
        return {"peaks": list(self.peaks), "n_samples": self.n_samples, "direction": self.direction,
                "threshold": self.threshold, "max_steps_per_peak": self.max_steps_per_peak, "stage": self.stage,
                "stage_start_step": self.stage_start_step, "transitions": [list(t) for t in self.transitions]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; the peaks and N must match this schedule's."""
        if list(state["peaks"]) != list(self.peaks) or int(state["n_samples"]) != self.n_samples:
            raise ValueError(f"the saved curriculum has peaks {list(state['peaks'])} on N={state['n_samples']}, this "
                             f"one {list(self.peaks)} on N={self.n_samples}; they must be equal to resume.")
        self.stage = int(state["stage"])
        self.stage_start_step = int(state["stage_start_step"])
        self.transitions = [(int(s), int(p)) for s, p in state["transitions"]]

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PeakCurriculum:
        """Rebuild a schedule, settings and position, from :meth:`state_dict`."""
        schedule = cls(list(state["peaks"]), int(state["n_samples"]), state["direction"], float(state["threshold"]),
                       state["max_steps_per_peak"])
        schedule.load_state_dict(state)
        return schedule


class FrequencyCurriculum(*CALLBACK_BASES):
    """Move the weights of a :class:`~fp_lightning.FrequencyWeightedLoss` over the spectrum's peaks (paper Fig. 5).

    Put it in ``Trainer(callbacks=[...])`` after a :class:`~fp_lightning.FrequencyPrincipleMonitor` whose tracked
    frequencies include the peaks (DFT indices of the loss's N samples: with the monitor's probe set equal to the
    N training points of a uniform 1-D grid, the monitor's k is the DFT index γ). The LightningModule computes its
    training loss with the loss module (full batch, samples in grid order). After each training epoch on which
    the monitor measured, the callback reads ``trainer.callback_metrics["fp/delta_f/k=<γ_i>"]``, updates its
    :class:`PeakCurriculum` (the rule is documented there) with ``trainer.global_step`` as the step count, and
    writes the new weights into the loss; it logs the current peak as ``fp/curriculum_peak``.

    Args:
        loss: the loss whose weights are set; ``None``: the one :class:`FrequencyWeightedLoss` found among the
            LightningModule's submodules.
        peaks: the γ_i; ``None``: the monitor's tracked frequencies.
        direction: ``"low_to_high"`` (Fig. 5a) or ``"high_to_low"`` (Fig. 5b).
        threshold: Δ_F level below which a peak counts as fitted (the paper's 0.1).
        max_steps_per_peak: training steps after which the curriculum moves on regardless (the paper's 5000 for
            high to low; ``None``: only Δ_F moves it).
        verbose: log a line at every move.

    Example:
        >>> import lightning.pytorch as L
        >>> from fp_lightning import FrequencyPrincipleMonitor
        >>> curriculum = FrequencyCurriculum(direction="high_to_low", max_steps_per_peak=5000)
        >>> trainer = L.Trainer(max_epochs=1, callbacks=[FrequencyPrincipleMonitor(), curriculum], logger=False,
        ...                     enable_progress_bar=False)
    """

    def __init__(
        self,
        loss: FrequencyWeightedLoss | None = None,
        peaks: Sequence[int] | None = None,
        direction: str = "low_to_high",
        threshold: float = 0.1,
        max_steps_per_peak: int | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if loss is not None and not isinstance(loss, FrequencyWeightedLoss):
            raise ValueError(f"`loss` must be a FrequencyWeightedLoss or None, got {type(loss).__name__}.")
        if peaks is not None:
            _check_peaks(peaks, None)
        _check_settings(direction, threshold, max_steps_per_peak)
        self.loss, self.peaks, self.direction = loss, None if peaks is None else list(peaks), direction
        self.threshold, self.max_steps_per_peak, self.verbose = threshold, max_steps_per_peak, verbose
        self.schedule: PeakCurriculum | None = None
        self._saved: dict[str, Any] | None = None  # a loaded state, applied once the schedule is built
        self._monitor: Any = None
        self._last_recording = 0  # the monitor's epoch-0 recording (before training) is not a check

    # ------------------------------------------------------------------ Lightning hooks (glue only)
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Find the monitor and the loss module (clear errors when either is missing)."""
        if stage != "fit":
            return
        self._monitor = _find_monitor(trainer)
        if self._monitor is None:
            raise RuntimeError("FrequencyCurriculum needs a FrequencyPrincipleMonitor in the Trainer's callbacks (it "
                               "reads the monitor's fp/delta_f values); use `Trainer(callbacks=["
                               "FrequencyPrincipleMonitor(...), FrequencyCurriculum(...)])`.")
        if self.loss is None:
            found = [m for m in pl_module.modules() if isinstance(m, FrequencyWeightedLoss)]
            if len(found) != 1:
                raise RuntimeError(f"FrequencyCurriculum found {len(found)} FrequencyWeightedLoss modules in the "
                                   "LightningModule; pass the one to steer as `loss=`.")
            self.loss = found[0]

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """Make sure the loss carries the current stage's weights before the first step (and after a resume)."""
        if self.schedule is None:
            self._build_schedule()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """After an epoch on which the monitor measured: update the schedule with Δ_F at the current peak."""
        self._check(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Catch a recording made after this callback's epoch-end hook (when it is listed before the monitor)."""
        self._check(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position, so a resumed run continues with the same peak and budget."""
        if self.schedule is None:
            return dict(self._saved or {})
        return {"schedule": self.schedule.state_dict(), "last_recording": self._last_recording}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved position; it is applied when the schedule is built at the first training batch."""
        if state_dict:
            self._saved = dict(state_dict)
            self._last_recording = int(state_dict.get("last_recording", 0))
            self.schedule = None

    # ------------------------------------------------------------------ steps
    def _build_schedule(self) -> None:
        if self.loss is None or self._monitor is None:
            raise RuntimeError("FrequencyCurriculum was not set up by a Trainer.fit (no monitor or loss found).")
        tracked = _tracked_frequencies(self._monitor)
        peaks = self.peaks if self.peaks is not None else tracked
        if peaks is None:
            raise RuntimeError("FrequencyCurriculum: the monitor has not chosen its frequencies yet (it does at the "
                               "start of training); pass `peaks=` explicitly.")
        if tracked is not None and not set(peaks) <= set(tracked):
            raise ValueError(f"`peaks` {sorted(peaks)} must be among the monitor's tracked frequencies {tracked}; "
                             "set the monitor's `frequencies` to include them.")
        probe = getattr(self._monitor, "probe", None)
        if probe is not None and len(probe) != self.loss.n_samples:
            rank_zero_warn(f"FrequencyCurriculum: the monitor's probe set has {len(probe)} samples and the loss "
                           f"{self.loss.n_samples}; the monitor's k is the loss's DFT index γ only when the probe "
                           "set is the whole uniform grid (set the monitor's `probe_size` to the number of training "
                           "points).")
        self.schedule = PeakCurriculum(peaks, self.loss.n_samples, self.direction, self.threshold,
                                       self.max_steps_per_peak)
        if self._saved and "schedule" in self._saved:
            self.schedule.load_state_dict(self._saved["schedule"])
        self.loss.set_weights(self.schedule.weights())

    def _check(self, trainer: Any, pl_module: Any) -> None:
        recorded = _last_recorded_epoch(self._monitor)
        if recorded is None or recorded <= self._last_recording or trainer.sanity_checking:
            return
        self._last_recording = recorded
        if self.schedule is None:
            self._build_schedule()
        assert self.schedule is not None and self.loss is not None
        delta_f = _delta_f_values(trainer.callback_metrics)
        if self.schedule.current_peak not in delta_f:  # the monitor skipped this recording (it warned already)
            return
        previous = self.schedule.current_peak
        if self.schedule.update(delta_f, step=trainer.global_step):
            self.loss.set_weights(self.schedule.weights())
            if self.verbose:
                rank_zero_info(f"FrequencyCurriculum: Δ_F(k={previous}) = {delta_f[previous]:.3g} at step "
                               f"{trainer.global_step}; the loss now weights "
                               f"{'k ≤' if self.direction == 'low_to_high' else 'k ≥'} {self.schedule.current_peak}.")
        pl_module.log("fp/curriculum_peak", float(self.schedule.current_peak), on_step=False, on_epoch=True)


# ---------------------------------------------------------------------- helpers (no Lightning state)
def _check_peaks(peaks: Sequence[int], n_samples: int | None) -> list[int]:
    if isinstance(peaks, (str, bytes)) or not isinstance(peaks, Sequence) or len(peaks) == 0:
        raise ValueError(f"`peaks` must be a non-empty list of ints, got {peaks!r}.")
    peaks = [check_int("peaks", k, 1) for k in peaks]  # k = 0, the mean, is no peak
    if len(set(peaks)) != len(peaks):
        raise ValueError(f"`peaks` must be distinct, got {list(peaks)!r}.")
    if n_samples is not None and max(peaks) > n_samples // 2:
        raise ValueError(f"`peaks` must be ≤ N/2 = {n_samples // 2} for the loss's N = {n_samples} samples, got "
                         f"{sorted(peaks)}.")
    return sorted(int(k) for k in peaks)


def _check_settings(direction: str, threshold: float, max_steps_per_peak: int | None) -> None:
    check_choice("direction", direction, DIRECTIONS)
    check_number("threshold", threshold, 0, strict_minimum=True)
    check_optional_int("max_steps_per_peak", max_steps_per_peak, 1)


def _find_monitor(trainer: Any) -> Any:
    from fp_lightning.callbacks.monitor import FrequencyPrincipleMonitor

    return next((cb for cb in trainer.callbacks if isinstance(cb, FrequencyPrincipleMonitor)), None)


def _tracked_frequencies(monitor: Any) -> list[int] | None:
    history = getattr(monitor, "history", None)
    return None if history is None else [int(k) for k in history.freqs]


def _last_recorded_epoch(monitor: Any) -> int | None:
    history = getattr(monitor, "history", None)
    if history is None or len(history) == 0:
        return None
    return int(history.records["epoch"][-1])


def _delta_f_values(metrics: Mapping[str, Any]) -> dict[int, float]:
    """Δ_F per k from the monitor's ``fp/delta_f/k=<k>`` keys."""
    return {int(key[len(DELTA_F_PREFIX):]): float(torch.as_tensor(value).detach().cpu().reshape(-1)[0])
            for key, value in metrics.items() if key.startswith(DELTA_F_PREFIX)}
