"""``FrequencyEarlyStopping``: stop training on the frequency picture, with no validation set.

By the Frequency Principle a network fits the low frequencies of its training targets first and the high ones
last (paper 003, §4, Fig. 6). On noisy data the noise lives mostly at high frequencies, so the best test loss is
reached around the moment the low frequencies are fitted and the fit turns to the high ones. This callback reads
the :class:`~fp_lightning.callbacks.FrequencyPrincipleMonitor`'s logged values at the end of every training epoch
and stops there, without a validation loop. The decision itself lives in
:class:`~fp_lightning.callbacks.stopping_rule.FrequencyStoppingRule` (no Lightning), which also replays a saved run;
this callback is the Lightning glue around it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal

import torch

from fp_lightning.callbacks._compat import EARLY_STOPPING_BASES, rank_zero_warn
from fp_lightning.callbacks.stopping_rule import (
    AGREEMENT_KEY,
    CRITERIA,
    DELTA_F_PREFIX,
    DELTA_NAMES,
    DENOISED_KEY,
    E_LOW_PREFIX,
    PREDICTION_CHANGES_KEY,
    SHARE_KEY,
    Decision,
    FrequencyStoppingRule,
)
from fp_lightning.record import DEFAULT_PREFIX, check_name, with_prefix

__all__ = ["CRITERIA", "FrequencyEarlyStopping"]

_E_LOW = E_LOW_PREFIX
_DELTA_F = DELTA_F_PREFIX
_SHARE = SHARE_KEY
_DELTA_NAMES = DELTA_NAMES
# the EarlyStoppingReason member of each criterion (the others: STOPPING_THRESHOLD)
_REASONS = {"low_plateau": "PATIENCE_EXHAUSTED", "denoised_minimum": "PATIENCE_EXHAUSTED",
            "label_wave": "PATIENCE_EXHAUSTED", "non_finite": "NON_FINITE_METRIC"}
#: The settings of :meth:`FrequencyEarlyStopping.recommended`, chosen by measurement (docs/early_stopping.md).
RECOMMENDED = {"low_threshold": None, "share_threshold": None, "plateau_rtol": None, "denoised_patience": 0.1,
               "label_wave_window": 5, "agreement_threshold": 0.15, "restore_best_weights": True}


def _bases() -> tuple[type, ...]:
    """``lightning.pytorch``'s ``EarlyStopping``, plus ``pytorch_lightning``'s behind a shim.

    Both ``EarlyStopping.__init__`` call ``super().__init__()`` with no argument; in the joint MRO the first one's
    call would reach the second one's ``__init__``, which needs ``monitor``. The shim ends that chain (the first
    base has set every attribute already), so a Trainer of either package recognises the callback.
    """
    if len(EARLY_STOPPING_BASES) == 1:
        return EARLY_STOPPING_BASES
    second = EARLY_STOPPING_BASES[1]

    def end_init_chain(self: Any, *args: Any, **kwargs: Any) -> None:
        super(second, self).__init__()

    shim = type("_SecondEarlyStoppingBase", (second,), {"__init__": end_init_chain, "__module__": __name__})
    return (EARLY_STOPPING_BASES[0], shim)


class FrequencyEarlyStopping(*_bases()):
    """Stop when the low frequencies are fitted, or when the fit has turned to the high frequencies.

    Put it in ``Trainer(callbacks=[...])`` next to a :class:`~fp_lightning.callbacks.FrequencyPrincipleMonitor`
    (conventionally after it; Lightning runs early-stopping callbacks after the others at an epoch's end anyway).
    It checks at the end of every training epoch on which the monitor measured, so no validation loop is needed,
    and reads the monitor's values from ``trainer.callback_metrics`` (keys found by prefix, since k and δ depend on
    the data). It is a subclass of Lightning's ``EarlyStopping`` (of both ``lightning.pytorch`` and
    ``pytorch_lightning`` when both are installed), so a Trainer of either package accepts it.

    Convention:
        The criteria (a) low_converged, (b) high_frequency_turn, (c) low_plateau, (d) denoised_minimum,
        (e) label_wave (Label Wave, Yuan, Feng, Liu, ICLR 2025) and non_finite, the quantities ε, s, D and c they
        read, the choice between (d) and (e) by the denoised labels' agreement, arming, ``min_epochs`` and the
        finality of a decision are those of :class:`~fp_lightning.callbacks.stopping_rule.FrequencyStoppingRule`
        (one statement of them, with the reasoning). This callback feeds the rule the monitor's values right
        after each recording and stops the Trainer when it fires;
        an epoch on which the monitor did not measure is not a check.

    Defaults:
        Chosen by measurement (``docs/early_stopping.md``, "How the defaults were chosen"). Without a validation
        set, the recipe measured best is one line, :meth:`recommended`: the denoised-score minimum where the
        denoised labels agree with the training labels (noisy MNIST, the 1-D tasks), Label Wave where they do not
        (CIFAR-10 pixels), and the chosen epoch's weights given back at the end of the fit.

    Args:
        low_threshold: level of ε for criterion (a); ``None`` disables (a).
        share_threshold: level of s for criterion (b); ``None`` disables (b).
        arm_threshold: ε at or below which (b) and (c) are armed; ``None``: armed from the first check.
        plateau_rtol: relative improvement of the best ε below which (c) fires; ``None`` disables (c).
        plateau_window: (c)'s window as a fraction of the completed epochs (at least ``patience`` epochs).
        patience: consecutive checks on which (a)'s or (b)'s condition must hold before it fires, and the
            shortest window of (c), in epochs (≥ 1).
        low_metric: ``"e_low"`` or ``"delta_f"`` (see Convention).
        delta: with ``"e_low"``, which δ: ``"smallest"``, ``"middle"``, ``"largest"`` or a δ value (as logged).
        n_low_freqs: with ``"delta_f"``, how many of the lowest tracked frequencies enter the maximum.
        min_epochs: warm-up: checks of epochs before this many completed epochs are ignored.
        verbose: log a message when a criterion fires (criterion and values), and on arming.
        strict: raise when the monitor's keys are missing from ``trainer.callback_metrics`` (else warn once and
            skip the check).
        check_finite: stop when ε, s or D is not finite.
        denoised_patience: checks without a new minimum of ``fp/denoised_loss`` before (d) fires: an int ≥ 1, or a
            float in (0, 1), that fraction of the Trainer's ``max_epochs`` (at least 2, fixed when ``fit`` starts;
            0.1 is what the benchmark measured); ``None`` disables (d). With (a), (b) and (c) disabled (``None``)
            only (d) decides and ε is not read.
        label_wave_window: the checks w in (e)'s moving average of ``fp/prediction_changes`` (classifiers);
            ``None`` disables (e).
        agreement_threshold: with both (d) and (e): use (d) when ``fp/denoised_agreement`` ≥ this, else (e),
            chosen at the first check (``rule.selected``); ``None``: use every enabled criterion.
        restore_best_weights: at the end of the fit, load into the module the weights of the epoch the rule chose
            (``rule.best_epoch``: (d)'s best-scored epoch, (e)'s end of the minimal window), also when the run
            reaches ``max_epochs`` without a stop. A CPU copy of the module's ``state_dict()`` is kept in memory
            whenever a check becomes the new best (one copy; two while (d) and (e) both run without a choice):
            the memory of the parameters and buffers once more, in host RAM, and a copy per new best. The copy is
            not written to checkpoints: after a resume only a best epoch reached since is restored (else a
            warning). Not in ``dry_run``. With (a)-(c) the chosen epoch is the stop, so nothing is restored.
        dry_run: decide and record (``stopped_epoch``, ``criterion``, ``stopping_reason_message``) but never stop
            the Trainer: shows where the callback would have stopped.
        log_rank_zero_only: log messages on rank 0 only.
        monitor_name: the ``name`` of the monitor whose values decide (its keys ``fp_<name>/...``, e.g. a held-out
            probe's); ``None``: the monitor without a name, or the only monitor of the Trainer.

    Attributes:
        rule: the :class:`~fp_lightning.callbacks.stopping_rule.FrequencyStoppingRule` that takes the decision:
            ``rule.criterion`` (``None`` until a criterion fired), ``rule.stopped_after`` (completed epochs at the
            check that fired), ``rule.armed_epoch``, ``rule.denoised_best_epoch``, its counters and settings.
        stopped_epoch: ``trainer.current_epoch`` (0-based) of the epoch after which the decision was taken, as in
            ``EarlyStopping``; 0 when it did not fire.
        stopping_reason: the ``EarlyStoppingReason`` of the Trainer's Lightning package: ``STOPPING_THRESHOLD``
            for (a) and (b), ``PATIENCE_EXHAUSTED`` for (c) and (d), ``NON_FINITE_METRIC``.
        stopping_reason_message: the message that says which criterion fired, with the values.

    Raises:
        ValueError: at construction, on a bad argument (the message names it).
        RuntimeError: at ``fit`` start when no ``FrequencyPrincipleMonitor`` is attached; at a check when its keys
            are missing from ``trainer.callback_metrics`` (with ``strict=True``).

    Example:
        >>> import lightning.pytorch as L
        >>> from fp_lightning import FrequencyPrincipleMonitor
        >>> stopper = FrequencyEarlyStopping()
        >>> trainer = L.Trainer(max_epochs=500, callbacks=[FrequencyPrincipleMonitor(), stopper], logger=False,
        ...                     enable_progress_bar=False)
        >>> # trainer.fit(model, train_loader)  -- no val loader needed; then stopper.rule.criterion
        >>> stopper.evaluate({"fp/e_low/delta=0.5": 0.02, "fp/low_share": 0.9}, epoch=10)[0]  # replay one check
        False
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
        verbose: bool = False,
        strict: bool = True,
        check_finite: bool = True,
        dry_run: bool = False,
        log_rank_zero_only: bool = False,
        denoised_patience: int | float | None = None,
        label_wave_window: int | None = None,
        agreement_threshold: float | None = None,
        restore_best_weights: bool = False,
        monitor_name: str | None = None,
    ) -> None:
        # the rule validates every setting, naming the argument, before Lightning's EarlyStopping is set up
        self.rule = FrequencyStoppingRule(
            low_threshold=low_threshold, share_threshold=share_threshold, arm_threshold=arm_threshold,
            plateau_rtol=plateau_rtol, plateau_window=plateau_window, patience=patience, low_metric=low_metric,
            delta=delta, n_low_freqs=n_low_freqs, min_epochs=min_epochs, check_finite=check_finite,
            denoised_patience=_patience_checks(denoised_patience), label_wave_window=label_wave_window,
            agreement_threshold=agreement_threshold)
        if not isinstance(restore_best_weights, bool):
            raise ValueError(f"`restore_best_weights` must be a bool, got {restore_best_weights!r}.")
        self.restore_best_weights = restore_best_weights
        #: CPU copies of the module's state_dict at the epochs the rule may choose ({epoch: state_dict})
        self.best_weights: dict[int, dict[str, torch.Tensor]] = {}
        #: the epoch whose weights were loaded at the end of the fit (``None``: none were)
        self.restored_epoch: int | None = None
        self.denoised_patience_fraction = denoised_patience if isinstance(denoised_patience, float) else None
        self._patience_resolved = self.denoised_patience_fraction is None
        watched = ((_E_LOW if low_metric == "e_low" else _DELTA_F) if self.rule.uses_low_error
                   else DENOISED_KEY if denoised_patience is not None else PREDICTION_CHANGES_KEY)
        super().__init__(monitor=watched, patience=patience, verbose=verbose,
                         mode="min", strict=strict, check_finite=check_finite, check_on_train_epoch_end=True,
                         log_rank_zero_only=log_rank_zero_only)
        self.dry_run = dry_run
        self.monitor_name = check_name(monitor_name)
        self._watched_default = self.monitor  # the key (prefix) under the unnamed monitor's names
        self._reasons = _reason_enum("lightning")
        self._monitor: Any = None
        self._checked_recordings = 0
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ identity and state
    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint (differs between differently configured stoppers)."""
        named = {} if self.monitor_name is None else {"monitor_name": self.monitor_name}
        return self._generate_state_key(low_metric=self.rule.low_metric, low_threshold=self.rule.low_threshold,
                                        share_threshold=self.rule.share_threshold, **named)

    @classmethod
    def recommended(cls, **overrides: Any) -> FrequencyEarlyStopping:
        """The validation-free recipe chosen by measurement, with the chosen epoch's weights given back.

        ``FrequencyEarlyStopping(low_threshold=None, share_threshold=None, plateau_rtol=None,
        denoised_patience=0.1, label_wave_window=5, agreement_threshold=0.15, restore_best_weights=True)``:
        the denoised-score minimum (d) where the denoised labels agree with the labels (chance-corrected
        ``fp/denoised_agreement`` ≥ 0.15, and for targets that are not class labels), Label Wave (e) with a
        5-check window otherwise; at the end of the fit the module holds the weights of the chosen epoch.
        ``overrides`` replace any of these settings. Benchmark: docs/early_stopping.md.

        Example:
            >>> stopper = FrequencyEarlyStopping.recommended()
            >>> stopper.rule.label_wave_window, stopper.rule.agreement_threshold, stopper.restore_best_weights
            (5, 0.15, True)
        """
        return cls(**{**RECOMMENDED, **overrides})

    denoised_patience = property(
        lambda self: self.rule.denoised_patience if self._patience_resolved else self.denoised_patience_fraction,
        doc="Checks without a new minimum of ``fp/denoised_loss`` for (d) (the fraction of max_epochs until ``fit`` "
            "starts), or ``None``.")

    def state_dict(self) -> dict[str, Any]:
        """``EarlyStopping``'s state plus the criteria's counters, the arming epoch and the fired criterion."""
        rule = self.rule.state_dict()
        state = {
            "wait_count": self.wait_count, "stopped_epoch": self.stopped_epoch, "best_score": self.best_score,
            "patience": self.patience, "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message, "criterion": rule["criterion"],
            "stopped_after": rule["stopped_after"], "armed_epoch": rule["armed_epoch"],
            "low_count": rule["low_count"], "share_count": rule["share_count"], "last_values": rule["last_values"],
            "best_trace": rule["best_trace"],
        }
        if self.denoised_patience is not None:  # (d)'s counters; checkpoints without (d) keep their former keys
            state.update({key: rule[key] for key in ("denoised_best", "denoised_best_epoch", "denoised_count")})
        if self.rule.label_wave_window is not None:  # (e)'s window and the choice between (d) and (e)
            state.update({key: rule[key] for key in ("label_wave_values", "label_wave_best", "label_wave_best_epoch",
                                                     "selected")})
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, so a resumed run takes the same decision at the same epoch."""
        self.wait_count = int(state_dict.get("wait_count", 0))
        self.stopped_epoch = int(state_dict.get("stopped_epoch", 0))
        self.best_score = torch.as_tensor(state_dict.get("best_score", torch.inf))
        self.patience = int(state_dict.get("patience", self.patience))
        self.stopping_reason = self._reasons(state_dict.get("stopping_reason", 0))
        self.stopping_reason_message = state_dict.get("stopping_reason_message")
        self.rule.patience = self.patience
        self.rule.load_state_dict({**state_dict, "best_score": float(self.best_score)})

    # ------------------------------------------------------------------ Lightning hooks (glue only)
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Find the monitor (a clear error when there is none) and use the Trainer package's reason enum."""
        reasons = _reason_enum(type(trainer).__module__.split(".")[0])
        if reasons is not self._reasons:
            self.stopping_reason = reasons(self.stopping_reason.value)
            self._reasons = reasons
        if stage != "fit":
            return
        if self.denoised_patience_fraction is not None:
            self.rule.denoised_patience = _patience_of_budget(self.denoised_patience_fraction, trainer.max_epochs)
            self._patience_resolved = True
        self.best_weights, self.restored_epoch = {}, None  # a new fit chooses anew
        self._monitor = _find_monitor(trainer, self.monitor_name)
        if self._monitor is None:
            names = [cb.name for cb in _monitors(trainer)]
            if names:
                raise RuntimeError(f"FrequencyEarlyStopping: `monitor_name`={self.monitor_name!r} names none of the "
                                   f"Trainer's FrequencyPrincipleMonitors (their names: {names}); pass one of them.")
            raise RuntimeError("FrequencyEarlyStopping needs a FrequencyPrincipleMonitor in the Trainer's callbacks "
                               "(it reads the monitor's fp/... values); none is attached. Use "
                               "`Trainer(callbacks=[FrequencyPrincipleMonitor(), FrequencyEarlyStopping()])`.")
        self.monitor = with_prefix(self._watched_default, self._monitor.prefix)  # what EarlyStopping reports
        # decide right after each recording, at the monitor's cadence (epochs or steps), whatever the callback order
        if self._on_recording not in self._monitor.listeners:
            self._monitor.listeners.append(self._on_recording)
        self._checked_recordings = 0

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Nothing: the check runs right after each of the monitor's recordings."""

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Nothing: the check runs right after each of the monitor's recordings."""

    def _on_recording(self, trainer: Any, pl_module: Any) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.fast_dev_run:
            return
        self._run_early_stopping_check(trainer)

    def _run_early_stopping_check(self, trainer: Any) -> None:
        if self.rule.criterion is not None:  # the decision is final
            if not self.dry_run:
                trainer.should_stop = True
            return
        monitor = self._monitor if self._monitor is not None else _find_monitor(trainer, self.monitor_name)
        epoch = _new_recording(monitor, self._checked_recordings)
        if epoch is None:
            return
        self._checked_recordings = len(monitor.history)
        metrics = self._read_metrics(trainer.callback_metrics, monitor)
        if metrics is None:
            return
        should_stop, message = self.evaluate(metrics, epoch)
        if self.restore_best_weights and not self.dry_run:
            self._keep_best_weights(trainer.lightning_module, epoch)
        # the same decision on every rank: stop everywhere if any rank decided to (as EarlyStopping does)
        should_stop = bool(trainer.strategy.reduce_boolean_decision(should_stop, all=False))
        if should_stop:
            if self.rule.criterion is None:  # another rank fired: take its decision (values are the same on all ranks)
                _, message = self._take(self.rule.stop("other_rank", epoch,
                                                       "another process of the run decided to stop."))
            self.stopped_epoch = trainer.current_epoch
            if not self.dry_run:
                trainer.should_stop = True
        if message and self.verbose:
            self._log_info(trainer, message, self.log_rank_zero_only)

    def _keep_best_weights(self, module: Any, epoch: int) -> None:
        """A CPU copy of the weights when this check is a candidate of the rule's choice; drop the outdated ones."""
        rule = self.rule
        candidates = {best for best, used in ((rule.denoised_best_epoch, rule.uses_denoised),
                                              (rule.label_wave_best_epoch, rule.uses_label_wave))
                      if used and best is not None}
        if epoch in candidates and epoch not in self.best_weights:
            self.best_weights[epoch] = {key: value.detach().to("cpu", copy=True)
                                        for key, value in module.state_dict().items()}
        self.best_weights = {kept: state for kept, state in self.best_weights.items() if kept in candidates}

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """With ``restore_best_weights``: load the weights of the epoch the rule chose into the module."""
        if not self.restore_best_weights or self.dry_run:
            return
        chosen = self.rule.best_epoch
        if chosen is None or self.rule.criterion not in (None, "denoised_minimum", "label_wave"):
            return  # (a)-(c), non_finite: the chosen epoch is the stop, the weights the module holds
        state = self.best_weights.get(chosen)
        if state is None:
            if self.rule.uses_denoised or self.rule.uses_label_wave:
                rank_zero_warn(f"FrequencyEarlyStopping: the weights of epoch {chosen} (the rule's choice) are not "
                               "in memory (reached before a resume?); the module keeps its last weights.")
            return
        pl_module.load_state_dict(state)
        self.restored_epoch = chosen
        if self.verbose:
            self._log_info(trainer, f"FrequencyEarlyStopping: restored the weights of epoch {chosen}.",
                           self.log_rank_zero_only)

    def _read_metrics(self, logs: Mapping[str, Any], monitor: Any) -> dict[str, float] | None:
        """The monitor's values from ``callback_metrics``; a clear error (or one warning) when keys are missing."""
        prefix = _E_LOW if self.rule.low_metric == "e_low" else _DELTA_F
        wanted = self.rule.uses_low_error
        # a named monitor's keys fp_<name>/... under the rule's names fp/... (other monitors' keys left out)
        own = getattr(monitor, "prefix", DEFAULT_PREFIX)
        logs = {f"{DEFAULT_PREFIX}/{key[len(own) + 1:]}": value for key, value in logs.items()
                if key.startswith(f"{own}/")}
        values = {key: float(torch.as_tensor(value).detach().cpu().reshape(-1)[0]) for key, value in logs.items()
                  if (wanted and key.startswith(prefix))
                  or key in (_SHARE, DENOISED_KEY, PREDICTION_CHANGES_KEY, AGREEMENT_KEY)}
        missing = [] if not wanted or any(key.startswith(prefix) for key in values) else [f"{prefix}<…>"]
        recordings = len(monitor.history) if getattr(monitor, "history", None) is not None else 0
        if self.rule.share_threshold is not None and _SHARE not in values and recordings >= 2:
            missing.append(_SHARE)
        choosing = self.rule.agreement_threshold is not None and self.rule.selected is None
        if self.denoised_patience is not None and DENOISED_KEY not in values and (
                self.rule.uses_denoised and not (choosing and PREDICTION_CHANGES_KEY in values)):
            missing.append(f"{DENOISED_KEY} (needed by `denoised_patience`)")
        if self.rule.uses_label_wave and PREDICTION_CHANGES_KEY not in values and not (
                choosing and DENOISED_KEY in values):
            missing.append(f"{PREDICTION_CHANGES_KEY} (needed by `label_wave_window`; logged for class labels)")
        if not missing:
            return values
        fp_keys = sorted(with_prefix(key, own) for key in logs)
        missing = [with_prefix(key, own) for key in missing]
        message = (f"FrequencyEarlyStopping: {', '.join(missing)} missing from trainer.callback_metrics "
                   f"({own}/ keys present: {fp_keys or 'none'}). The FrequencyPrincipleMonitor must log them with "
                   "its default names; check that it measures (see its warnings) and that the module's log is not "
                   "disabled.")
        if self.strict:
            raise RuntimeError(message)
        if "missing" not in self._warned:
            self._warned.add("missing")
            rank_zero_warn(message + " The check is skipped (strict=False).")
        return None

    # ------------------------------------------------------------------ the decision (in the rule)
    def evaluate(self, metrics: Mapping[str, float], epoch: int) -> tuple[bool, str | None]:
        """Update the criteria with one check's values and say whether to stop.

        :attr:`rule` decides (``FrequencyStoppingRule.update``); this records its decision in ``EarlyStopping``'s
        attributes (``stopped_epoch``, ``stopping_reason``, ``stopping_reason_message``, ``wait_count``,
        ``best_score``). Free of any Trainer, so replaying the monitor's logged values of a finished run through
        a fresh instance gives the epoch where it would have stopped (``FrequencyStoppingRule.replay`` does that
        from a saved ``fp_history.npz``).

        Args:
            metrics: the monitor's logged values of this check (``fp/e_low/delta=…``, ``fp/delta_f/k=…``,
                ``fp/low_share``); other keys are ignored.
            epoch: completed epochs at this check.

        Returns:
            ``(should_stop, message)``: the message says which criterion fired with the values (or that (b) was
            armed), ``None`` when there is nothing to say.

        Raises:
            KeyError: when ``metrics`` has no key of the low-frequency error.
        """
        if not self._patience_resolved:
            raise ValueError(f"`denoised_patience={self.denoised_patience_fraction}` is a fraction of max_epochs, "
                             "known once `fit` starts; to evaluate checks by hand pass an int number of checks.")
        return self._take(self.rule.update(metrics, epoch))

    def _take(self, decision: Decision) -> tuple[bool, str | None]:
        """Mirror one of the rule's decisions in ``EarlyStopping``'s attributes; the message for the log."""
        if not decision.checked:
            return False, None
        rule = self.rule
        self.wait_count = max(rule.low_count, rule.share_count, rule.denoised_count)
        if rule.best_score < float(self.best_score):
            self.best_score = torch.tensor(rule.best_score, dtype=torch.float64)
        if not decision.should_stop:
            return False, None if decision.message is None else f"FrequencyEarlyStopping: {decision.message}"
        self.stopped_epoch = decision.epoch - 1
        self.stopping_reason = getattr(self._reasons, _REASONS.get(decision.criterion, "STOPPING_THRESHOLD"))
        action = "Dry run: training goes on." if self.dry_run else "Signaling Trainer to stop."
        self.stopping_reason_message = f"FrequencyEarlyStopping: {decision.message} {action}"
        return True, self.stopping_reason_message


# ---------------------------------------------------------------------- helpers (no Lightning state)
def _patience_checks(patience: int | float | None) -> int | None:
    """The rule's ``denoised_patience``: an int as given, 1 for a fraction of the budget (resolved at ``setup``)."""
    if isinstance(patience, float) and not isinstance(patience, bool):
        if not 0.0 < patience < 1.0:
            raise ValueError(f"`denoised_patience` as a float is a fraction of max_epochs in (0, 1), got {patience!r}; "
                             "pass an int for a number of checks.")
        return 1
    return patience  # the rule validates it (an int ≥ 1 or None)


def _patience_of_budget(fraction: float, max_epochs: int | None) -> int:
    """``fraction`` of the epoch budget, rounded, at least 2 checks."""
    if max_epochs is None or max_epochs < 1:
        raise ValueError(f"`denoised_patience={fraction}` is a fraction of the Trainer's max_epochs, which is "
                         f"{max_epochs}; set `max_epochs` or pass an int number of checks.")
    return max(2, round(fraction * max_epochs))


def _reason_enum(package: str) -> Any:
    """The ``EarlyStoppingReason`` enum of ``lightning.pytorch`` or of ``pytorch_lightning``."""
    module = "pytorch_lightning" if package == "pytorch_lightning" else "lightning.pytorch"
    return importlib.import_module(f"{module}.callbacks.early_stopping").EarlyStoppingReason


def _monitors(trainer: Any) -> list[Any]:
    from fp_lightning.callbacks.monitor import FrequencyPrincipleMonitor

    return [cb for cb in trainer.callbacks if isinstance(cb, FrequencyPrincipleMonitor)]


def _find_monitor(trainer: Any, name: str | None = None) -> Any:
    """The monitor named ``name``; for ``None`` the unnamed one, else the only one (``None`` when there is none)."""
    monitors = _monitors(trainer)
    named = [cb for cb in monitors if getattr(cb, "name", None) == name]
    if named:
        return named[0]
    return monitors[0] if name is None and len(monitors) == 1 else None


def _new_recording(monitor: Any, checked: int) -> int | None:
    """The epoch of the monitor's newest recording when it is one not checked yet and made after training began."""
    history = getattr(monitor, "history", None)
    if history is None or len(history) <= checked:
        return None
    epoch, step = int(history.records["epoch"][-1]), int(history.records["step"][-1])
    return None if epoch == 0 and step == 0 else epoch
