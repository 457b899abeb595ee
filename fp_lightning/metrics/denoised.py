"""``DenoisedLoss``: the loss against leave-one-out low-pass labels, a validation-free score, as a Metric."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torchmetrics.utilities import rank_zero_warn

from fp_lightning.functional._validation import check_choice, check_optional_int
from fp_lightning.functional.denoising import (
    DEFAULT_DELTA_FRACTION,
    DenoisingLoss,
    denoised_loss,
    leave_one_out_lowpass,
    scale_free_delta,
)
from fp_lightning.functional.filtering import FILTER_PRECISIONS, FilterPrecision, GaussianFilterBank, _as_deltas
from fp_lightning.functional.targets import OutputTransform
from fp_lightning.metrics._probe import ProbeSetMetric

__all__ = ["DenoisedLoss"]

#: Warn when the agreement a of the denoised classes with the labels is this close to chance 1/C:
#: (a − 1/C) / (1 − 1/C) below it. Measured at the default δ (C = 10): a = 0.59 and 0.37 on MNIST with 20% and 40%
#: noise (where the score works: 0.55 and 0.30 above chance on this scale), 0.18 and 0.13 on CIFAR-10 pixels (where
#: it does not: 0.09 and 0.04).
_AGREEMENT_WARNING = 0.15
#: Below this a softmax probability counts as 0 in the cross-entropy's log (float64 softmax outputs only reach it
#: when a logit gap exceeds about 690).
_TINY_PROBABILITY = 1e-300


class DenoisedLoss(ProbeSetMetric):
    """The loss of the outputs against denoised training labels: a score that can stand in for a validation loss.

    Convention:
        ŷ_i = Σ_{j≠i} G_δ(x_i − x_j) y_j / Σ_{j≠i} G_δ(x_i − x_j), G_δ(u) = exp(−‖u‖²/(2δ)) on the flattened
        inputs (δ a variance in squared input units): the Gaussian low-pass of the labels with the self term left
        out (``leave_one_out_lowpass``), where y is the target as ``prepare_targets`` arranges it (one-hot for class
        labels). ``"cross_entropy"``: −(1/n) Σ_i Σ_c ŷ_ic log h_ic with h the softmax outputs (``hard=True``: against
        argmax_c ŷ_ic); ``"mse"``: the mean of (h − ŷ)² over samples × columns (``denoised_loss``). ``loss="auto"``
        is cross-entropy when the outputs go through softmax (class labels), MSE otherwise.
        δ (``delta=None``: ``delta_fraction`` · m, m the median pairwise squared distance of the inputs, scale-free)
        and ŷ are computed on the first ``compute()`` from the stored inputs and targets and then frozen: the probe
        set and its targets do not change between recordings, so every later ``compute()`` costs one loss
        evaluation. Both are Metric state (``state_dict()`` keys ``_denoised_labels`` and ``_fitted_delta``, empty
        while not fitted): ``reset()`` keeps them, ``load_state_dict()`` restores them (a resumed run scores
        against the same labels), ``.to(device)`` moves them and keeps them float64.

    Args:
        delta: the filter width δ > 0, or ``None`` for ``delta_fraction`` · m.
        delta_fraction: δ / m when ``delta`` is ``None`` (default 0.001, chosen by measurement:
            ``docs/early_stopping.md``).
        loss: ``"auto"``, ``"cross_entropy"`` or ``"mse"``.
        hard: compare with the denoised argmax class instead of the soft labels.
        refit_labels: recompute ŷ (and δ) from the inputs of every ``compute()`` instead of freezing them, for
            inputs that change between recordings, such as a feature layer of the model being trained. Each
            ``compute()`` then costs one leave-one-out filter pass. Measured in ``docs/early_stopping.md``: the
            features of the current model follow the labels the network memorizes, so the score then keeps falling;
            this is for experiments, not a recommendation.
        chunk_size: tile edge of the kernel built at once (``None``: the filter bank's memory budget).
        filter_precision: working precision of the squared distances, ``"float64"`` (default) or ``"float32"``
            (``leave_one_out_lowpass``'s ``dtype``); the kernels and sums are float64 either way, so small δ do not
            underflow. Measured on 5,000 MNIST probe images at the default δ: float32 distances move the denoised
            labels by at most 2.5e-5 from float64 (no argmax changes) and the score by 4e-9 relatively
            (``docs/performance.md``); the monitor's default score uses them, to share the filter's distances
            (:attr:`bank_source`).
        output_transform: ``"auto"``, ``"softmax"``, ``"sigmoid"``, ``"identity"`` or a callable (``ProbeSetMetric``).
        class_dim: the class axis of the outputs.
        ignore_index: class labels left out of every quantity (default -100, as torch and HF; 255 for
            void pixels; ``None``: all count); see :class:`~fp_lightning.metrics._probe.ProbeSetMetric`.
        kwargs: ``warn_auto_choice`` and ``torchmetrics.Metric``'s.

    ``compute()`` returns ``{"denoised_loss": 0-d float64 tensor}``. For class labels, :attr:`label_agreement` is the
    share a of probe samples whose denoised class is their own label; when it is near chance,
    (a − 1/C) / (1 − 1/C) < 0.15 for C classes, one warning says that neighbours in this space rarely share a label
    (measured: a = 0.37–0.59 on noisy MNIST, where the score works, 0.13–0.18 on CIFAR-10 pixels, where it does
    not). It is set by the fit (``None`` for other targets, and after a ``load_state_dict``).

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [0.25], [5.0], [5.1]])
        >>> labels = torch.tensor([0, 0, 1, 1, 1])             # sample 2 looks mislabelled
        >>> metric = DenoisedLoss(delta=0.5)
        >>> memorized = torch.nn.functional.one_hot(labels, 2).float() * 8   # logits that fit every label
        >>> metric.update(x, memorized, labels)
        >>> round(float(metric.compute()["denoised_loss"]), 3)  # it pays for fitting labels its neighbours contradict
        3.174
        >>> metric.denoised_labels.argmax(dim=1)
        tensor([0, 0, 0, 1, 1])
    """

    def __init__(
        self,
        delta: float | None = None,
        delta_fraction: float = DEFAULT_DELTA_FRACTION,
        loss: Literal["auto"] | DenoisingLoss = "auto",
        hard: bool = False,
        refit_labels: bool = False,
        chunk_size: int | None = None,
        filter_precision: FilterPrecision = "float64",
        output_transform: OutputTransform = "auto",
        class_dim: int = 1,
        ignore_index: int | None = -100,
        **kwargs: Any,
    ) -> None:
        super().__init__(output_transform=output_transform, class_dim=class_dim, ignore_index=ignore_index,
                         **kwargs)
        if delta is not None:
            _as_deltas(delta, "delta")
        _as_deltas(delta_fraction, "delta_fraction")
        self.delta = delta
        self.delta_fraction = float(delta_fraction)
        self.loss = check_choice("loss", loss, ("auto", "cross_entropy", "mse"))
        if not isinstance(hard, bool):
            raise ValueError(f"`hard` must be a bool, got {hard!r}.")
        self.hard = hard
        if not isinstance(refit_labels, bool):
            raise ValueError(f"`refit_labels` must be a bool, got {refit_labels!r}.")
        self.refit_labels = refit_labels
        self.chunk_size = check_optional_int("chunk_size", chunk_size, 1)
        self.filter_precision = check_choice("filter_precision", filter_precision, tuple(FILTER_PRECISIONS))
        self._add_fit_state("_denoised_labels", torch.float64)
        self._add_fit_state("_fitted_delta", torch.float64)
        #: for class labels, the share of probe samples whose denoised argmax is their own label (set by the fit)
        self.label_agreement: float | None = None
        self._classes: int | None = None
        #: warn when :meth:`agreement_is_low` at the fit (the monitor says it itself, as it knows who watches)
        self.warn_low_agreement = True
        #: where to find a filter bank already built on the same inputs, ``source(x) -> bank or None`` (the monitor
        #: gives its ``LowHighFrequencyError.filter_bank_for``): the labels are then fitted from that bank's cached
        #: distances, with no distance pass of their own, when its precision is ``filter_precision``
        self.bank_source: Callable[[torch.Tensor], GaussianFilterBank | None] | None = None

    @property
    def denoised_labels(self) -> torch.Tensor | None:
        """The frozen denoised labels ŷ (n, c) float64, or ``None`` before the first ``compute()``.

        Set it to ``None`` to fit them again on the next ``compute()`` (a new probe set).

        Example:
            >>> DenoisedLoss().denoised_labels is None
            True
        """
        return self._get_fit("_denoised_labels")

    @denoised_labels.setter
    def denoised_labels(self, value: torch.Tensor | None) -> None:
        self._set_fit("_denoised_labels", value)
        if value is None:
            self._set_fit("_fitted_delta", None)

    @property
    def fitted_delta(self) -> float | None:
        """The filter width δ of the frozen labels (given, or fitted on the first ``compute()``), else ``None``.

        Example:
            >>> metric = DenoisedLoss(delta_fraction=0.5)
            >>> metric.update(torch.tensor([[0.0], [1.0], [5.0], [6.0]]), torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]))
            >>> _ = metric.compute()
            >>> metric.fitted_delta   # half the (lower) median squared distance of the 6 pairs, 16
            8.0
        """
        fitted = self._get_fit("_fitted_delta")
        return None if fitted is None else float(fitted[0])

    def _check_agreement(self, y: torch.Tensor, denoised: torch.Tensor) -> None:
        """Record how often the denoised class is the sample's own, and warn once when that is near chance."""
        classes = y.shape[1]
        one_hot = classes >= 2 and bool(((y == 0) | (y == 1)).all()) and bool((y.sum(dim=1) == 1).all())
        if not one_hot:
            self.label_agreement = None
            return
        self.label_agreement = float((denoised.argmax(dim=1) == y.argmax(dim=1)).double().mean())
        self._classes = classes
        if self.warn_low_agreement and self.agreement_is_low():
            rank_zero_warn(f"DenoisedLoss: {self.agreement_message()}", UserWarning)

    def agreement_is_low(self) -> bool:
        """Whether the denoised classes agree with the labels so little above chance that the score is unreliable.

        Example:
            >>> DenoisedLoss().agreement_is_low()   # nothing fitted yet
            False
        """
        if self.label_agreement is None or self.refit_labels or self._classes is None:
            return False
        chance = 1 / self._classes
        return (self.label_agreement - chance) / (1 - chance) < _AGREEMENT_WARNING

    def agreement_message(self) -> str:
        """What a low agreement means for the user, in one sentence (empty before the labels are fitted).

        Example:
            >>> DenoisedLoss().agreement_message()
            ''
        """
        if self.label_agreement is None or self._classes is None:
            return ""
        return (f"the denoised labels agree with only {self.label_agreement:.0%} of the probe's labels (chance: "
                f"{1 / self._classes:.0%}): neighbours in this input space rarely share a label, and there the score "
                "stops too early (on CIFAR-10 pixels it chose epochs with a 16% higher test loss than the best, "
                "docs/early_stopping.md); prefer a validation loss for such data.")

    def resolved_loss(self) -> DenoisingLoss | None:
        """The loss in use: the given one, or what ``"auto"`` means for the resolved output transform.

        Example:
            >>> DenoisedLoss(loss="mse").resolved_loss()
            'mse'
            >>> DenoisedLoss(output_transform="softmax").resolved_loss()
            'cross_entropy'
        """
        if self.loss != "auto":
            return self.loss
        transform = self.resolved_output_transform
        if transform is None:
            return None
        return "cross_entropy" if transform == "softmax" else "mse"

    def _shared_bank(self, x: torch.Tensor) -> GaussianFilterBank | None:
        """The :attr:`bank_source`'s bank for exactly these inputs in this precision, else ``None``."""
        bank = None if self.bank_source is None else self.bank_source(x)
        if bank is None or bank.dtype != FILTER_PRECISIONS[self.filter_precision]:
            return None
        if self.chunk_size is not None and bank.chunk_size != self.chunk_size:
            return None
        return bank

    def compute(self) -> dict[str, torch.Tensor]:
        """The loss of the stored outputs against the (frozen) denoised labels (NaN before any ``update()``)."""
        if not self._has_samples():
            return {"denoised_loss": torch.tensor(math.nan, dtype=torch.float64)}
        x, y, h, _ = self._gathered(float64_inputs=False)  # per-sample labels: ignored samples are dropped
        denoised = None if self.refit_labels else self.denoised_labels
        if denoised is None:
            delta = self.delta if self.delta is not None else scale_free_delta(x, self.delta_fraction)
            denoised = leave_one_out_lowpass(x, y, delta, chunk_size=self.chunk_size,
                                             dtype=FILTER_PRECISIONS[self.filter_precision], bank=self._shared_bank(x))
            self._set_fit("_denoised_labels", denoised)
            self._set_fit("_fitted_delta", torch.tensor([delta], dtype=torch.float64))
            self._check_agreement(y, denoised)
            denoised = self.denoised_labels
            assert denoised is not None
        if denoised.shape != y.shape:
            raise ValueError(f"the probe has {tuple(y.shape)} targets but the frozen `denoised_labels` are "
                             f"{tuple(denoised.shape)}: the probe set changed; set `denoised_labels = None` to fit "
                             "them again.")
        loss = self.resolved_loss()
        assert loss is not None
        denoised = denoised.to(h.device)
        if loss == "mse":
            return {"denoised_loss": denoised_loss(h, denoised, "mse", hard=self.hard)}
        transform = self.resolved_output_transform
        if not (transform == "softmax" or callable(transform)):
            raise ValueError(f"`loss='cross_entropy'` needs probabilities (softmax outputs of class scores), but the "
                             f"outputs go through {transform!r}; use `loss='mse'` or `output_transform='softmax'`.")
        # log-probabilities are logits of the same softmax, so the functional's log_softmax returns them unchanged
        log_probabilities = h.clamp_min(_TINY_PROBABILITY).log()
        return {"denoised_loss": denoised_loss(log_probabilities, denoised, "cross_entropy", hard=self.hard)}
