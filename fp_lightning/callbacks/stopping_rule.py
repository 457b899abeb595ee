"""The decision of :class:`~fp_lightning.callbacks.FrequencyEarlyStopping`, free of any Trainer.

:class:`FrequencyStoppingRule` takes the monitor's logged values one check at a time and says whether to stop; it
holds the criteria, the arming, the plateau window and the counters, and its state is plain Python. The callback is
the Lightning glue around it (finding the monitor, reading ``trainer.callback_metrics``, one decision for every
rank); :meth:`FrequencyStoppingRule.replay` runs the same rule over a finished run's ``fp_history.npz`` (or a
:class:`~fp_lightning.callbacks.FrequencyHistory`) to say where it would have stopped. This module imports no
Lightning.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fp_lightning.functional._validation import check_choice, check_int, check_number
from fp_lightning.record import (
    AGREEMENT_KEY,
    DELTA_F_PREFIX,
    DENOISED_KEY,
    E_LOW_PREFIX,
    PREDICTION_CHANGES_KEY,
    SHARE_KEY,
    FrequencyHistory,
    load_history,
    logged_values,
)

__all__ = ["CRITERIA", "SELECTIONS", "Decision", "FrequencyStoppingRule", "history_checks"]

#: Names of the stopping criteria, as stored in :attr:`FrequencyStoppingRule.criterion`.
CRITERIA = ("low_converged", "high_frequency_turn", "low_plateau", "denoised_minimum", "non_finite", "other_rank",
            "label_wave")
#: What ``agreement_threshold`` chooses between: the criterion used for the whole run.
SELECTIONS = ("denoised_minimum", "label_wave")

DELTA_NAMES = ("smallest", "middle", "largest")
LOW_METRICS = ("e_low", "delta_f")
_LABELS = {"low_converged": "(a) low_converged", "high_frequency_turn": "(b) high_frequency_turn",
           "low_plateau": "(c) low_plateau", "denoised_minimum": "(d) denoised_minimum", "non_finite": "non_finite",
           "other_rank": "other_rank", "label_wave": "(e) label_wave"}


@dataclass(frozen=True)
class Decision:
    """The outcome of one check of :class:`FrequencyStoppingRule`.

    Attributes:
        epoch: completed epochs at the check.
        should_stop: a criterion fired at this check.
        criterion: the criterion that fired (one of :data:`CRITERIA`), else ``None``.
        message: which criterion fired and with what values, or that (b) and (c) were armed; else ``None``.
        low_error: ε read at this check (``None`` when the check was ignored).
        share: s = ``fp/low_share`` read at this check (``None`` when absent or ignored).
        denoised: the denoised score ``fp/denoised_loss`` read at this check (``None`` when not used or ignored).
        checked: ``False`` when the check was ignored (before ``min_epochs``, or after the decision was taken).

    Example:
        >>> Decision(epoch=3, should_stop=False).checked
        True
    """

    epoch: int
    should_stop: bool
    criterion: str | None = None
    message: str | None = None
    low_error: float | None = None
    share: float | None = None
    checked: bool = True
    denoised: float | None = None


class FrequencyStoppingRule:
    """The stopping criteria of :class:`~fp_lightning.callbacks.FrequencyEarlyStopping`, one check at a time.

    Convention:
        At a check after epoch e (e = completed epochs) the rule reads, from the monitor's logged values,

        - ε(e), the **low-frequency error**, by ``low_metric``: ``"e_low"``: ``fp/e_low/delta=<δ>`` at one filter
          width δ picked by ``delta`` (``"largest"``: the widest; ``"middle"``: the median of the widths sorted
          ascending, the lower one of an even count; ``"smallest"``; or a δ value, matched within 0.1%);
          ``"delta_f"``: ``max_k Δ_F(k)`` over the ``n_low_freqs`` lowest tracked k (``fp/delta_f/k=<k>``);
        - s(e) = ``fp/low_share``, the share of the recent loss change at frequencies ≤ the cutoff η (theory
          paper Eq. (39)); absent before the monitor has two recordings;
        - D(e) = ``fp/denoised_loss`` (only with ``denoised_patience``), the loss of the outputs against the
          leave-one-out low-pass labels (``fp_lightning.metrics.DenoisedLoss``), a validation-loss-like score.

        The first criterion that fires decides, and the decision is final:

        - **(a) low_converged**: ε ≤ ``low_threshold`` on ``patience`` consecutive checks;
        - arming: (b) and (c) are armed at the first check with ε ≤ ``arm_threshold`` (``None``: the first check);
        - **(b) high_frequency_turn**: once armed, s ≤ ``share_threshold`` on ``patience`` consecutive checks on
          which s is present;
        - **(c) low_plateau**: once armed, with ε*(t) the best ε of the checks up to epoch t and the window
          w(e) = max(``patience``, ⌈``plateau_window`` · e⌉), fires when ε*(e) > (1 − ``plateau_rtol``) · ε*(t₀),
          t₀ the last check at or before e − w(e);
        - **(d) denoised_minimum**: D has not gone below its lowest value so far (strictly, as Lightning's
          ``EarlyStopping(mode="min", min_delta=0)``) on ``denoised_patience`` consecutive checks; the best-scored
          epoch is :attr:`denoised_best_epoch` (restore its weights with a ``ModelCheckpoint`` on the score);
        - **(e) label_wave** (only with ``label_wave_window`` = w): Label Wave (Yuan, Feng, Liu, "Early Stopping
          Against Label Noise Without Validation Data", ICLR 2025). With c(e) = ``fp/prediction_changes``, the
          share of probe predictions whose class changed since the previous recording, and m(e) the mean of c
          over the last w checks (defined from the w-th check on), (e) fires at the first check where m rises
          strictly above its lowest value so far: the first local minimum of the moving average. The chosen epoch
          (:attr:`label_wave_best_epoch`) is the last epoch of that minimal window;
        - **non_finite** (``check_finite``): ε, s, D or c is NaN or infinite; checked before the others.

        With ``agreement_threshold`` = τ (needs both (d) and (e)), only one of them is used for the whole run,
        chosen at the first check from A = ``fp/denoised_agreement``, the chance-corrected agreement
        (a − 1/C) / (1 − 1/C) of the denoised classes with the labels: (d) when A ≥ τ (neighbours in the
        input space share labels, so the denoised score is trustworthy), (e) when A < τ; without A (targets that
        are not class labels) (d), or (e) when ``fp/denoised_loss`` is absent too. :attr:`selected` says which.

        :attr:`best_epoch` is the epoch whose weights the rule chose: (d)'s best-scored epoch, (e)'s end of the
        minimal window, the stop of (a)-(c); ``FrequencyEarlyStopping(restore_best_weights=True)`` restores it.

        With (a), (b) and (c) all disabled, ε is not read (the rule needs only ``fp/denoised_loss``).

        Checks of epochs e < ``min_epochs`` are ignored (counters and arming do not move). Why these criteria and
        these defaults: ``docs/early_stopping.md``.

    Args:
        low_threshold: level of ε for (a); ``None`` disables (a).
        share_threshold: level of s for (b); ``None`` disables (b).
        arm_threshold: ε at or below which (b) and (c) are armed; ``None``: armed at the first check.
        plateau_rtol: relative improvement of ε* below which (c) fires, in [0, 1); ``None`` disables (c).
        plateau_window: (c)'s window as a fraction of the completed epochs, in [0, 1].
        patience: consecutive checks for (a) and (b), and the shortest window of (c), in epochs (≥ 1).
        low_metric: ``"e_low"`` or ``"delta_f"``.
        delta: with ``"e_low"``: ``"smallest"``, ``"middle"``, ``"largest"`` or a δ > 0 (as logged).
        n_low_freqs: with ``"delta_f"``, how many of the lowest tracked frequencies enter the maximum (≥ 1).
        min_epochs: checks of epochs before this many completed epochs are ignored (≥ 0).
        check_finite: stop when ε, s or D is not finite.
        denoised_patience: checks without a new minimum of D before (d) fires (≥ 1); ``None`` disables (d).
        label_wave_window: w, the checks in (e)'s moving average (≥ 1); ``None`` disables (e).
        agreement_threshold: τ of the choice between (d) and (e) (see Convention); ``None``: no choice, every
            enabled criterion is used.

    Attributes:
        criterion: ``None`` until a criterion fired, then one of :data:`CRITERIA`.
        stopped_after: completed epochs at the check that fired, or ``None``.
        armed_epoch: completed epochs at which (b) and (c) were armed, or ``None``.
        low_count, share_count: the consecutive checks so far with (a)'s and (b)'s condition true.
        best_score: ε*, the best ε so far (``inf`` before the first check).
        best_trace: ``[epoch, ε*]`` at every check, what (c) compares with.
        last_values: ε (under a name that says which), s and D read at the last check.
        denoised_best, denoised_best_epoch: the lowest D so far and the epoch of its check (``inf``, ``None``).
        denoised_count: consecutive checks since that minimum.
        label_wave_values: the last w values of c; label_wave_best, label_wave_best_epoch: the lowest m so far
            and the epoch of its check (``inf``, ``None``).
        selected: with ``agreement_threshold``, the criterion chosen at the first check (one of
            :data:`SELECTIONS`), else ``None``.

    Raises:
        ValueError: a bad argument (the message names it).

    Example:
        >>> rule = FrequencyStoppingRule(low_threshold=0.05, patience=2)
        >>> for epoch, e_low in enumerate([0.4, 0.04, 0.03, 0.02], start=1):
        ...     decision = rule.update({"fp/e_low/delta=0.5": e_low, "fp/low_share": 0.9}, epoch)
        ...     if decision.should_stop:
        ...         break
        >>> decision.epoch, decision.criterion
        (3, 'low_converged')
        >>> rule.armed_epoch   # ε ≤ arm_threshold = 0.3 first at epoch 2
        2
    """

    def __init__(
        self,
        low_threshold: float | None = 0.005,
        share_threshold: float | None = 0.5,
        arm_threshold: float | None = 0.3,
        plateau_rtol: float | None = 0.1,
        plateau_window: float = 0.5,
        patience: int = 5,
        low_metric: Literal["e_low", "delta_f"] = "e_low",
        delta: Literal["smallest", "middle", "largest"] | float = "largest",
        n_low_freqs: int = 1,
        min_epochs: int = 0,
        check_finite: bool = True,
        denoised_patience: int | None = None,
        label_wave_window: int | None = None,
        agreement_threshold: float | None = None,
    ) -> None:
        self.low_threshold = _optional_number("low_threshold", low_threshold, 0)
        self.share_threshold = _optional_number("share_threshold", share_threshold, 0)
        self.arm_threshold = _optional_number("arm_threshold", arm_threshold, 0)
        self.plateau_rtol = _optional_number("plateau_rtol", plateau_rtol, 0, 1, strict_maximum=True)
        self.plateau_window = check_number("plateau_window", plateau_window, 0, 1)
        self.denoised_patience = None if denoised_patience is None else check_int("denoised_patience",
                                                                                   denoised_patience, 1)
        self.label_wave_window = None if label_wave_window is None else check_int("label_wave_window",
                                                                                   label_wave_window, 1)
        self.agreement_threshold = _optional_number("agreement_threshold", agreement_threshold, -1, 1)
        if self.agreement_threshold is not None and (denoised_patience is None or label_wave_window is None):
            raise ValueError("`agreement_threshold` chooses between (d) and (e): it needs both `denoised_patience` "
                             "and `label_wave_window` set.")
        if (low_threshold is None and share_threshold is None and plateau_rtol is None and denoised_patience is None
                and label_wave_window is None):
            raise ValueError("`low_threshold`, `share_threshold`, `plateau_rtol`, `denoised_patience` and "
                             "`label_wave_window` are all None: no criterion left to stop on.")
        self.patience = check_int("patience", patience, 1)
        self.low_metric = check_choice("low_metric", low_metric, LOW_METRICS)
        if isinstance(delta, str):
            self.delta: str | float = check_choice("delta", delta, DELTA_NAMES)
        else:
            self.delta = check_number("delta", delta, 0, strict_minimum=True)
        self.n_low_freqs = check_int("n_low_freqs", n_low_freqs, 1)
        self.min_epochs = check_int("min_epochs", min_epochs, 0)
        self.check_finite = bool(check_finite)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget every check: no criterion fired, nothing armed, counters at 0.

        Example:
            >>> rule = FrequencyStoppingRule(low_threshold=0.1, patience=1)
            >>> rule.update({"fp/e_low/delta=1": 0.05}, epoch=1).should_stop
            True
            >>> rule.reset(); rule.criterion is None
            True
        """
        self.criterion: str | None = None
        self.stopped_after: int | None = None
        self.armed_epoch: int | None = None
        self.low_count = 0
        self.share_count = 0
        self.best_score = math.inf
        self.best_trace: list[list[float]] = []
        self.last_values: dict[str, float] = {}
        self.denoised_best = math.inf
        self.denoised_best_epoch: int | None = None
        self.denoised_count = 0
        self.label_wave_values: list[float] = []
        self.label_wave_best = math.inf
        self.label_wave_best_epoch: int | None = None
        self.selected: str | None = None

    def state_dict(self) -> dict[str, Any]:
        """The state after the checks so far, in plain Python containers (``torch.load(weights_only=True)`` safe).

        Example:
            >>> rule = FrequencyStoppingRule()
            >>> _ = rule.update({"fp/e_low/delta=1": 0.2}, epoch=1)
            >>> rule.state_dict()["armed_epoch"], rule.state_dict()["best_trace"]
            (1, [[1, 0.2]])
        """
        return {"criterion": self.criterion, "stopped_after": self.stopped_after, "armed_epoch": self.armed_epoch,
                "low_count": self.low_count, "share_count": self.share_count, "best_score": self.best_score,
                "last_values": dict(self.last_values), "best_trace": [list(item) for item in self.best_trace],
                "denoised_best": self.denoised_best, "denoised_best_epoch": self.denoised_best_epoch,
                "denoised_count": self.denoised_count, "label_wave_values": list(self.label_wave_values),
                "label_wave_best": self.label_wave_best, "label_wave_best_epoch": self.label_wave_best_epoch,
                "selected": self.selected}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (missing keys keep their reset values), so checks continue alike.

        Example:
            >>> first = FrequencyStoppingRule()
            >>> _ = first.update({"fp/e_low/delta=1": 0.2}, epoch=1)
            >>> second = FrequencyStoppingRule()
            >>> second.load_state_dict(first.state_dict())
            >>> second.armed_epoch
            1
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"`state_dict` must be a mapping (from FrequencyStoppingRule.state_dict()), "
                            f"got {type(state_dict).__name__}.")
        self.reset()
        criterion = state_dict.get("criterion")
        if criterion is not None and criterion not in CRITERIA:
            raise ValueError(f"`state_dict['criterion']` must be None or one of {CRITERIA}, got {criterion!r}.")
        self.criterion = criterion
        self.stopped_after = _optional_int(state_dict.get("stopped_after"))
        self.armed_epoch = _optional_int(state_dict.get("armed_epoch"))
        self.low_count = int(state_dict.get("low_count", 0))
        self.share_count = int(state_dict.get("share_count", 0))
        self.best_score = float(state_dict.get("best_score", math.inf))
        self.last_values = {str(key): float(value) for key, value in dict(state_dict.get("last_values", {})).items()}
        self.best_trace = [[int(epoch), float(best)] for epoch, best in state_dict.get("best_trace", [])]
        self.denoised_best = float(state_dict.get("denoised_best", math.inf))
        self.denoised_best_epoch = _optional_int(state_dict.get("denoised_best_epoch"))
        self.denoised_count = int(state_dict.get("denoised_count", 0))
        self.label_wave_values = [float(v) for v in state_dict.get("label_wave_values", [])]
        self.label_wave_best = float(state_dict.get("label_wave_best", math.inf))
        self.label_wave_best_epoch = _optional_int(state_dict.get("label_wave_best_epoch"))
        selected = state_dict.get("selected")
        if selected is not None and selected not in SELECTIONS:
            raise ValueError(f"`state_dict['selected']` must be None or one of {SELECTIONS}, got {selected!r}.")
        self.selected = selected

    # ------------------------------------------------------------------ the decision
    def update(self, metrics: Mapping[str, float], epoch: int) -> Decision:
        """Take one check's values into the criteria and say whether to stop (see Convention).

        Args:
            metrics: the monitor's logged values of this check (``fp/e_low/delta=…``, ``fp/delta_f/k=…``,
                ``fp/low_share``, ``fp/denoised_loss``; numbers or 0-d tensors); other keys are ignored.
            epoch: completed epochs at this check (an int ≥ 0).

        Returns:
            The :class:`Decision` of this check.

        Raises:
            KeyError: ``metrics`` has no key of the low-frequency error (or not the δ asked for) while (a), (b) or
                (c) is enabled, or no ``fp/denoised_loss`` while (d) is.
            ValueError: ``epoch`` is not an int ≥ 0.

        Example:
            >>> rule = FrequencyStoppingRule(share_threshold=0.5, patience=1)
            >>> rule.update({"fp/e_low/delta=1": 0.2, "fp/low_share": 0.3}, epoch=4).criterion
            'high_frequency_turn'
        """
        epoch = check_int("epoch", epoch, 0)
        if self.criterion is not None or epoch < self.min_epochs:
            return Decision(epoch=epoch, should_stop=False, checked=False)
        self._select(metrics)
        name, low = self.low_error(metrics) if self.uses_low_error else ("", None)
        share = metrics.get(SHARE_KEY)
        share = None if share is None else float(share)
        denoised = self._denoised_value(metrics)
        changes = self._changes_value(metrics)
        self.last_values = {**({} if low is None else {name: low}), **({} if share is None else {SHARE_KEY: share}),
                            **({} if denoised is None else {DENOISED_KEY: denoised}),
                            **({} if changes is None else {PREDICTION_CHANGES_KEY: changes})}
        if self.check_finite and not all(math.isfinite(v) for v in (low, share, denoised, changes) if v is not None):
            named = (("low_share", share), ("denoised_loss", denoised), ("prediction_changes", changes))
            named = named if low is None else ((name, low), *named)
            shown = ", ".join(f"{key} = {value:.4g}" for key, value in named if value is not None)
            return self._fire("non_finite", epoch, f"{shown} is not finite.", low, share, denoised)
        if denoised is not None:
            decision = self._denoised_minimum(denoised, low, share, epoch)
            if decision is not None:
                return decision
        if changes is not None:
            decision = self._label_wave(changes, low, share, epoch)
            if decision is not None:
                return decision
        if low is None:
            return Decision(epoch=epoch, should_stop=False, share=share, denoised=denoised)
        self.best_score = min(self.best_score, low)
        self.best_trace.append([epoch, self.best_score])
        decision = self._low_converged(name, low, share, epoch)
        if decision is not None:
            return decision
        armed_now = self._arm(name, low, epoch)
        decision = self._high_frequency_turn(name, low, share, epoch) or self._low_plateau(name, low, share, epoch)
        if decision is not None:
            return decision
        return Decision(epoch=epoch, should_stop=False, message=armed_now, low_error=low, share=share,
                        denoised=denoised)

    @property
    def uses_low_error(self) -> bool:
        """Whether a criterion reads ε: (a), (b) or (c) is enabled.

        Example:
            >>> FrequencyStoppingRule(low_threshold=None, share_threshold=None, plateau_rtol=None,
            ...                       denoised_patience=3).uses_low_error
            False
        """
        return self.low_threshold is not None or self.share_threshold is not None or self.plateau_rtol is not None

    @property
    def uses_denoised(self) -> bool:
        """Whether (d) is in use: enabled, and not left out by the agreement choice.

        Example:
            >>> FrequencyStoppingRule(denoised_patience=3).uses_denoised
            True
        """
        return self.denoised_patience is not None and self.selected != "label_wave"

    @property
    def uses_label_wave(self) -> bool:
        """Whether (e) is in use: enabled, and not left out by the agreement choice.

        Example:
            >>> FrequencyStoppingRule(label_wave_window=5).uses_label_wave
            True
        """
        return self.label_wave_window is not None and self.selected != "denoised_minimum"

    @property
    def best_epoch(self) -> int | None:
        """The epoch whose weights the rule chose so far (``None``: the latest weights).

        The criterion that fired decides: (d) its best-scored epoch, (e) the last epoch of its minimal window,
        any other the epoch of the stop. While none has fired (a run that ends at its budget): (e)'s epoch when
        only (e) is in use, else (d)'s when (d) is in use, else ``None``.

        Example:
            >>> rule = FrequencyStoppingRule(low_threshold=None, share_threshold=None, plateau_rtol=None,
            ...                              label_wave_window=2)
            >>> for epoch, c in enumerate([0.5, 0.3, 0.2, 0.25, 0.3], start=1):
            ...     decision = rule.update({"fp/prediction_changes": c}, epoch)
            >>> decision.criterion, rule.best_epoch   # m: -, 0.4, 0.25, 0.225, 0.275 -> minimum after epoch 4
            ('label_wave', 4)
        """
        if self.criterion == "denoised_minimum":
            return self.denoised_best_epoch
        if self.criterion == "label_wave":
            return self.label_wave_best_epoch
        if self.criterion is not None:
            return self.stopped_after
        if self.uses_label_wave and not self.uses_denoised and self.label_wave_best_epoch is not None:
            return self.label_wave_best_epoch
        if self.uses_denoised and self.denoised_best_epoch is not None:
            return self.denoised_best_epoch
        return None

    def _select(self, metrics: Mapping[str, float]) -> None:
        """With ``agreement_threshold``: choose (d) or (e) for the whole run at the first check."""
        if self.agreement_threshold is None or self.selected is not None:
            return
        agreement = metrics.get(AGREEMENT_KEY)
        if agreement is not None:
            self.selected = "denoised_minimum" if float(agreement) >= self.agreement_threshold else "label_wave"
        elif DENOISED_KEY in metrics:
            self.selected = "denoised_minimum"
        elif PREDICTION_CHANGES_KEY in metrics:
            self.selected = "label_wave"
        else:
            raise KeyError(f"neither `{AGREEMENT_KEY}`, `{DENOISED_KEY}` nor `{PREDICTION_CHANGES_KEY}` in the "
                           f"metrics (keys: {sorted(metrics)}): nothing to choose the criterion by.")

    def _changes_value(self, metrics: Mapping[str, float]) -> float | None:
        if not self.uses_label_wave:
            return None
        if PREDICTION_CHANGES_KEY not in metrics:
            raise KeyError(f"no `{PREDICTION_CHANGES_KEY}` in the metrics (keys: {sorted(metrics)}); the monitor "
                           "logs it for class labels from the second recording on, or set `label_wave_window=None`.")
        return float(metrics[PREDICTION_CHANGES_KEY])

    def _denoised_value(self, metrics: Mapping[str, float]) -> float | None:
        if not self.uses_denoised:
            return None
        if DENOISED_KEY not in metrics:
            raise KeyError(f"no `{DENOISED_KEY}` in the metrics (keys: {sorted(metrics)}); the monitor logs it when "
                           "it measures the denoised score, or set `denoised_patience=None`.")
        return float(metrics[DENOISED_KEY])

    def stop(self, criterion: str, epoch: int, detail: str) -> Decision:
        """Record a decision taken outside the rule (``"other_rank"``: another process of the run stopped).

        Example:
            >>> rule = FrequencyStoppingRule()
            >>> rule.stop("other_rank", 7, "another process of the run decided to stop.").message
            'criterion other_rank fired after epoch 7: another process of the run decided to stop.'
        """
        if criterion not in CRITERIA:
            raise ValueError(f"`criterion` must be one of {CRITERIA}, got {criterion!r}.")
        return self._fire(criterion, check_int("epoch", epoch, 0), detail, None, None)

    def low_error(self, metrics: Mapping[str, float]) -> tuple[str, float]:
        """``(name, ε)``: the low-frequency error of one check, and a name for messages that says which it is.

        Example:
            >>> FrequencyStoppingRule(delta="smallest").low_error({"fp/e_low/delta=0.1": 0.3, "fp/e_low/delta=1": 0.2})
            ('e_low(δ=0.1)', 0.3)
        """
        if self.low_metric == "e_low":
            return self._e_low(metrics)
        freqs = sorted((int(key[len(DELTA_F_PREFIX):]), key) for key in metrics if key.startswith(DELTA_F_PREFIX))
        if not freqs:
            raise KeyError(f"no `{DELTA_F_PREFIX}<k>` key in the metrics (keys: {sorted(metrics)}).")
        lowest = freqs[: self.n_low_freqs]
        values = [float(metrics[key]) for _, key in lowest]
        worst = max(range(len(values)), key=lambda i: values[i] if math.isfinite(values[i]) else math.inf)
        ks = ",".join(str(k) for k, _ in lowest)
        return f"max Δ_F(k∈{{{ks}}}) (at k={lowest[worst][0]})", values[worst]

    def replay(self, history: FrequencyHistory | Mapping[str, Any] | str | os.PathLike[str]) -> list[Decision]:
        """Run the rule over a finished run's recordings and return the decision of each check.

        Each recording after the start of training (epoch 0, step 0 is the one before it) is one check, with the
        values the monitor logged for it (see :func:`history_checks`), exactly as the callback sees them during
        training. Checks after the decision are not run. Afterwards :attr:`criterion` and :attr:`stopped_after`
        say where it would have stopped (``None``: it would not have). The rule continues from its current state:
        call :meth:`reset` first to replay a second run.

        Args:
            history: a ``FrequencyHistory``, a saved ``fp_history.npz`` (path), or ``load_history``'s dict.

        Example:
            >>> h = FrequencyHistory(freqs=[3], deltas=[0.5], cutoff=3, target_amplitude=[1.0])
            >>> for epoch, e_low in enumerate([0.9, 0.2, 0.004, 0.003]):
            ...     h.append(epoch=epoch, step=8 * epoch, delta_f=[0.5], e_low=[e_low], e_high=[0.9], loss_low=1.0,
            ...              loss_high=1.0, low_share=0.9, output_amplitude=[0.0])
            >>> rule = FrequencyStoppingRule(patience=2)
            >>> [d.epoch for d in rule.replay(h)], rule.criterion, rule.stopped_after
            ([1, 2, 3], 'low_converged', 3)
        """
        decisions = []
        for epoch, metrics in history_checks(history):
            if self.criterion is not None:
                break
            if self.uses_low_error and not _has_low_error(metrics, self.low_metric):  # a skipped measurement
                continue
            if self.denoised_patience is not None and DENOISED_KEY not in metrics and (
                    self.agreement_threshold is None or self.selected == "denoised_minimum"):
                continue
            if self.label_wave_window is not None and PREDICTION_CHANGES_KEY not in metrics and (
                    self.agreement_threshold is None or self.selected == "label_wave"):
                continue
            decisions.append(self.update(metrics, epoch))
        return decisions

    # ------------------------------------------------------------------ criteria
    def _low_converged(self, name: str, low: float, share: float | None, epoch: int) -> Decision | None:
        if self.low_threshold is None:
            return None
        self.low_count = self.low_count + 1 if low <= self.low_threshold else 0
        if self.low_count < self.patience:
            return None
        return self._fire("low_converged", epoch, f"{name} = {low:.4g} ≤ low_threshold = {self.low_threshold:g} "
                          f"on {self.low_count} consecutive checks.", low, share)

    def _arm(self, name: str, low: float, epoch: int) -> str | None:
        """Arm (b) and (c) at the first check with ε ≤ ``arm_threshold``: the low frequencies are roughly fitted."""
        uses_arming = self.share_threshold is not None or self.plateau_rtol is not None
        if not uses_arming or self.armed_epoch is not None:
            return None
        if self.arm_threshold is not None and low > self.arm_threshold:
            return None
        self.armed_epoch = epoch
        level = "" if self.arm_threshold is None else f" ≤ arm_threshold = {self.arm_threshold:g}"
        return (f"criteria (b) high_frequency_turn and (c) low_plateau armed at epoch {epoch}: "
                f"{name} = {low:.4g}{level}.")

    def _high_frequency_turn(self, name: str, low: float, share: float | None, epoch: int) -> Decision | None:
        if self.share_threshold is None or self.armed_epoch is None or share is None:
            return None
        self.share_count = self.share_count + 1 if share <= self.share_threshold else 0
        if self.share_count < self.patience:
            return None
        return self._fire("high_frequency_turn", epoch,
                          f"low_share = {share:.4g} ≤ share_threshold = {self.share_threshold:g} on "
                          f"{self.share_count} consecutive checks since arming at epoch {self.armed_epoch}; "
                          f"{name} = {low:.4g}.", low, share)

    def _low_plateau(self, name: str, low: float, share: float | None, epoch: int) -> Decision | None:
        if self.plateau_rtol is None or self.armed_epoch is None:
            return None
        # the window grows with the elapsed epochs, so the rule does not depend on the time scale of training
        window = max(self.patience, math.ceil(self.plateau_window * epoch))
        earlier = [best for at, best in self.best_trace if at <= epoch - window]
        if not earlier or self.best_score <= (1.0 - self.plateau_rtol) * earlier[-1]:
            return None
        return self._fire("low_plateau", epoch,
                          f"best {name} = {self.best_score:.4g} > (1 − plateau_rtol) × {earlier[-1]:.4g} (the best "
                          f"{window} epochs earlier), plateau_rtol = {self.plateau_rtol:g}; {name} now {low:.4g}.",
                          low, share)

    def _denoised_minimum(self, denoised: float, low: float | None, share: float | None,
                          epoch: int) -> Decision | None:
        assert self.denoised_patience is not None
        if denoised < self.denoised_best:
            self.denoised_best, self.denoised_best_epoch, self.denoised_count = denoised, epoch, 0
            return None
        self.denoised_count += 1
        if self.denoised_count < self.denoised_patience:
            return None
        return self._fire("denoised_minimum", epoch,
                          f"{DENOISED_KEY} = {denoised:.4g} has not gone below its minimum {self.denoised_best:.4g} "
                          f"(after epoch {self.denoised_best_epoch}) on {self.denoised_count} consecutive checks; "
                          f"the best weights are those of epoch {self.denoised_best_epoch}.", low, share, denoised)

    def _label_wave(self, changes: float, low: float | None, share: float | None, epoch: int) -> Decision | None:
        assert self.label_wave_window is not None
        self.label_wave_values = [*self.label_wave_values, changes][-self.label_wave_window:]
        if len(self.label_wave_values) < self.label_wave_window:
            return None
        average = math.fsum(self.label_wave_values) / self.label_wave_window
        if average < self.label_wave_best:
            self.label_wave_best, self.label_wave_best_epoch = average, epoch
            return None
        if average == self.label_wave_best:  # a flat step is not yet a rise
            return None
        return self._fire("label_wave", epoch,
                          f"the {self.label_wave_window}-check mean of {PREDICTION_CHANGES_KEY} rose to "
                          f"{average:.4g} above its minimum {self.label_wave_best:.4g} (the window ending at epoch "
                          f"{self.label_wave_best_epoch}); the best weights are those of epoch "
                          f"{self.label_wave_best_epoch}.", low, share)

    def _fire(self, criterion: str, epoch: int, detail: str, low: float | None, share: float | None,
              denoised: float | None = None) -> Decision:
        self.criterion = criterion
        self.stopped_after = epoch
        message = f"criterion {_LABELS[criterion]} fired after epoch {epoch}: {detail}"
        return Decision(epoch=epoch, should_stop=True, criterion=criterion, message=message, low_error=low,
                        share=share, denoised=denoised)

    def _e_low(self, metrics: Mapping[str, float]) -> tuple[str, float]:
        widths = sorted((float(key[len(E_LOW_PREFIX):]), key) for key in metrics if key.startswith(E_LOW_PREFIX))
        if not widths:
            raise KeyError(f"no `{E_LOW_PREFIX}<δ>` key in the metrics (keys: {sorted(metrics)}).")
        if self.delta == "smallest":
            _, key = widths[0]
        elif self.delta == "largest":
            _, key = widths[-1]
        elif self.delta == "middle":
            _, key = widths[(len(widths) - 1) // 2]
        else:
            wanted = float(self.delta)
            value, key = min(widths, key=lambda width: abs(math.log(width[0] / wanted)))
            if abs(value - wanted) > 1e-3 * wanted:
                raise KeyError(f"`delta`={self.delta!r} is not among the logged δ {[w[0] for w in widths]}.")
        return f"e_low(δ={key[len(E_LOW_PREFIX):]})", float(metrics[key])


# ---------------------------------------------------------------------- a run's recordings as checks
def history_checks(
    history: FrequencyHistory | Mapping[str, Any] | str | os.PathLike[str],
) -> Iterator[tuple[int, dict[str, float]]]:
    """``(epoch, values)`` of every recording made after training began, as the monitor logged them.

    Convention:
        The keys are the monitor's: ``fp/delta_f/k=<k>``, ``fp/e_low/delta=<δ>`` and ``fp/e_high/delta=<δ>``
        (``<δ>`` from ``delta_keys``), ``fp/loss_low``, ``fp/loss_high``, ``fp/low_share`` and, when the history has
        their fields, ``fp/denoised_loss``, ``fp/prediction_changes`` and ``fp/denoised_agreement``. As in the monitor,
        a NaN e_low (a skipped filtering) and a NaN low share (fewer than two recordings) are not logged. Values
        are rounded to float32, the precision of the tensors the monitor puts in ``trainer.callback_metrics``
        (what the callback reads), so a replay takes the callback's decisions even at a threshold. The recording
        at epoch 0, step 0 (before training) is not a check.

    Args:
        history: a ``FrequencyHistory``, a path to a saved ``fp_history.npz``, or ``load_history``'s dict.

    Example:
        >>> h = FrequencyHistory(freqs=[2], deltas=[0.5], cutoff=2, target_amplitude=[1.0])
        >>> h.append(epoch=0, step=0, delta_f=[1.0], e_low=[0.9], e_high=[1.0], loss_low=2.0, loss_high=1.0,
        ...          low_share=float("nan"), output_amplitude=[0.0])
        >>> h.append(epoch=1, step=4, delta_f=[0.25], e_low=[0.5], e_high=[1.0], loss_low=1.0, loss_high=1.0,
        ...          low_share=0.75, output_amplitude=[0.0])
        >>> list(history_checks(h))
        [(1, {'fp/delta_f/k=2': 0.25, 'fp/e_low/delta=0.5': 0.5, 'fp/e_high/delta=0.5': 1.0, 'fp/loss_low': 1.0, \
'fp/loss_high': 1.0, 'fp/low_share': 0.75})]
    """
    arrays = _history_arrays(history)
    freqs = [int(k) for k in np.asarray(arrays["freqs"]).reshape(-1)]
    deltas = [float(d) for d in np.asarray(arrays["deltas"]).reshape(-1)]
    epochs = np.asarray(arrays["epoch"]).reshape(-1)
    steps = np.asarray(arrays["step"]).reshape(-1)
    rows = {name: np.asarray(arrays[name], dtype=float).reshape(len(epochs), -1)
            for name in ("delta_f", "e_low", "e_high", "loss_low", "loss_high", "low_share")}
    nan = np.full((len(epochs), 1), math.nan)
    optional = {name: np.asarray(arrays[name], dtype=float).reshape(len(epochs), -1) if name in arrays else nan
                for name in ("denoised_loss", "prediction_changes", "denoised_agreement")}
    for row, (epoch, step) in enumerate(zip(epochs, steps)):
        if int(epoch) == 0 and int(step) == 0:
            continue
        values = logged_values(freqs, rows["delta_f"][row], deltas, rows["e_low"][row], rows["e_high"][row],
                               rows["loss_low"][row, 0], rows["loss_high"][row, 0], rows["low_share"][row, 0],
                               *(optional[name][row, 0] for name in optional))
        yield int(epoch), {key: _as_logged(value) for key, value in values.items()}


def _history_arrays(history: FrequencyHistory | Mapping[str, Any] | str | os.PathLike[str]) -> Mapping[str, Any]:
    if isinstance(history, FrequencyHistory):
        return history.as_arrays()
    if isinstance(history, (str, os.PathLike)):
        return load_history(history)
    if isinstance(history, Mapping):
        missing = {"epoch", "step", "freqs", "deltas", "delta_f", "e_low", "e_high", "loss_low", "loss_high",
                   "low_share"} - set(history)
        if missing:
            raise ValueError(f"`history` lacks the fields {sorted(missing)} of a saved fp_history.npz.")
        return history
    raise TypeError(f"`history` must be a FrequencyHistory, a path to an fp_history.npz or load_history's dict, "
                    f"got {type(history).__name__}.")


def _as_logged(value: float) -> float:
    return float(np.float32(value))


def _has_low_error(metrics: Mapping[str, float], low_metric: str) -> bool:
    prefix = E_LOW_PREFIX if low_metric == "e_low" else DELTA_F_PREFIX
    return any(key.startswith(prefix) for key in metrics)


# ---------------------------------------------------------------------- argument checks
def _optional_number(name: str, value: float | None, minimum: float, maximum: float | None = None,
                     strict_maximum: bool = False) -> float | None:
    return None if value is None else check_number(name, value, minimum, maximum, strict_maximum=strict_maximum)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
