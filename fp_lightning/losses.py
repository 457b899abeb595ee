"""Loss modules: the F-Principle paper's frequency-weighted loss L_wf (Eq. (4)) as an ``nn.Module``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fp_lightning.functional._validation import check_int
from fp_lightning.functional.weighted_loss import _validated_weights, frequency_weighted_loss

__all__ = ["FrequencyWeightedLoss"]


class FrequencyWeightedLoss(nn.Module):
    """L_wf = 1/(N²·c) Σ_γ w(γ) ‖F[h](γ) − F[y](γ)‖² over the N DFT indices of a full, ordered uniform batch.

    A thin module over :func:`fp_lightning.functional.frequency_weighted_loss` that holds the weights w as a buffer
    (saved with the model, moved with ``.to()``), so that a :class:`~fp_lightning.FrequencyCurriculum` can change
    them while a ``training_step`` keeps calling ``self.loss(preds, y)``.

    Convention:
        As the functional: F[v](γ) = Σ_j v_j exp(−2πi·γ·j/N) (``torch.fft.fft``) over the samples in grid order;
        w ≡ 1 is exactly the mean squared error (Parseval); symmetric weights (γ and N − γ alike) weight
        frequencies, as the paper's masks do.

    Args:
        weights: the initial w(γ), shape (N,), finite and ≥ 0; or an int N for w ≡ 1 (the mean squared error).

    Example:
        >>> from fp_lightning.functional import low_pass_weights
        >>> loss = FrequencyWeightedLoss(8)
        >>> h, y = torch.arange(8.0), torch.zeros(8)
        >>> float(loss(h, y)) == float(torch.mean(h ** 2))
        True
        >>> loss.set_weights(low_pass_weights(8, 0))
        >>> float(loss(h, y))  # the mean alone: (28 / 8)²
        12.25
    """

    weights: Tensor

    def __init__(self, weights: Tensor | int) -> None:
        super().__init__()
        if isinstance(weights, Tensor):
            initial = weights.detach().clone()
            if initial.ndim != 1 or initial.shape[0] < 1:
                raise ValueError(f"`weights` must have shape (N,) with N ≥ 1, got {tuple(initial.shape)}.")
            initial = _validated_weights(initial, initial.shape[0], initial.to(torch.get_default_dtype()))
        else:
            initial = torch.ones(check_int("weights", weights, 1))
        self.register_buffer("weights", initial)

    @property
    def n_samples(self) -> int:
        """N, the number of samples (DFT length) the weights are built for."""
        return int(self.weights.shape[0])

    def set_weights(self, weights: Tensor) -> None:
        """Replace w in place (same N; the buffer keeps its device and dtype)."""
        new = _validated_weights(weights, self.n_samples, self.weights)
        with torch.no_grad():
            self.weights.copy_(new)

    def forward(self, preds: Tensor, target: Tensor) -> Tensor:
        """Return L_wf of ``preds`` against ``target``, both (N,) or (N, c) in grid order."""
        if preds.shape[0] != self.n_samples:
            raise ValueError(f"`preds` has {preds.shape[0]} samples but the weights are for {self.n_samples}: L_wf "
                             "needs the whole uniform grid in order in one batch (full-batch training, no shuffle).")
        return frequency_weighted_loss(preds, target, self.weights)

    def extra_repr(self) -> str:
        """Show N and how many DFT indices carry weight."""
        return f"n_samples={self.n_samples}, nonzero={int((self.weights != 0).sum())}"
