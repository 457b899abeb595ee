"""Denoised training labels and the loss against them: a validation-free score for early stopping.

By the Frequency Principle the low-frequency part of the training labels carries the signal and label noise lives
at high frequency. The Gaussian low-pass of the labels, with each sample's own label left out, is a denoised label
for that sample: the kernel-weighted vote of its neighbours. The loss of the network's outputs against these
denoised labels behaves like a validation loss: it falls while the network learns what the neighbours agree on,
and rises once it memorizes the labels its neighbours contradict.

The leave-one-out sums are the off-diagonal sums of :class:`~fp_lightning.functional.GaussianFilterBank` (its
self term is added separately, so leaving it out costs nothing): the kernel is never built whole, and the
temporaries stay bounded for any number of samples.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from fp_lightning.functional._validation import check_choice, check_dtype, check_finite, check_int, check_tensor
from fp_lightning.functional.filtering import (
    GaussianFilterBank,
    _as_deltas,
    _flatten_inputs,
    _median_pair_distance,
)

__all__ = ["DEFAULT_DELTA_FRACTION", "DenoisingLoss", "denoised_loss", "leave_one_out_lowpass", "scale_free_delta"]

#: Default filter width of the denoised labels, as a fraction of the median pairwise squared distance m of the
#: inputs: δ = m/1000, chosen by measurement (``docs/early_stopping.md``): on MNIST with label noise m/300 … m/100
#: did as well, but on the noisy 1-D staircase of the paper's Fig. 6 anything wider than m/300 smooths the steps
#: (the signal) and the score's minimum comes far too early. At m/1000 a pixel-space kernel is dominated by each
#: sample's few nearest neighbours.
DEFAULT_DELTA_FRACTION = 0.001
#: The losses :func:`denoised_loss` computes.
DenoisingLoss = Literal["cross_entropy", "mse"]
_LOSSES = ("cross_entropy", "mse")


@torch.no_grad()
def scale_free_delta(inputs: torch.Tensor, fraction: float = DEFAULT_DELTA_FRACTION, *, max_pairs: int = 100_000,
                     seed: int = 0) -> float:
    """A filter width δ = ``fraction`` · m, m the median pairwise squared distance of the flattened inputs.

    Convention:
        m is the statistic of :func:`~fp_lightning.functional.default_deltas` (the lower median of ‖x_i − x_j‖² over
        all pairs, or over the pairs of a seeded random subset of about ``max_pairs`` pairs), so δ is in the
        squared units of the inputs and scaling the inputs by s scales δ by s².

    Args:
        inputs: (n, ...) with n ≥ 2, flattened per sample.
        fraction: δ as a fraction of m (> 0).
        max_pairs: about how many pairs the median is taken over.
        seed: seed of the private generator that draws the subset (the global RNG is untouched).

    Returns:
        δ as a Python float.

    Raises:
        ValueError: bad inputs, ``fraction`` ≤ 0, or a median distance of 0 (most inputs identical).

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [2.0], [3.0]])   # median squared distance of the 6 pairs: 1 (lower)
        >>> scale_free_delta(x, 0.5)
        0.5
        >>> scale_free_delta(3 * x, 0.5)
        4.5
    """
    flat = _flatten_inputs(inputs)
    fraction_tensor, _ = _as_deltas(fraction, "fraction")
    if fraction_tensor.numel() != 1:
        raise ValueError(f"`fraction` must be one number > 0, got {fraction!r}.")
    median = _median_pair_distance(flat, check_int("max_pairs", max_pairs, 1), check_int("seed", seed))
    if not median > 0:
        raise ValueError("`inputs` have a median pairwise squared distance of 0 (most inputs are identical): there "
                         "is no scale to derive delta from; pass an explicit `delta`.")
    return float(fraction_tensor[0]) * median


def _labels_as_2d(labels: torch.Tensor, n: int, num_classes: int | None) -> torch.Tensor:
    """Integer (n,) labels as one-hot float64 (n, C); real (n,) or (n, c) values as float64 (n, c)."""
    check_tensor("labels", labels)
    if labels.is_complex():
        raise ValueError(f"`labels` must be real, got dtype {labels.dtype}.")
    if labels.shape[0] != n:
        raise ValueError(f"Mismatched number of samples: `inputs` has {n}, `labels` has {labels.shape[0]}; they "
                         "must be equal.")
    integer = not labels.is_floating_point() and labels.dtype != torch.bool
    if integer:
        if labels.ndim != 1:
            raise ValueError(f"integer `labels` must be class indices of shape (n,), got {tuple(labels.shape)}.")
        classes = int(labels.max()) + 1 if num_classes is None else check_int("num_classes", num_classes, 1)
        if int(labels.min()) < 0 or int(labels.max()) >= classes:
            raise ValueError(f"`labels` hold classes in [{int(labels.min())}, {int(labels.max())}], outside "
                             f"[0, {classes - 1}]; set `num_classes`.")
        return F.one_hot(labels.long(), classes).to(torch.float64)
    if num_classes is not None:
        raise ValueError("`num_classes` applies to integer class labels only; `labels` are real values.")
    if labels.ndim not in (1, 2):
        raise ValueError(f"real `labels` must be (n,) or (n, c), got shape {tuple(labels.shape)}.")
    values = labels.to(torch.float64).reshape(n, -1)
    check_finite("labels", values)
    return values


@torch.no_grad()
def leave_one_out_lowpass(
    inputs: torch.Tensor,
    labels: torch.Tensor,
    delta: float | None = None,
    *,
    delta_fraction: float = DEFAULT_DELTA_FRACTION,
    num_classes: int | None = None,
    chunk_size: int | None = None,
    dtype: torch.dtype = torch.float64,
    bank: GaussianFilterBank | None = None,
) -> torch.Tensor:
    """Denoised labels: the Gaussian low-pass of the labels at each sample with the sample itself left out.

    Convention:
        ŷ_i = Σ_{j≠i} G_δ(x_i − x_j) y_j / Σ_{j≠i} G_δ(x_i − x_j), G_δ(u) = exp(−‖u‖²/(2δ)) on the flattened
        inputs (δ a variance in squared input units, as in :func:`~fp_lightning.functional.gaussian_lowpass`,
        whose filter is the same with the self term j = i kept). Integer class labels (n,) are one-hot vectors, so
        each ŷ_i is a probability vector: the neighbours' kernel-weighted class vote. A sample whose neighbours'
        weights all underflow to 0 (no other input within about 38·√δ of it: the kernel is float64 whatever
        ``dtype``) gets the mean label ȳ instead, the limit of the filter for a vanishing neighbourhood weight
        relative to the whole set.
        ``delta=None`` takes δ = ``delta_fraction`` · m, m the median pairwise squared distance
        (:func:`scale_free_delta`): scale-free.

    The sums come from :meth:`GaussianFilterBank.neighbour_sums_at <fp_lightning.functional.GaussianFilterBank>`
    tile by tile (squared distances in ``dtype``, kernels and sums in float64), so n = 5,000 or more never builds a
    dense n × n matrix. Given a ``bank`` built on the same inputs (a ``LowHighFrequencyError``'s, which keeps its
    distances beside its kernels), no distance is computed again.

    Args:
        inputs: (n, ...), n ≥ 2, flattened per sample (or features of them, e.g. a network layer's activations).
        labels: integer class indices (n,), or real values (n,) or (n, c).
        delta: the filter width δ > 0, or ``None`` for the scale-free default.
        delta_fraction: δ / m when ``delta`` is ``None``.
        num_classes: number of classes of integer labels (default: largest label + 1).
        chunk_size: tile edge of the kernel built at once (``None``: the filter bank's memory budget).
        dtype: working precision of the squared distances D, ``torch.float64`` (default) or ``torch.float32``
            (the distance products run twice as fast; a kernel entry is then off by about 1e-7·‖x − x̄‖²/δ
            relatively). The kernel exp(−D/(2δ)) is float64 either way: it stays representable up to D/(2δ) ≈ 745,
            against ≈ 103 in float32, which matters at the small δ where denoising works best.
        bank: a filter bank already built on exactly these ``inputs`` (same rows, same order) whose distances to
            use instead of ``chunk_size`` and ``dtype`` (its own); ``None``: a new one, which keeps nothing.

    Returns:
        (n, c) float64 on the device of ``inputs`` (c = C classes, or the labels' columns; 1 for (n,) values).

    Raises:
        ValueError: bad shapes, mismatched lengths, non-finite values, δ ≤ 0, or labels outside ``num_classes``.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [0.25], [5.0], [5.1]])
        >>> y = torch.tensor([0, 0, 1, 1, 1])                       # sample 2 looks mislabelled
        >>> leave_one_out_lowpass(x, y, delta=0.5).argmax(dim=1)   # its neighbours vote 0
        tensor([0, 0, 0, 1, 1])
        >>> leave_one_out_lowpass(x, y, delta=0.5)[3]               # only sample 4 is near sample 3
        tensor([0., 1.], dtype=torch.float64)
    """
    flat = _flatten_inputs(inputs)
    n = flat.shape[0]
    values = _labels_as_2d(labels, n, num_classes).to(flat.device)
    if delta is None:
        delta = scale_free_delta(flat, delta_fraction)
    deltas, scalar = _as_deltas(delta, "delta")
    if not scalar and deltas.numel() != 1:
        raise ValueError(f"`delta` must be one number > 0, got {delta!r}.")
    dtype = check_dtype("dtype", dtype, (torch.float32, torch.float64))
    if bank is None:
        bank = GaussianFilterBank(flat, deltas, chunk_size=chunk_size, memory_budget=0, dtype=dtype)
    elif not isinstance(bank, GaussianFilterBank) or bank.n_samples != n:
        raise ValueError(f"`bank` must be a GaussianFilterBank built on the {n} `inputs`, got {bank!r}.")
    # the bank's off-diagonal sums are exactly the leave-one-out numerator and denominator
    sums, weights = bank.neighbour_sums_at(values, float(deltas[0]))
    isolated = weights[:, 0] <= 0
    denoised = sums / torch.where(isolated, 1.0, weights[:, 0]).unsqueeze(1)
    if bool(isolated.any()):
        denoised[isolated] = values.mean(dim=0)
    return denoised


@torch.no_grad()
def denoised_loss(
    outputs: torch.Tensor,
    denoised: torch.Tensor,
    loss: DenoisingLoss = "cross_entropy",
    *,
    hard: bool = False,
) -> torch.Tensor:
    """The loss of the network's outputs against denoised labels (:func:`leave_one_out_lowpass`).

    Convention:
        ``"cross_entropy"``: outputs are logits (n, C); L = −(1/n) Σ_i Σ_c ŷ_ic log softmax(o_i)_c against the soft
        labels ŷ (each row a probability vector), or with ``hard=True`` torch's cross-entropy against the class
        argmax_c ŷ_ic. ``"mse"``: L = (1/(n·c)) Σ_i Σ_c (o_ic − ŷ_ic)², torch's mean squared error (outputs (n,) are
        compared with (n, 1) labels); with ``hard=True`` (c ≥ 2 only) ŷ_i is replaced by the one-hot vector of its
        argmax. Computed in float64.

    Args:
        outputs: logits (n, C) for cross-entropy, or outputs (n,) / (n, c) for MSE.
        denoised: (n, c) denoised labels.
        loss: ``"cross_entropy"`` (classes) or ``"mse"`` (regression, or one-hot targets fitted by MSE).
        hard: compare with the argmax class instead of the soft labels.

    Returns:
        0-d float64 tensor.

    Raises:
        ValueError: unknown ``loss``, mismatched shapes, non-finite values, soft labels that are not probability
            rows for cross-entropy, or ``hard=True`` with a single output column.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> soft = torch.tensor([[0.75, 0.25], [0.0, 1.0]], dtype=torch.float64)
        >>> denoised_loss(logits, soft)
        tensor(0.4701, dtype=torch.float64)
        >>> denoised_loss(logits, soft, hard=True)   # labels 0 and 1
        tensor(0.2201, dtype=torch.float64)
        >>> denoised_loss(torch.tensor([1.0, 2.0]), torch.tensor([[1.0], [0.0]]), "mse")
        tensor(2., dtype=torch.float64)
    """
    check_choice("loss", loss, _LOSSES)
    check_tensor("outputs", outputs)
    check_tensor("denoised", denoised)
    if not isinstance(hard, bool):
        raise ValueError(f"`hard` must be a bool, got {hard!r}.")
    out = outputs.detach().to(torch.float64)
    target = denoised.detach().to(device=out.device, dtype=torch.float64)
    if loss == "mse" and out.ndim == 1:
        out = out.unsqueeze(1)
    if out.ndim != 2 or out.shape != target.shape:
        raise ValueError(f"`outputs` {tuple(outputs.shape)} and `denoised` {tuple(denoised.shape)} must both be "
                         "(n, c) with the same shape (for `loss='mse'` outputs may be (n,) against (n, 1)).")
    check_finite("outputs", out)
    check_finite("denoised", target)
    if hard:
        if target.shape[1] < 2:
            raise ValueError("`hard=True` takes the argmax class of each denoised row, which needs ≥ 2 columns; "
                             "use the soft labels for a single output.")
        classes = target.argmax(dim=1)
        if loss == "cross_entropy":
            return F.cross_entropy(out, classes)
        target = F.one_hot(classes, target.shape[1]).to(torch.float64)
    if loss == "mse":
        return F.mse_loss(out, target)
    row_sums = target.sum(dim=1)
    if bool((target < -1e-12).any()) or not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-6):
        raise ValueError("`denoised` must hold probability rows (≥ 0, summing to 1) for `loss='cross_entropy'`; "
                         "low-pass one-hot class labels, or use `loss='mse'` for real targets.")
    return -(target * torch.log_softmax(out, dim=1)).sum(dim=1).mean()

