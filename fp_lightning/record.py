"""The record of a monitor's measurements: the logged keys, the values under them, and the history file.

One home for the record, used by the monitor (what it logs), the stopping rule's replay (what the monitor logged),
the panels and the report (what they draw):

- the keys: ``fp/delta_f/k=<k>``, ``fp/e_low/delta=<δ>``, ``fp/e_high/delta=<δ>`` (``<δ>`` from
  :func:`delta_keys`), ``fp/loss_low``, ``fp/loss_high``, ``fp/low_share``, ``fp/denoised_loss``,
  ``fp/prediction_changes``, ``fp/denoised_agreement``;
- the prefix: ``fp`` for a monitor without a ``name``, ``fp_<name>`` for a named one (:func:`key_prefix`,
  :func:`with_prefix`), so that ``fp_val/delta_f/k=<k>`` is the held-out twin of ``fp/delta_f/k=<k>``;
- ``fp_<name>/delta_f_gap/k=<k>``: held-out minus training Δ_F at the same k (:func:`gap_values`);
- :func:`logged_values`: one recording's measurements as those keys and values;
- :class:`FrequencyHistory`: every recording, kept in the monitor's ``state_dict`` and saved as a plain ``.npz``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["AGREEMENT_KEY", "DEFAULT_PREFIX", "DELTA_F_GAP_PREFIX", "DELTA_F_PREFIX", "DENOISED_KEY",
           "E_HIGH_PREFIX", "E_LOW_PREFIX", "HISTORY_FILE", "LOSS_HIGH_KEY", "LOSS_LOW_KEY", "PREDICTION_CHANGES_KEY",
           "SHARE_KEY", "FrequencyHistory", "check_name", "delta_key", "delta_keys", "gap_values", "history_file_name",
           "key_prefix", "load_history", "logged_values", "paired_recordings", "with_prefix"]

DELTA_F_PREFIX = "fp/delta_f/k="
E_LOW_PREFIX = "fp/e_low/delta="
E_HIGH_PREFIX = "fp/e_high/delta="
LOSS_LOW_KEY = "fp/loss_low"
LOSS_HIGH_KEY = "fp/loss_high"
SHARE_KEY = "fp/low_share"
DENOISED_KEY = "fp/denoised_loss"
#: Classifiers: the share of probe predictions whose class changed since the previous recording (Label Wave's signal).
PREDICTION_CHANGES_KEY = "fp/prediction_changes"
#: Class labels: the chance-corrected agreement (a − 1/C) / (1 − 1/C) of the denoised classes with the labels.
AGREEMENT_KEY = "fp/denoised_agreement"
#: Held-out minus training Δ_F(k) at the same recording (logged by a monitor that shares another's frequencies).
DELTA_F_GAP_PREFIX = "fp/delta_f_gap/k="
#: The part before the first slash of every key of a monitor without a name (TensorBoard groups by it).
DEFAULT_PREFIX = "fp"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: Significant digits of ``<δ>`` in the keys (more only where two δ of a run would print the same).
DELTA_DIGITS = 3

#: File name of a monitor's saved history, next to its logs (``FrequencyPrincipleMonitor(history_file=...)``).
HISTORY_FILE = "fp_history.npz"

_PER_EPOCH = ("epoch", "step", "delta_f", "e_low", "e_high", "loss_low", "loss_high", "low_share", "output_amplitude",
              "loss_density", "loss_change_ratio", "window_change_ratio", "output_change_ratio", "denoised_loss",
              "prediction_changes", "denoised_agreement")
# Fields a recording may leave out (histories written before they existed, callers that do not measure them): they
# are stored as NaN rows of their length, K for the loss density and K − 1 (one per cutoff η) for the ratios.
_OPTIONAL: dict[str, int | None] = {"loss_density": 0, "loss_change_ratio": 1, "window_change_ratio": 1,
                                    "output_change_ratio": 1, "denoised_loss": None, "prediction_changes": None,
                                    "denoised_agreement": None}


@dataclass
class FrequencyHistory:
    """Measurements per recorded epoch, plus the frozen choices they refer to (frequencies, δ, cutoff).

    ``epoch`` counts completed training epochs: 0 is the state before the first training step. ``delta_f`` rows
    follow ``freqs``; ``e_low`` / ``e_high`` rows follow ``deltas``; ``low_share`` is NaN where fewer than two
    recordings existed. The theory paper's quantities (see :mod:`fp_lightning.functional.theory`): ``loss_density``
    rows are q(k), k = 0..K−1; ``loss_change_ratio`` (Eq. (38), against the previous recording),
    ``window_change_ratio`` (Eq. (39), over the monitor's ``share_window``) and ``output_change_ratio`` (Eq. (40))
    rows follow the cutoffs η = 0..K−2, NaN where no earlier recording exists. ``denoised_loss`` is the monitor's
    ``fp/denoised_loss`` (NaN when it was off); ``prediction_changes`` and ``denoised_agreement`` are
    ``fp/prediction_changes`` and ``fp/denoised_agreement`` (NaN where not measured: the first recording, targets
    that are not class labels).

    File format (``save``): a NumPy ``.npz`` with one array per field and ``meta`` (JSON text), loadable with
    ``numpy.load`` alone, no fp_lightning needed.

    Example:
        >>> h = FrequencyHistory(freqs=[3, 9], deltas=[0.5], cutoff=3, target_amplitude=[1.0, 2.0, 5.0, 1.0])
        >>> h.append(epoch=0, step=0, delta_f=[1.0, 1.0], e_low=[0.9], e_high=[1.0], loss_low=4.0, loss_high=2.0,
        ...          low_share=float("nan"), output_amplitude=[0.0, 0.0, 0.0, 0.0])
        >>> h.as_arrays()["delta_f"].shape
        (1, 2)
    """

    freqs: list[int]
    deltas: list[float]
    cutoff: int
    target_amplitude: list[float]
    records: dict[str, list[Any]] = field(default_factory=lambda: {key: [] for key in _PER_EPOCH})

    def __len__(self) -> int:
        return len(self.records["epoch"])

    def append(self, **values: Any) -> None:
        """Add one recording; every per-epoch field must be given, except those of ``_OPTIONAL`` (NaN when left out)."""
        n_freqs = len(self.target_amplitude)
        for key, fewer in _OPTIONAL.items():
            values.setdefault(key, float("nan") if fewer is None else [float("nan")] * (n_freqs - fewer))
        missing = set(_PER_EPOCH) - set(values)
        if missing:
            raise ValueError(f"missing history fields: {sorted(missing)}")
        for key in _PER_EPOCH:
            value = values[key]
            self.records[key].append(np.asarray(value, dtype=float).tolist() if key not in ("epoch", "step")
                                     else int(value))

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Per-epoch fields stacked along axis 0, and the frozen choices, as NumPy arrays."""
        out = {key: np.asarray(values) for key, values in self.records.items()}
        out.update(freqs=np.asarray(self.freqs, dtype=int), deltas=np.asarray(self.deltas, dtype=float),
                   cutoff=np.asarray(self.cutoff), target_amplitude=np.asarray(self.target_amplitude, dtype=float))
        return out

    def state_dict(self) -> dict[str, Any]:
        """Plain Python containers only, so checkpoints stay loadable with ``weights_only=True``."""
        return {"freqs": list(self.freqs), "deltas": list(self.deltas), "cutoff": int(self.cutoff),
                "target_amplitude": list(self.target_amplitude),
                "records": {key: list(values) for key, values in self.records.items()}}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FrequencyHistory:
        """Rebuild a history saved with :meth:`state_dict`."""
        records = {key: list(state["records"].get(key, [])) for key in _PER_EPOCH}
        n_records, n_freqs = len(records["epoch"]), len(state["target_amplitude"])
        for key, fewer in _OPTIONAL.items():
            if len(records[key]) != n_records:  # a history saved before the field existed
                records[key] = [float("nan") if fewer is None else [float("nan")] * (n_freqs - fewer)
                                for _ in range(n_records)]
        return cls(list(state["freqs"]), list(state["deltas"]), int(state["cutoff"]),
                   list(state["target_amplitude"]), records)

    def save(self, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
        """Write the ``.npz`` file atomically (a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self.as_arrays()
        arrays["meta"] = np.asarray(json.dumps(meta or {}))
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
            np.savez(handle, **arrays)
        os.replace(handle.name, path)
        return path


def load_history(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a saved history into a dict of arrays (``meta`` decoded from JSON).

    Equivalent without fp_lightning: ``dict(numpy.load(path))`` and ``json.loads(str(d["meta"]))``.
    """
    with np.load(path) as data:
        out: dict[str, Any] = {key: data[key] for key in data.files}
    out["meta"] = json.loads(str(out.get("meta", "{}")))
    return out


def delta_keys(deltas: Sequence[float]) -> list[str]:
    """The ``<δ>`` part of ``fp/e_low/delta=<δ>`` (and of the figure tags) for each filter width δ of a run.

    Convention:
        ``f"{δ:.3g}"`` (3 significant digits); where two different δ would print the same, the precision grows for
        the whole list, one digit at a time, until every δ prints differently (17 digits always do).

    Raises:
        ValueError: a δ is not a finite positive number, or two δ are equal (name: ``deltas``).

    Example:
        >>> delta_keys([0.001234567, 0.5, 12.0])
        ['0.00123', '0.5', '12']
        >>> delta_keys([0.010001, 0.010002, 1.0])
        ['0.010001', '0.010002', '1']
    """
    values = [float(d) for d in deltas]
    if any(not np.isfinite(d) or d <= 0 for d in values):
        raise ValueError(f"`deltas` must be finite positive numbers, got {values}.")
    if len(set(values)) != len(values):
        raise ValueError(f"`deltas` must be distinct (each names its own logged key), got {values}.")
    digits = DELTA_DIGITS
    while True:
        keys = [f"{d:.{digits}g}" for d in values]
        if len(set(keys)) == len(keys) or digits >= 17:
            return keys
        digits += 1


def delta_key(delta: float) -> str:
    """The ``<δ>`` of one filter width on its own: ``f"{δ:.3g}"`` (use :func:`delta_keys` for a run's whole list).

    Example:
        >>> delta_key(0.0123456), delta_key(2.0)
        ('0.0123', '2')
    """
    return delta_keys([delta])[0]


def check_name(name: str | None) -> str | None:
    """Validate a monitor's ``name``: ``None``, or letters, digits, ``_``, ``.``, ``-`` (no ``/``: it ends a group).

    Raises:
        ValueError: another value (name: ``name``).

    Example:
        >>> check_name("val"), check_name(None)
        ('val', None)
    """
    if name is None:
        return None
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"`name` must be None or a word of letters, digits, '_', '.', '-' starting with a letter or "
                         f"digit (it becomes the key prefix fp_<name>/), got {name!r}.")
    return name


def key_prefix(name: str | None) -> str:
    """The part before the first slash of a monitor's keys and figure tags: ``fp``, or ``fp_<name>`` for a name.

    TensorBoard groups its scalars by that part, so a named monitor's values sit in their own section next to
    ``fp``.

    Example:
        >>> key_prefix(None), key_prefix("val")
        ('fp', 'fp_val')
    """
    return DEFAULT_PREFIX if check_name(name) is None else f"{DEFAULT_PREFIX}_{name}"


def with_prefix(key: str, prefix: str) -> str:
    """A key of this module (``fp/...``) under another monitor's ``prefix``; other keys are returned unchanged.

    Example:
        >>> with_prefix("fp/delta_f/k=4", "fp_val"), with_prefix("fp/loss_low", "fp")
        ('fp_val/delta_f/k=4', 'fp/loss_low')
    """
    head = f"{DEFAULT_PREFIX}/"
    return f"{prefix}/{key[len(head):]}" if key.startswith(head) else key


def history_file_name(name: str | None) -> str:
    """The default history file of a monitor: ``fp_history.npz``, or ``fp_<name>_history.npz`` for a name.

    Example:
        >>> history_file_name(None), history_file_name("val")
        ('fp_history.npz', 'fp_val_history.npz')
    """
    return HISTORY_FILE if name is None else f"{key_prefix(name)}_history.npz"


def gap_values(freqs: Sequence[int], delta_f: Sequence[float], reference_delta_f: Sequence[float],
               prefix: str = DEFAULT_PREFIX) -> dict[str, float]:
    """The generalization gap per tracked k: ``{prefix}/delta_f_gap/k=<k>`` = Δ_F(k) − Δ_F_reference(k).

    Convention:
        ``delta_f`` is this monitor's (e.g. a held-out probe), ``reference_delta_f`` the monitor whose
        projection and frequencies it shares (the training probe), at the same recording; a positive gap is a
        frequency fitted on the training probe better than on the held-out one.

    Example:
        >>> gap_values([1, 4], [0.25, 0.9], [0.125, 0.4], prefix="fp_val")
        {'fp_val/delta_f_gap/k=1': 0.125, 'fp_val/delta_f_gap/k=4': 0.5}
    """
    gap_prefix = with_prefix(DELTA_F_GAP_PREFIX, prefix)
    return {f"{gap_prefix}{int(k)}": float(v) - float(r) for k, v, r in zip(freqs, delta_f, reference_delta_f)}


def paired_recordings(history: dict[str, Any], reference: dict[str, Any]) -> dict[str, np.ndarray]:
    """The recordings two histories share (same epoch and global step), for comparing a probe with its reference.

    Args:
        history: arrays of a history (``FrequencyHistory.as_arrays()`` or :func:`load_history`), e.g. a held-out
            probe's.
        reference: the same of the history whose frequencies it shares (the training probe's).

    Returns:
        ``epoch``, ``step`` (R,) of the shared recordings in order, ``delta_f`` and ``reference_delta_f`` (R, F) and
        ``gap`` = ``delta_f − reference_delta_f``, ``freqs`` (F,).

    Raises:
        ValueError: the two histories track different frequencies (name: ``reference``).

    Example:
        >>> a = {"epoch": np.array([0, 1, 2]), "step": np.array([0, 5, 10]), "freqs": np.array([1, 3]),
        ...      "delta_f": np.array([[1.0, 1.0], [0.5, 0.9], [0.25, 0.75]])}
        >>> b = {"epoch": np.array([0, 2]), "step": np.array([0, 10]), "freqs": np.array([1, 3]),
        ...      "delta_f": np.array([[1.0, 1.0], [0.125, 0.5]])}
        >>> paired_recordings(a, b)["gap"].tolist()
        [[0.0, 0.0], [0.125, 0.25]]
    """
    freqs, reference_freqs = np.asarray(history["freqs"]), np.asarray(reference["freqs"])
    if freqs.shape != reference_freqs.shape or not np.array_equal(freqs, reference_freqs):
        raise ValueError(f"`reference` tracks other frequencies ({reference_freqs.tolist()}) than this history "
                         f"({freqs.tolist()}); give the held-out monitor `spectral=<the training monitor>`.")
    mine = {(int(e), int(s)): i for i, (e, s) in enumerate(zip(history["epoch"], history["step"]))}
    rows = [(mine[(int(e), int(s))], j) for j, (e, s) in enumerate(zip(reference["epoch"], reference["step"]))
            if (int(e), int(s)) in mine]
    own, theirs = [i for i, _ in rows], [j for _, j in rows]
    delta_f = np.asarray(history["delta_f"], dtype=float).reshape(len(history["epoch"]), -1)[own]
    reference_delta_f = np.asarray(reference["delta_f"], dtype=float).reshape(len(reference["epoch"]), -1)[theirs]
    return {"epoch": np.asarray(history["epoch"], dtype=int)[own], "step": np.asarray(history["step"], dtype=int)[own],
            "freqs": freqs, "delta_f": delta_f, "reference_delta_f": reference_delta_f,
            "gap": delta_f - reference_delta_f}


def logged_values(freqs: Sequence[int], delta_f: Sequence[float], deltas: Sequence[float], e_low: Sequence[float],
                  e_high: Sequence[float], loss_low: float, loss_high: float, low_share: float,
                  denoised_loss: float = math.nan, prediction_changes: float = math.nan,
                  denoised_agreement: float = math.nan, prefix: str = DEFAULT_PREFIX) -> dict[str, float]:
    """One recording as the monitor logs it: ``{key: value}`` under the keys of this module.

    Convention:
        Δ_F for every tracked k; e_low / e_high for every δ unless e_low is NaN (the filtering of that recording
        was skipped); the loss split; the low share, the denoised loss, the prediction changes and the denoised
        labels' agreement unless NaN (fewer than two recordings, the score is off, not class labels). Keys start
        with ``prefix`` (:func:`key_prefix` of the monitor's name).

    Example:
        >>> logged_values([1, 4], [0.5, 0.9], [0.25], [0.1], [0.8], 2.0, 1.0, float("nan"))
        {'fp/delta_f/k=1': 0.5, 'fp/delta_f/k=4': 0.9, 'fp/e_low/delta=0.25': 0.1, 'fp/e_high/delta=0.25': 0.8, \
'fp/loss_low': 2.0, 'fp/loss_high': 1.0}
    """
    values = {f"{DELTA_F_PREFIX}{int(k)}": float(v) for k, v in zip(freqs, delta_f)}
    for key, low, high in zip(delta_keys(deltas) if len(deltas) else [], e_low, e_high):
        if not math.isnan(float(low)):
            values[f"{E_LOW_PREFIX}{key}"] = float(low)
            values[f"{E_HIGH_PREFIX}{key}"] = float(high)
    values[LOSS_LOW_KEY] = float(loss_low)
    values[LOSS_HIGH_KEY] = float(loss_high)
    if not math.isnan(float(low_share)):
        values[SHARE_KEY] = float(low_share)
    if not math.isnan(float(denoised_loss)):
        values[DENOISED_KEY] = float(denoised_loss)
    if not math.isnan(float(prediction_changes)):
        values[PREDICTION_CHANGES_KEY] = float(prediction_changes)
    if not math.isnan(float(denoised_agreement)):
        values[AGREEMENT_KEY] = float(denoised_agreement)
    if prefix != DEFAULT_PREFIX:
        values = {with_prefix(key, prefix): value for key, value in values.items()}
    return values
