"""``FrequencyPrincipleMonitor``: watch a network learn from low to high frequency, every epoch, in TensorBoard."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from fp_lightning.callbacks._compat import CALLBACK_BASES, rank_zero_info, rank_zero_warn
from fp_lightning.callbacks.history import FrequencyHistory
from fp_lightning.callbacks.panels import PanelWriter, delta_key
from fp_lightning.callbacks.probe_set import ProbeSet, sample_probe_set, shard_slice
from fp_lightning.functional.projection import PrincipalProjection
from fp_lightning.functional.targets import validate_output_transform
from fp_lightning.functional.theory import low_frequency_share
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError

__all__ = ["FrequencyPrincipleMonitor"]

#: ``filter_precision`` values (plain strings, so that YAML configs can set them) and their dtypes.
_FILTER_DTYPES = {"float32": torch.float32, "float64": torch.float64}

HISTORY_FILE = "fp_history.npz"


class FrequencyPrincipleMonitor(*CALLBACK_BASES):
    """Measure, every ``every_n_epochs`` epochs, how well the model fits each frequency of its training targets.

    On a fixed probe set of training samples it computes Δ_F(k) at the tracked frequencies of the projected
    spectrum, e_low / e_high per Gaussian filter width δ, and the loss split L_low / L_high with the low share of
    its recent decrease; it logs them under ``fp/...`` (see README), draws TensorBoard panels and keeps a history.

    Convention:
        As in ``fp_lightning.functional``: projection on the probe inputs' first principal direction rescaled to
        [0, 1]; F[v](k) = Σ_j v_j exp(−2πi k x_j), k = 0..n_freqs−1; Δ_F(k) = ‖F[y](k) − F[h](k)‖ / ‖F[y](k)‖;
        G_δ(u) = exp(−‖u‖²/(2δ)); integer labels → one-hot and softmax outputs under ``output_transform="auto"``.
        Epoch 0 in the history and the panels is the model before its first training step.

    Args:
        probe_size: training samples in the probe set. 5000 resolves the MNIST/CIFAR spectra up to k ≈ 60, and
            the cached float32 kernels of 3 δ take 150 MB; the whole set is used when it is smaller.
        n_freqs: K, spectrum length. 64 covers the dominant low-frequency peaks of MNIST/CIFAR on the first
            principal direction (paper Fig. 1a) with room for the high ones.
        frequencies: ``"auto"`` (peaks of |F[y]|) or a list of k to track.
        max_freqs: with ``"auto"``, the number of peaks tracked: 8 rows make a readable heatmap.
        deltas: ``"auto"`` (``n_deltas`` scale-free widths from the probe inputs' pairwise distances) or a list.
        n_deltas: number of automatic δ; 3 spans narrow to wide filters and keeps the panels few.
        cutoff: η of the loss split, ``"auto"`` = median tracked frequency.
        share_window: recordings spanned by ``fp/low_share`` (the low share of the loss change over that window).
        output_transform: ``"auto"`` | ``"softmax"`` | ``"sigmoid"`` | ``"identity"`` | a callable (Python only).
        every_n_epochs: measure after every n-th epoch (and once before training).
        log_images: draw the panels to TensorBoard (rank 0, TensorBoardLogger only).
        backend: NUFFT backend (``"auto"``, ``"finufft"``, ``"cufinufft"``, ``"direct"``).
        filter_precision: ``"float32"`` (twice as fast, half the cached memory, e_low/e_high within ~1e-5 of
            float64) or ``"float64"``: working precision of the filter's distances and kernels (sums are float64).
        batch_size: probe samples per forward pass.
        seed: seed of the probe-set draw (a private generator; the global RNG is untouched).
        input_key, target_key: which entries of a dataset item are input and target (positions for tuples,
            names for dicts; ``None`` = 0/1 or the usual names such as ``x``/``y``, ``image``/``label``).
        probe_inputs, probe_targets: a probe set given directly (both or neither), instead of the training data.
        history_file: file name of the saved history in the logger's directory (``None``: do not write).
        strict: raise on a monitoring fault instead of warning and skipping the epoch.

    Example:
        >>> import lightning.pytorch as L
        >>> monitor = FrequencyPrincipleMonitor(probe_size=2000, every_n_epochs=2)
        >>> trainer = L.Trainer(max_epochs=1, callbacks=[monitor], logger=False, enable_progress_bar=False)
    """

    def __init__(
        self,
        probe_size: int = 5000,
        n_freqs: int = 64,
        frequencies: str | Sequence[int] = "auto",
        max_freqs: int = 8,
        deltas: str | Sequence[float] = "auto",
        n_deltas: int = 3,
        cutoff: int | str = "auto",
        share_window: int = 5,
        output_transform: str | Callable[[torch.Tensor], torch.Tensor] = "auto",
        every_n_epochs: int = 1,
        log_images: bool = True,
        backend: str = "auto",
        filter_precision: str = "float32",
        batch_size: int = 1000,
        seed: int = 0,
        input_key: int | str | None = None,
        target_key: int | str | None = None,
        probe_inputs: torch.Tensor | None = None,
        probe_targets: torch.Tensor | None = None,
        history_file: str | None = HISTORY_FILE,
        strict: bool = False,
    ) -> None:
        super().__init__()
        _check_int_at_least("probe_size", probe_size, 2)
        _check_int_at_least("every_n_epochs", every_n_epochs, 1)
        _check_int_at_least("batch_size", batch_size, 1)
        _check_int_at_least("share_window", share_window, 2)
        _check_int_at_least("seed", seed, 0)
        validate_output_transform(output_transform)
        if filter_precision not in _FILTER_DTYPES:
            raise ValueError(f"`filter_precision` must be one of {sorted(_FILTER_DTYPES)}, got {filter_precision!r}.")
        if (probe_inputs is None) != (probe_targets is None):
            raise ValueError("`probe_inputs` and `probe_targets` must be given together (or neither).")
        self.probe_size, self.every_n_epochs, self.batch_size = probe_size, every_n_epochs, batch_size
        self.share_window, self.seed, self.log_images, self.strict = share_window, seed, log_images, strict
        self.input_key, self.target_key, self.history_file = input_key, target_key, history_file
        self._given_probe = _given_probe_set(probe_inputs, probe_targets)
        # The Metrics validate the remaining arguments at construction, so bad values fail here, not mid-run.
        self.spectral = ProjectedSpectralError(n_freqs=n_freqs, frequencies=frequencies, max_freqs=max_freqs,
                                               cutoff=cutoff, backend=backend, output_transform=output_transform,
                                               sync_on_compute=False)
        self.filtering = LowHighFrequencyError(deltas=deltas, n_deltas=n_deltas, output_transform=output_transform,
                                               filter_dtype=_FILTER_DTYPES[filter_precision], sync_on_compute=False)
        self._state_key_args = {"probe_size": probe_size, "n_freqs": n_freqs, "seed": seed}
        self.probe: ProbeSet | None = None
        self._probe_device: tuple[torch.device, torch.Tensor, torch.Tensor] | None = None
        self.history: FrequencyHistory | None = None
        #: seconds spent per recording in each stage: forward, spectrum, filtering, logging (a list of dicts)
        self.timings: list[dict[str, float]] = []
        self._warned: set[str] = set()
        self._panels = PanelWriter()

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint; differs between monitors with different probe sets."""
        return self._generate_state_key(**self._state_key_args)

    # ------------------------------------------------------------------ Lightning hooks (glue only)
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Draw the probe set and record the initial state (epoch 0), unless resuming with a history."""
        self._run_safely("probe set", lambda: self._prepare_probe(trainer))
        if self.probe is None:
            return
        if self.history is None or len(self.history) == 0:
            self._measure_and_log(trainer, pl_module, epoch=0)
        else:
            rank_zero_info(f"FrequencyPrincipleMonitor: resuming with {len(self.history)} recorded epochs.")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Measure after every ``every_n_epochs``-th epoch."""
        completed = trainer.current_epoch + 1
        if self.probe is not None and completed % self.every_n_epochs == 0:
            self._measure_and_log(trainer, pl_module, epoch=completed)

    def state_dict(self) -> dict[str, Any]:
        """The history and the frozen fits (projection, frequencies, δ, cutoff), so a resume continues the panels."""
        if self.history is None:
            return {}
        projection = self.spectral.projection
        return {
            "history": self.history.state_dict(),
            "probe_indices": None if self.probe is None else self.probe.indices.tolist(),
            "projection": None if projection is None else {
                "directions": projection.directions.cpu(), "offset": projection.offset.cpu(),
                "scale": projection.scale.cpu(), "eigenvalues": projection.eigenvalues.cpu()},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history and freeze the same projection, frequencies, δ and cutoff as before."""
        if not state_dict:
            return
        self.history = FrequencyHistory.from_state_dict(state_dict["history"])
        self.spectral.fitted_freqs = torch.tensor(self.history.freqs, dtype=torch.long)
        self.spectral.fitted_cutoff = self.history.cutoff
        self.filtering.fitted_deltas = torch.tensor(self.history.deltas, dtype=torch.float64)
        saved = state_dict.get("projection")
        if saved is not None:
            self.spectral.projection = PrincipalProjection(saved["directions"], saved["offset"], saved["scale"],
                                                           torch.empty(0, saved["directions"].shape[1]),
                                                           saved["eigenvalues"])

    # ------------------------------------------------------------------ steps
    def _prepare_probe(self, trainer: Any) -> None:
        if self.probe is not None:
            return
        if self._given_probe is not None:
            self.probe = self._given_probe
            return
        dataset = _train_dataset(trainer)
        self.probe = sample_probe_set(dataset, self.probe_size, self.seed, self.input_key, self.target_key)
        if len(self.probe) < self.probe_size:
            self._warn_once("small", f"FrequencyPrincipleMonitor: the training set has {len(self.probe)} samples, "
                                     f"fewer than probe_size={self.probe_size}; the probe set uses all of them.")

    def _measure_and_log(self, trainer: Any, pl_module: Any, epoch: int) -> None:
        timing: dict[str, float] = {}
        values = self._run_safely(f"epoch {epoch}", lambda: self._measure(trainer, pl_module, epoch, timing))
        if values:
            with _timed(timing, "logging", pl_module):
                for key, value in values.items():
                    pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=False)
                self._write_outputs(trainer, epoch)
            self.timings.append({"epoch": epoch, **timing})

    def _measure(self, trainer: Any, pl_module: Any, epoch: int, timing: dict[str, float]) -> dict[str, float]:
        assert self.probe is not None
        with _timed(timing, "forward", pl_module):
            outputs = self._probe_outputs(trainer, pl_module)
        inputs, targets = self._probe_on(outputs.device)
        self.spectral.reset()
        self.filtering.reset()
        self.spectral.update(inputs, outputs, targets)
        self.filtering.update(inputs, outputs, targets)
        with _timed(timing, "spectrum", pl_module):
            spectral = _vectors(self.spectral.compute())
        with _timed(timing, "filtering", pl_module):
            # a filtering fault (e.g. a δ that leaves no high-frequency part) must not cost the epoch its Δ_F
            filtering = self._run_safely("filtering", lambda: _vectors(self.filtering.compute()))
        filtering = filtering if filtering is not None else self._missing_filtering()
        history = self._history_for(spectral, filtering)
        low_share = self._low_share(history, float(spectral["loss_low"]), float(spectral["loss_high"]))
        history.append(epoch=epoch, step=trainer.global_step, delta_f=spectral["delta_f"].cpu(),
                       e_low=filtering["e_low"].cpu(), e_high=filtering["e_high"].cpu(),
                       loss_low=float(spectral["loss_low"]), loss_high=float(spectral["loss_high"]),
                       low_share=low_share, output_amplitude=_amplitude(spectral["output_spectrum"]))
        return _logged_values(spectral, filtering, low_share)

    def _probe_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Probe inputs and targets on ``device``, copied there once.

        The analysis runs where the model runs, and no host-to-device transfer sits in the per-epoch path.
        """
        assert self.probe is not None
        if self._probe_device is None or self._probe_device[0] != device:
            self._probe_device = (device, self.probe.inputs.to(device), self.probe.targets.to(device))
        return self._probe_device[1], self._probe_device[2]

    def _missing_filtering(self) -> dict[str, torch.Tensor]:
        """NaN e_low / e_high for a recording whose filtering failed (the history keeps its shape)."""
        fitted = self.filtering.fitted_deltas
        deltas = torch.tensor(self.history.deltas) if self.history is not None else (
            fitted if fitted is not None else torch.empty(0))
        nan = torch.full((len(deltas),), math.nan, dtype=torch.float64)
        return {"e_low": nan, "e_high": nan.clone(), "deltas": deltas.to(torch.float64)}

    def _probe_outputs(self, trainer: Any, pl_module: Any) -> torch.Tensor:
        """The model's outputs on the probe set: this rank's shard in eval() and no_grad, then gathered."""
        assert self.probe is not None
        shard = shard_slice(len(self.probe), trainer.global_rank, trainer.world_size)
        inputs, _ = self._probe_on(_module_device(pl_module))
        local = _forward_in_eval(pl_module, inputs[shard], self.batch_size)
        if trainer.world_size == 1:
            return local
        return _gather_shards(trainer, local, len(self.probe))

    def _history_for(self, spectral: dict[str, torch.Tensor], filtering: dict[str, torch.Tensor]) -> FrequencyHistory:
        if self.history is None:
            self.history = FrequencyHistory(freqs=spectral["freqs"].cpu().tolist(),
                                            deltas=filtering["deltas"].cpu().tolist(),
                                            cutoff=int(spectral["cutoff"]),
                                            target_amplitude=_amplitude(spectral["target_spectrum"]))
        return self.history

    def _low_share(self, history: FrequencyHistory, loss_low: float, loss_high: float) -> float:
        lows = history.records["loss_low"][-(self.share_window - 1):] + [loss_low]
        highs = history.records["loss_high"][-(self.share_window - 1):] + [loss_high]
        return float(low_frequency_share(lows, highs)) if len(lows) >= 2 else math.nan

    def _write_outputs(self, trainer: Any, epoch: int) -> None:
        # trainer.log_dir is a collective (a broadcast) under DDP: every rank must ask, before the rank-0 check.
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero or self.history is None:
            return
        self._run_safely("history file", lambda: self._save_history(folder))
        if self.log_images:
            self._run_safely("TensorBoard panels", lambda: self._write_panels(trainer, epoch))

    def _save_history(self, folder: Path) -> None:
        if self.history_file is not None and self.history is not None:
            self.history.save(folder / self.history_file, meta={"probe_size": len(self.probe or []),
                                                                 "every_n_epochs": self.every_n_epochs})

    def _write_panels(self, trainer: Any, epoch: int) -> None:
        assert self.history is not None
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        self._panels.write(trainer.loggers, self.history, step=trainer.global_step, folder=folder,
                           warn=self._warn_once)

    # ------------------------------------------------------------------ fault handling
    def _run_safely(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action``; on a fault warn once and return None (``strict=True`` re-raises)."""
        try:
            return action()
        except Exception as error:
            if self.strict:
                raise
            # one warning per kind of fault (not per epoch): a diverged run should not flood the log
            kind = what.split()[0]
            self._warn_once(f"{kind}:{type(error).__name__}",
                            f"FrequencyPrincipleMonitor skipped {what}: {type(error).__name__}: "
                            f"{str(error).rstrip('.')}. Training goes on (later epochs with the same fault are "
                            "skipped silently); pass strict=True to raise instead.")
            return None

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)


# ---------------------------------------------------------------------- helpers (no maths, no Lightning state)
def _check_int_at_least(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an int ≥ {minimum}, got {value!r}.")


def _given_probe_set(inputs: torch.Tensor | None, targets: torch.Tensor | None) -> ProbeSet | None:
    if inputs is None or targets is None:
        return None
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ValueError("`probe_inputs` and `probe_targets` must be tensors.")
    if inputs.shape[0] != targets.shape[0] or inputs.shape[0] < 2:
        raise ValueError(f"`probe_inputs` ({inputs.shape[0]}) and `probe_targets` ({targets.shape[0]}) must have "
                         "the same number (≥ 2) of samples.")
    return ProbeSet(inputs, targets, torch.arange(inputs.shape[0]))


def _train_dataset(trainer: Any) -> Any:
    loader = trainer.train_dataloader
    if loader is None and trainer.datamodule is not None:
        loader = trainer.datamodule.train_dataloader()
    dataset = getattr(loader, "dataset", None)
    if dataset is None:
        raise ValueError("no training dataset found (the train dataloader has no `.dataset`); pass `probe_inputs` "
                         "and `probe_targets` to the monitor.")
    return dataset


def _forward_in_eval(module: torch.nn.Module, inputs: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Outputs in eval() and no_grad, batch by batch; each submodule's mode and the RNG state are restored."""
    modes = [(m, m.training) for m in module.modules()]
    device = _module_device(module)
    devices = [device.index or 0] if device.type == "cuda" else []
    outputs = []
    try:
        module.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            for start in range(0, inputs.shape[0], batch_size):
                outputs.append(module(inputs[start:start + batch_size].to(device)))
    finally:
        for submodule, training in modes:
            submodule.training = training
    if not outputs:
        return torch.empty(0)
    return torch.cat(outputs).float() if not outputs[0].is_floating_point() else torch.cat(outputs)


def _module_device(module: torch.nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


def _gather_shards(trainer: Any, local: torch.Tensor, total: int) -> torch.Tensor:
    """Concatenate every rank's shard in rank order (shards padded to equal length for the collective, then cut)."""
    world = trainer.world_size
    sizes = [shard_slice(total, rank, world) for rank in range(world)]
    longest = max(s.stop - s.start for s in sizes)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: local.shape[0]] = local
    gathered = trainer.strategy.all_gather(padded)  # (world, longest, ...)
    return torch.cat([gathered[rank, : s.stop - s.start] for rank, s in enumerate(sizes)])


@contextmanager
def _timed(timing: dict[str, float], stage: str, module: Any) -> Iterator[None]:
    """Add the wall time of the block to ``timing[stage]`` (CUDA work is waited for, so the split is honest)."""
    first = next(module.parameters(), None) if isinstance(module, torch.nn.Module) else None
    cuda = first is not None and first.is_cuda
    start = time.perf_counter()
    try:
        yield
    finally:
        if cuda:
            torch.cuda.synchronize()
        timing[stage] = timing.get(stage, 0.0) + time.perf_counter() - start


def _vectors(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo torchmetrics' squeezing of one-element results (one tracked k or one δ must stay a vector)."""
    vector_keys = ("delta_f", "freqs", "e_low", "e_high", "deltas")
    return {key: value.reshape(-1) if key in vector_keys else value for key, value in values.items()}


def _amplitude(spec: torch.Tensor) -> list[float]:
    amp = spec.abs()
    return (amp.norm(dim=1) if amp.ndim == 2 else amp).cpu().tolist()


def _logged_values(spectral: dict[str, torch.Tensor], filtering: dict[str, torch.Tensor],
                   low_share: float) -> dict[str, float]:
    values = {f"fp/delta_f/k={int(k)}": float(v) for k, v in zip(spectral["freqs"], spectral["delta_f"])}
    for delta, e_low, e_high in zip(filtering["deltas"].tolist(), filtering["e_low"], filtering["e_high"]):
        if math.isnan(float(e_low)):  # filtering skipped this recording
            continue
        values[f"fp/e_low/delta={delta_key(delta)}"] = float(e_low)
        values[f"fp/e_high/delta={delta_key(delta)}"] = float(e_high)
    values["fp/loss_low"] = float(spectral["loss_low"])
    values["fp/loss_high"] = float(spectral["loss_high"])
    if not math.isnan(low_share):
        values["fp/low_share"] = low_share
    return values
