"""``FrequencyPrincipleMonitor``: watch a network learn from low to high frequency while it trains."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from fp_lightning.callbacks._compat import CALLBACK_BASES, rank_zero_info, rank_zero_warn
from fp_lightning.callbacks.panels import PanelWriter, output_folder, publish_scalars
from fp_lightning.callbacks.probe_forward import (
    ForwardFn,
    callable_features,
    feature_calls_message,
    feature_choice,
    move_batch,
    probe_forward,
    probe_points,
)
from fp_lightning.callbacks.probe_set import (
    ProbeSet,
    draw_probe_set,
    probe_source,
    resumed_stream_probe,
    saved_probe_batch,
    train_loader,
)
from fp_lightning.callbacks.reference_probe import ReferenceProbe
from fp_lightning.functional._validation import check_int, check_key
from fp_lightning.functional.targets import OutputTransform, check_class_dim, validate_output_transform
from fp_lightning.functional.theory import (
    loss_change_ratio,
    loss_density,
    low_frequency_share,
    output_change_ratio,
)
from fp_lightning.metrics import DenoisedLoss, LowHighFrequencyError, PredictionChanges, ProjectedSpectralError
from fp_lightning.record import (
    DENOISED_KEY,
    HISTORY_FILE,
    FrequencyHistory,
    check_name,
    history_file_name,
    key_prefix,
    logged_values,
    with_prefix,
)

__all__ = ["HISTORY_FILE", "FrequencyPrincipleMonitor"]


class FrequencyPrincipleMonitor(ReferenceProbe, *CALLBACK_BASES):
    """Measure, at a fixed cadence, how well the model fits each frequency of its training targets.

    On a fixed probe set of training samples it computes Δ_F(k) at the tracked frequencies of the projected
    spectrum, e_low / e_high per Gaussian filter width δ, and the loss split L_low / L_high with the low share of
    its recent decrease; it logs them under ``fp/...`` to every logger of the Trainer (and to
    ``trainer.callback_metrics``, where ``EarlyStopping`` and ``ModelCheckpoint`` can watch them), draws the panels
    and keeps a history. With a ``name`` (e.g. ``"val"`` on a held-out ``probe_dataloader``) it logs under
    ``fp_<name>/...`` instead, with its own figures, history file and checkpoint state, so that several monitors
    (training and held-out probes) run side by side in one Trainer.

    Convention:
        As in ``fp_lightning.functional``: projection on the probe inputs' first principal direction rescaled to
        [0, 1); F[v](k) = Σ_j v_j exp(−2πi k x_j), k = 0..n_freqs−1; Δ_F(k) = ‖F[y](k) − F[h](k)‖ / ‖F[y](k)‖;
        G_δ(u) = exp(−‖u‖²/(2δ)); integer labels → one-hot and softmax outputs under ``output_transform="auto"``.
        A recording is made before the first training step (epoch 0) and then every ``every_n_epochs`` epochs or
        every ``every_n_train_steps`` optimizer steps; its x axis in every logger is ``trainer.global_step``.
        The probe forward pass follows ``fp_lightning.callbacks.probe_forward`` (precision plugin, equal calls on
        every rank, eval/no_grad, global random state untouched).

    Args:
        probe_size: training samples in the probe set. 5000 resolves the MNIST/CIFAR spectra up to k ≈ 60, and
            the cached float32 kernels of 3 δ take 150 MB; the whole set is used when it is smaller.
        every_n_epochs: record after every n-th training epoch (default 1 unless ``every_n_train_steps`` is set).
        every_n_train_steps: record after every n-th optimizer step instead (single-epoch, streaming or large runs).
        spectral: a configured :class:`~fp_lightning.metrics.ProjectedSpectralError` (``n_freqs``,
            ``frequencies``, ``max_freqs``, ``cutoff``, ``backend``, ``share_window``); ``None``: its defaults; or
            another ``FrequencyPrincipleMonitor`` of the same Trainer (the *reference*, e.g. the one on the training
            probe): this monitor then uses its settings and, once it has fitted them, its projection (direction,
            offset and scale), tracked frequencies and cutoff η, and with ``filtering=None`` its filter widths δ,
            so that Δ_F(k) on both probes is comparable k by k; it also logs the gap
            ``fp_<name>/delta_f_gap/k=<k>`` = its Δ_F(k) minus the reference's at the same recording, and draws
            the generalization panel (both Δ_F heatmaps and the gap).
        filtering: a configured :class:`~fp_lightning.metrics.LowHighFrequencyError` (``deltas``, ``n_deltas``,
            ``filter_precision``, ``input_components``); ``None``: its defaults.
        denoised_loss: log ``fp/denoised_loss``, the loss of the probe outputs against leave-one-out low-pass
            labels (a validation-free score for ``EarlyStopping``/``ModelCheckpoint``, ``mode="min"``; see
            :class:`~fp_lightning.DenoisedLoss` and docs/early_stopping.md): ``True`` (default settings, in the
            space of the projection and filter), ``False``, or a configured ``DenoisedLoss``. Its labels are
            computed once, at the first recording, and frozen, from the filter's cached distances when both see
            the same inputs in the same precision (``True`` takes the filter's ``filter_precision``).
        Classifiers (integer labels) also get ``fp/prediction_changes``, the share of probe predictions whose
        class changed since the previous recording (Label Wave's signal, :class:`~fp_lightning.metrics.
        PredictionChanges`; absent at the first recording, which has nothing to compare with), and, with the
        denoised score, ``fp/denoised_agreement``, the chance-corrected agreement (a − 1/C) / (1 − 1/C) of the
        denoised classes with the labels (what ``FrequencyEarlyStopping.recommended()`` chooses its criterion by).
        output_transform: ``"auto"`` | ``"softmax"`` | ``"sigmoid"`` | ``"identity"`` | a callable (Python only).
        class_dim: the class axis of the outputs for class targets: 1 (torch's ``cross_entropy``: (n, C),
            (n, C, T), (n, C, H, W) logits) or -1 for (n, T, C) logits with (n, T) labels.
        ignore_index: integer class labels left out of every quantity (default -100, as torch's
            ``CrossEntropyLoss`` and HF; 255 for void pixels in many segmentation sets; ``None``: all count).
            These three configure every Metric of the monitor, given ones included.
        input_key, target_key: which entries of a (collated) batch are input and target (positions for tuples,
            names for dicts or attributes; ``None`` = 0/1 or the usual names such as ``x``/``y``, ``image``/``label``).
        output_key: which part of the model's output is compared with the targets when ``forward`` returns a tuple,
            dict or ``ModelOutput`` (position or name; ``None``: the tensor, ``logits``, or the first tensor).
        input_features: the space of the projection and the Gaussian filter when the inputs are not points in a
            vector space (token ids, graphs): the name of a submodule whose output on the probe is used (e.g.
            ``"embedding"``; its first call per forward, or call i with ``("embedding", i)``), or a callable
            ``inputs -> (n, d) tensor``. Computed once, at the first recording, and frozen, so every recording uses
            the same frequency axis.
        forward_fn: ``forward_fn(module, batch) -> outputs`` to run the model on a probe batch (as the train
            DataLoader collates it) when the default call is not how it runs (Python only). The default:
            ``module(**fields)`` for a dict or object batch whose fields ``forward`` names (HF, torch_geometric),
            else ``module(inputs)``.
        probe_dataloader: where the probe set comes from: ``None`` (the training data), a DataLoader or Dataset
            (a fixed or held-out set; its ``collate_fn`` builds the probe batch), an ``(inputs, targets)`` pair of
            tensors (the probe set itself), or the key (name or position) of one of several train dataloaders.
        probe_batch_size: probe samples per forward call.
        probe_seed: seed of the probe-set draw (a private generator; the global RNG is untouched).
        log_images: draw the panels for the loggers (rank 0): TensorBoard, W&B, MLflow, else PNG files.
        history_file: where the history is saved (``None``: not at all). A file name goes in the run folder: the
            logger's folder, else the Trainer's ``default_root_dir`` when one was given (with neither, nothing is
            written); a path with a folder (``"runs/a/fp_history.npz"``) puts it, the PNG panels and
            ``fp_report.png`` in that folder.
        strict: raise on a monitoring fault instead of warning and skipping the recording.
        name: ``None`` (keys ``fp/...``, history ``fp_history.npz``) or a word such as ``"val"``: keys
            ``fp_val/...`` (TensorBoard groups scalars by the part before the first slash), figure tags
            ``fp_val/...``, history ``fp_val_history.npz``, report ``fp_val_report.png``; messages say
            "on the 'val' probe". It is part of :attr:`state_key`.

    Example:
        >>> import lightning.pytorch as L
        >>> from fp_lightning.metrics import ProjectedSpectralError
        >>> monitor = FrequencyPrincipleMonitor(probe_size=2000, every_n_epochs=2,
        ...                                     spectral=ProjectedSpectralError(n_freqs=32, max_freqs=6))
        >>> trainer = L.Trainer(max_epochs=1, callbacks=[monitor], logger=False, enable_progress_bar=False)
    """

    def __init__(
        self,
        probe_size: int = 5000,
        every_n_epochs: int | None = None,
        every_n_train_steps: int | None = None,
        spectral: ProjectedSpectralError | FrequencyPrincipleMonitor | None = None,
        filtering: LowHighFrequencyError | None = None,
        denoised_loss: bool | DenoisedLoss = True,
        output_transform: OutputTransform = "auto",
        class_dim: int = 1,
        ignore_index: int | None = -100,
        input_key: int | str | None = None,
        target_key: int | str | None = None,
        output_key: int | str | None = None,
        input_features: str | tuple[str, int] | Callable[[Any], torch.Tensor] | None = None,
        forward_fn: ForwardFn | None = None,
        probe_dataloader: Any = None,
        probe_batch_size: int = 1000,
        probe_seed: int = 0,
        log_images: bool = True,
        history_file: str | os.PathLike[str] | None = HISTORY_FILE,
        strict: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.name = check_name(name)
        self.prefix = key_prefix(self.name)
        check_int("probe_size", probe_size, 2)
        check_int("probe_batch_size", probe_batch_size, 1)
        check_int("probe_seed", probe_seed, 0)
        self.every_n_epochs, self.every_n_train_steps = _cadence(every_n_epochs, every_n_train_steps)
        validate_output_transform(output_transform)
        for name, key in (("input_key", input_key), ("target_key", target_key), ("output_key", output_key)):
            check_key(name, key)
        if forward_fn is not None and not callable(forward_fn):
            raise ValueError(f"`forward_fn` must be None or a callable (module, batch) -> outputs, got {forward_fn!r}.")
        self._feature_name, self._feature_call = feature_choice(input_features)
        self.probe_dataloader, self.train_dataloader_key, self._given_probe = probe_source(probe_dataloader)
        self.probe_size, self.probe_batch_size, self.probe_seed = probe_size, probe_batch_size, probe_seed
        self.log_images, self.strict = log_images, strict
        self.input_key, self.target_key, self.output_key = input_key, target_key, output_key
        self.forward_fn, self.input_features = forward_fn, input_features
        self.output_dir, self.history_file = _history_location(history_file, self.name)
        self.reference, spectral = _reference(spectral)
        comparison = {"output_transform": output_transform, "class_dim": class_dim, "ignore_index": ignore_index}
        self.spectral = _configured(spectral, ProjectedSpectralError, "spectral", comparison)
        # both metrics resolve "auto" on the same samples to the same choice; the user is told once
        self.filtering = _configured(filtering, LowHighFrequencyError, "filtering", comparison)
        self.filtering.warn_auto_choice = False
        self._shares_deltas = filtering is None  # δ of the reference, when there is one
        self.denoised = None if denoised_loss is False else _configured(
            DenoisedLoss(filter_precision=self.filtering.filter_precision) if denoised_loss is True else denoised_loss,
            DenoisedLoss, "denoised_loss", comparison)
        if self.denoised is not None:
            self.denoised.warn_auto_choice = False
            self.denoised.warn_low_agreement = False  # said by the monitor, which knows whether anyone watches
            self.denoised.bank_source = self.filtering.filter_bank_for  # one distance pass serves both Metrics
        self.share_window = self.spectral.share_window
        # unfitted copies: a new fit without a checkpoint starts from these (new data, new projection)
        self._fresh_metrics = copy.deepcopy((self.spectral, self.filtering, self.denoised))
        self._fresh_changes = PredictionChanges(class_dim=class_dim, ignore_index=ignore_index, sync_on_compute=False)
        self._state_key_args = {"probe_size": probe_size, "n_freqs": self.spectral.n_freqs, "seed": probe_seed}
        # only when not the defaults, so that the key of an unnamed monitor on the training data stays as it was
        source = self._source = _source_description(probe_dataloader)
        self._state_key_args.update({**({} if self.name is None else {"name": self.name}),
                                     **({} if source is None else {"probe": source})})
        #: seconds spent per recording in each stage: forward, spectrum, filtering, logging (a list of dicts)
        self.timings: list[dict[str, float]] = []
        #: called as ``listener(trainer, pl_module)`` after every recording (``FrequencyEarlyStopping`` decides there)
        self.listeners: list[Callable[[Any, Any], None]] = []
        self._panels = PanelWriter()
        self._start_fresh()

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint; differs between monitors with different probe sets.

        It holds ``probe_size``, ``n_freqs``, ``probe_seed``, the ``name`` when there is one and the probe source
        when it is not the training data (its kind and length, or the train dataloader's key), so two monitors
        with equal settings on different probes, or with different names, keep their own state.
        """
        return self._generate_state_key(**self._state_key_args)

    @property
    def label(self) -> str:
        """How messages name this monitor: ``FrequencyPrincipleMonitor`` (+ ``on the '<name>' probe``)."""
        return "FrequencyPrincipleMonitor" + ("" if self.name is None else f" on the '{self.name}' probe")

    def __getstate__(self) -> dict[str, Any]:
        # a copy (``ddp_spawn``, ``copy.deepcopy``, pickle) keeps the history and fits; it drops the probe's device
        # copy and the loader's collate function (a user's lambda would not pickle)
        state = dict(self.__dict__)
        state["_device_probe"] = None
        if state.get("probe") is not None:
            state["probe"] = state["probe"].without_samples()
        return state

    # ------------------------------------------------------------------ Lightning hooks (glue only)
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """A new ``fit`` starts a fresh history and probe set; a checkpoint's state, if any, is loaded after this."""
        if stage == "fit":
            self._start_fresh()
            self._attach_reference(trainer)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Draw the probe set and record the initial state (epoch 0), unless resuming with a history."""
        self._folder = output_folder(trainer, self.output_dir)  # a collective under DDP: asked once, on every rank
        self._run_safely("probe set", lambda: self._prepare_probe(trainer))
        if self.probe is None:
            return
        if self.history is None or len(self.history) == 0:
            self._record_when_ready(trainer, pl_module, epoch=trainer.current_epoch)
        else:
            rank_zero_info(f"{self.label}: resuming with {len(self.history)} recordings.")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Record after every ``every_n_train_steps``-th optimizer step (once per step under accumulation)."""
        steps, step = self.every_n_train_steps, trainer.global_step
        if steps is not None and self.probe is not None and step % steps == 0 and step != self._last_step:
            self._record_when_ready(trainer, pl_module, epoch=trainer.current_epoch)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Record after every ``every_n_epochs``-th epoch."""
        completed = trainer.current_epoch + 1
        if self.every_n_epochs is not None and self.probe is not None and completed % self.every_n_epochs == 0:
            self._record_when_ready(trainer, pl_module, epoch=completed)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        """Write the latest panels as PNG files (for loggers without images) and ``fp_report.png``."""
        if not trainer.is_global_zero or self.history is None or trainer.fast_dev_run:
            return
        if self.log_images:
            self._run_safely("panels", lambda: self._panels.write_files(trainer.loggers, self.history, self._folder,
                                                                        warn=self._figure_fault,
                                                                        **self._figure_options()))
        if self._history_path() is not None:
            self._run_safely("report", lambda: self._panels.write_report(self._history_path(), self._folder,
                                                                         self._reference_history_path()))

    def state_dict(self) -> dict[str, Any]:
        """The history, the probe set's identity and the frozen fits (projection, frequencies, δ, cutoff, features).

        Plain containers and tensors only, so checkpoints load with ``weights_only=True``.
        """
        if self.history is None:
            return {}
        return {
            "history": self.history.state_dict(),
            "probe_indices": None if self.probe is None else self.probe.indices.tolist(),
            "probe_batch": saved_probe_batch(self.probe),
            "features": None if self._features is None else self._features.cpu(),
            # the Metrics' own state: their frozen fits and "auto" choice (the sample lists are not persistent)
            "spectral": _cpu_state(self.spectral.state_dict()),
            "filtering": _cpu_state(self.filtering.state_dict()),
            "denoised": None if self.denoised is None else _cpu_state(self.denoised.state_dict()),
            # F[h] of the last recording: the first recording after a resume needs it for Eq. (40)
            "last_output_spectrum": self._last_output_spectrum,
            # the previous recording's predicted classes: a resumed run continues fp/prediction_changes
            "prediction_changes": _cpu_state(self.changes.state_dict()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history and freeze the same projection, frequencies, δ, cutoff and probe set as before."""
        if not state_dict:
            return
        self.history = FrequencyHistory.from_state_dict(state_dict["history"])
        self._saved_probe = (state_dict.get("probe_indices"), state_dict.get("probe_batch"))
        self._features = state_dict.get("features")
        self._last_output_spectrum = state_dict.get("last_output_spectrum")
        self.spectral.load_state_dict(state_dict["spectral"])
        self.filtering.load_state_dict(state_dict["filtering"])
        if self.denoised is not None and state_dict.get("denoised"):  # a checkpoint without it fits the labels anew
            self.denoised.load_state_dict(state_dict["denoised"])
        if state_dict.get("prediction_changes"):  # (older checkpoints: the count starts again, NaN once)
            self.changes.load_state_dict(state_dict["prediction_changes"])

    # ------------------------------------------------------------------ run state
    def _start_fresh(self) -> None:
        """Forget the probe set, the history and every frozen fit (a new ``fit`` without a checkpoint)."""
        self.spectral, self.filtering, self.denoised = copy.deepcopy(self._fresh_metrics)
        self.changes = copy.deepcopy(self._fresh_changes)
        self.probe: ProbeSet | None = None
        self.history: FrequencyHistory | None = None
        self._device_probe: tuple[torch.device, Any, torch.Tensor] | None = None
        self._features: torch.Tensor | None = None
        self._last_output_spectrum: torch.Tensor | None = None
        self._saved_probe: tuple[list[int] | None, Any] = (None, None)
        self._folder: Path | None = None
        self._last_step = -1
        self._warned: set[str] = set()
        self._pending_epoch: int | None = None  # a recording waiting for the reference's first fit
        self._gap_step = -1  # the global step whose gap was published last
        self._panels.reset()

    def _prepare_probe(self, trainer: Any) -> None:
        if self.probe is not None:
            return
        saved_indices, saved_batch = self._saved_probe
        if self._given_probe is not None:
            self.probe = self._given_probe
        elif saved_batch is not None:  # a resumed stream: the same samples as before, not a new draw
            self.probe = resumed_stream_probe(saved_batch, saved_indices, self.input_key, self.target_key)
        else:
            source = (self.probe_dataloader if self.probe_dataloader is not None
                      else train_loader(trainer, self.train_dataloader_key))
            self.probe = draw_probe_set(trainer, source, self.probe_size, self.probe_seed, self.input_key,
                                        self.target_key)
        if saved_indices is not None and self.probe.indices.tolist() != list(saved_indices):
            self._warn_once("resume", f"{self.label}: the resumed run's probe set differs from the one in the "
                                      "checkpoint (another dataset, `probe_seed` or `probe_size`?); the history goes "
                                      "on with the new probe set.")
        if len(self.probe) < self.probe_size and self._given_probe is None and self.probe_dataloader is None:
            # a given `probe_dataloader` is used whole, as asked: nothing to warn about
            self._warn_once("small", f"{self.label}: the training data has {len(self.probe)} samples, fewer than "
                                     f"probe_size={self.probe_size}; the probe set uses all of them.")

    # ------------------------------------------------------------------ one recording
    def _record(self, trainer: Any, pl_module: Any, epoch: int) -> None:
        self._last_step = trainer.global_step
        timing: dict[str, float] = {}
        what = f"epoch {epoch}" if self.every_n_train_steps is None else f"step {trainer.global_step}"
        values = self._run_safely(what, lambda: self._measure(trainer, pl_module, epoch, timing))
        if values:
            with _timed(timing, "logging", pl_module):
                publish_scalars(trainer, values)
                self._publish_gap(trainer)
                self._write_outputs(trainer)
            self.timings.append({"epoch": epoch, "step": trainer.global_step, **timing})
        for listener in self.listeners:
            listener(trainer, pl_module)

    def _measure(self, trainer: Any, pl_module: Any, epoch: int, timing: dict[str, float]) -> dict[str, float]:
        assert self.probe is not None
        batch, targets = self._probe_on(pl_module.device)
        with _timed(timing, "forward", pl_module):
            result = probe_forward(trainer, pl_module, self.probe, batch, batch_size=self.probe_batch_size,
                                   output_key=self.output_key, forward_fn=self.forward_fn,
                                   feature_layer=self._feature_layer(), feature_call=self._feature_call)
            message = feature_calls_message(self._feature_name, self._feature_call, result.feature_calls)
            if message is not None:
                self._warn_once("feature calls", message)
            inputs = self._analysis_inputs(batch, result.features, result.outputs.device)
        outputs = result.outputs
        self._adopt_reference_frame()
        self.spectral.reset()
        self.filtering.reset()
        self.spectral.update(inputs, outputs, targets)
        self.filtering.update(inputs, outputs, targets)
        with _timed(timing, "spectrum", pl_module):
            spectral = _vectors(self.spectral.compute())
        with _timed(timing, "filtering", pl_module):
            # a filtering fault (e.g. a δ that leaves no high-frequency part) must not cost the recording its Δ_F
            filtering = self._run_safely("filtering", lambda: _vectors(self.filtering.compute()))
        filtering = filtering if filtering is not None else self._missing_filtering()
        with _timed(timing, "denoised", pl_module):
            denoised = self._denoised_loss(trainer, inputs, outputs, targets)
        with _timed(timing, "changes", pl_module):
            changes = self._prediction_changes(outputs, targets)
        agreement = self._agreement()
        history = self._history_for(spectral, filtering)
        low_share = self._low_share(history, float(spectral["loss_low"]), float(spectral["loss_high"]))
        ratios = self._change_ratios(history, spectral["target_spectrum"], spectral["output_spectrum"])
        history.append(epoch=epoch, step=trainer.global_step, delta_f=spectral["delta_f"].cpu(),
                       e_low=filtering["e_low"].cpu(), e_high=filtering["e_high"].cpu(),
                       loss_low=float(spectral["loss_low"]), loss_high=float(spectral["loss_high"]),
                       low_share=low_share, output_amplitude=_amplitude(spectral["output_spectrum"]),
                       denoised_loss=denoised, prediction_changes=changes, denoised_agreement=agreement, **ratios)
        return logged_values(spectral["freqs"].tolist(), spectral["delta_f"].tolist(), filtering["deltas"].tolist(),
                             filtering["e_low"].tolist(), filtering["e_high"].tolist(), float(spectral["loss_low"]),
                             float(spectral["loss_high"]), low_share, denoised, changes, agreement,
                             prefix=self.prefix)

    def _prediction_changes(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """``fp/prediction_changes`` of this recording; NaN for targets that are not class labels, or the first."""
        if targets.is_floating_point() or outputs.ndim != targets.ndim + 1:
            return math.nan
        self.changes.reset()
        self.changes.update(outputs, targets)
        value = self._run_safely("prediction changes", lambda: float(self.changes.compute()))
        return math.nan if value is None else value

    def _agreement(self) -> float:
        """``fp/denoised_agreement``: (a − 1/C) / (1 − 1/C) of the frozen denoised labels; NaN when not known."""
        denoised = self.denoised
        if denoised is None or denoised.label_agreement is None or not denoised._classes:
            return math.nan
        chance = 1.0 / denoised._classes
        return (denoised.label_agreement - chance) / (1.0 - chance)

    def _denoised_loss(self, trainer: Any, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        """``fp/denoised_loss`` of this recording; NaN when it is off or failed (the recording keeps the rest)."""
        if self.denoised is None:
            return math.nan
        if outputs.ndim > 2 or targets.ndim > 2:
            # per-position targets (segmentation, tagging): the score smooths one label per sample
            if "denoised" not in self._warned:  # said once, as information: nothing is wrong with the run
                self._warned.add("denoised")
                rank_zero_info(f"{self.label}: {self._key(DENOISED_KEY)} needs one target per sample (targets "
                               f"{tuple(targets.shape)}, outputs {tuple(outputs.shape)}); it is not logged.")
            return math.nan
        self.denoised.reset()
        self.denoised.update(inputs, outputs, targets)
        value = self._run_safely("denoised loss", lambda: float(self.denoised.compute()["denoised_loss"]))
        self._tell_agreement(trainer)
        return math.nan if value is None else value

    def _tell_agreement(self, trainer: Any) -> None:
        """Once per fit: a warning when a callback watches a score whose labels barely agree, else information."""
        if self.denoised is None or "agreement" in self._warned or not self.denoised.agreement_is_low():
            return
        self._warned.add("agreement")
        message = f"{self.label}: {self._key(DENOISED_KEY)}: {self.denoised.agreement_message()}"
        if _watches_denoised_loss(trainer, self):
            rank_zero_warn(message)
        else:
            rank_zero_info(message)

    def _probe_on(self, device: torch.device) -> tuple[Any, torch.Tensor]:
        """The probe batch and targets on ``device``, copied there once (no host-to-device copy per recording)."""
        assert self.probe is not None
        if self._device_probe is None or self._device_probe[0] != device:
            self._device_probe = (device, move_batch(self.probe.batch, device), self.probe.targets.to(device))
        return self._device_probe[1], self._device_probe[2]

    def _feature_layer(self) -> str | None:
        """The submodule to capture features from, while the features are not frozen yet."""
        return self._feature_name if self._features is None else None

    def _analysis_inputs(self, batch: Any, captured: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """The points of the projection and the filter: the probe inputs, or their frozen ``input_features``."""
        assert self.probe is not None
        if self.input_features is None:
            return probe_points(self.probe, batch, self._warn_once)
        if self._features is None:
            self._features = captured if captured is not None else callable_features(
                self.input_features, self.probe, batch, self.probe_batch_size)
        return self._features.to(device)

    def _missing_filtering(self) -> dict[str, torch.Tensor]:
        """NaN e_low / e_high for a recording whose filtering failed (the history keeps its shape)."""
        fitted = self.filtering.fitted_deltas
        deltas = torch.tensor(self.history.deltas) if self.history is not None else (
            fitted if fitted is not None else torch.empty(0))
        nan = torch.full((len(deltas),), math.nan, dtype=torch.float64)
        return {"e_low": nan, "e_high": nan.clone(), "deltas": deltas.to(torch.float64)}

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

    def _change_ratios(self, history: FrequencyHistory, target_spec: torch.Tensor,
                       output_spec: torch.Tensor) -> dict[str, list[float]]:
        """The theory paper's curves over every cutoff η, from the spectra this recording computed anyway.

        ``loss_change_ratio`` against the previous recording (Eq. (38)), ``window_change_ratio`` over the last
        ``share_window`` recordings (Eq. (39)) and ``output_change_ratio`` (Eq. (40)); NaN while no earlier
        recording (or, after a resume from an older checkpoint, no earlier density) exists.
        """
        density = loss_density(target_spec, output_spec).cpu()
        output_spec = output_spec.detach().cpu()
        nan = [math.nan] * (density.shape[0] - 1)
        earlier = [row for row in history.records["loss_density"][-(self.share_window - 1):]
                   if not any(math.isnan(v) for v in row)]
        previous, self._last_output_spectrum = self._last_output_spectrum, output_spec
        return {
            "loss_density": density.tolist(),
            "loss_change_ratio": loss_change_ratio([earlier[-1], density.tolist()]).tolist() if earlier else nan,
            "window_change_ratio": loss_change_ratio([*earlier, density.tolist()]).tolist() if earlier else nan,
            "output_change_ratio": (output_change_ratio(previous, output_spec).tolist()
                                    if previous is not None and previous.shape == output_spec.shape else nan),
        }

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self, trainer: Any) -> None:
        if not trainer.is_global_zero or self.history is None or trainer.fast_dev_run:
            return
        path = self._history_path()
        if path is not None:
            self._run_safely("history file", lambda: self.history.save(path, meta=self._history_meta()))
        if self.log_images:
            self._run_safely("panels", lambda: self._panels.write(trainer.loggers, self.history,
                                                                  step=trainer.global_step, folder=self._folder,
                                                                  warn=self._figure_fault, files=False,
                                                                  layout=lambda: _merged_layout(trainer),
                                                                  **self._figure_options()))

    def _figure_options(self) -> dict[str, Any]:
        """The tag prefix, the reference's history (generalization panel) and the label of every figure."""
        reference = self.reference
        return {"prefix": self.prefix, "label": self.label, "names": self._probe_names(),
                "reference": None if reference is None else reference.history}

    def _probe_names(self) -> tuple[str, str]:
        """How figures name (this probe, the reference's probe)."""
        reference = self.reference
        theirs = "" if reference is None else (reference.name or "training")
        return self.name or "training", theirs

    def _key(self, key: str) -> str:
        """One of ``record``'s keys under this monitor's prefix."""
        return with_prefix(key, self.prefix)

    def _history_meta(self) -> dict[str, Any]:
        cadence = ({"every_n_epochs": self.every_n_epochs} if self.every_n_train_steps is None
                   else {"every_n_train_steps": self.every_n_train_steps})
        meta: dict[str, Any] = {"probe_size": len(self.probe or []), **cadence, "prefix": self.prefix,
                                "probe": self._source or "training data"}
        if self.name is not None:
            meta["name"] = self.name
        reference = self.reference
        if reference is not None:  # where the generalization panel finds the other probe's history
            meta["reference_prefix"] = reference.prefix
            if reference.history_file is not None:
                meta["reference_history"] = reference.history_file
        agreement = None if self.denoised is None else self.denoised.label_agreement
        if agreement is not None:  # how far fp/denoised_loss can be trusted (docs/early_stopping.md)
            meta["denoised_label_agreement"] = agreement
        return meta

    def _history_path(self) -> Path | None:
        if self._folder is None or self.history_file is None:
            return None
        return self._folder / self.history_file

    # ------------------------------------------------------------------ fault handling
    def _run_safely(self, what: str, action: Callable[[], Any]) -> Any:
        """Run ``action``; on a fault warn once and return None (``strict=True`` re-raises)."""
        try:
            return action()
        except Exception as error:
            if self.strict:
                raise
            # one warning per kind of fault (not per recording): a diverged run should not flood the log
            kind = what.split()[0]
            self._warn_once(f"{kind}:{type(error).__name__}",
                            f"{self.label} skipped {what}: {type(error).__name__}: "
                            f"{str(error).rstrip('.')}. Training goes on (later recordings with the same fault are "
                            "skipped silently); pass strict=True to raise instead.")
            return None

    def _figure_fault(self, key: str, message: str) -> None:
        """A logger that could not take its figures: one warning (``strict=True`` raises)."""
        if self.strict:
            raise RuntimeError(message)
        self._warn_once(key, message)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            # messages built elsewhere (probe forward, figures) start with the class name: say which probe
            if self.name is not None and message.startswith("FrequencyPrincipleMonitor") and \
                    not message.startswith(self.label):
                message = self.label + message[len("FrequencyPrincipleMonitor"):]
            rank_zero_warn(message)


# ---------------------------------------------------------------------- helpers (no maths, no Lightning state)
def _configured(given: Any, kind: type, name: str, comparison: dict[str, Any]) -> Any:
    """A copy of the given Metric (or a default one) with the monitor's way of comparing outputs and targets.

    ``output_transform``, ``class_dim`` and ``ignore_index`` are the monitor's, for every Metric it uses, so that
    Δ_F, e_low / e_high and the denoised score compare the same things.
    """
    if given is None:
        return kind(**comparison, sync_on_compute=False)
    if not isinstance(given, kind):
        raise ValueError(f"`{name}` must be a {kind.__name__} (or None for the default), got {given!r}.")
    metric = copy.deepcopy(given)
    metric.output_transform = comparison["output_transform"]
    metric.class_dim = check_class_dim(comparison["class_dim"])
    metric.ignore_index = comparison["ignore_index"]
    # every rank measures the whole probe set already; torchmetrics reads ``_to_sync`` at compute
    metric.sync_on_compute = metric._to_sync = False
    return metric


def _watches_denoised_loss(trainer: Any, monitor: FrequencyPrincipleMonitor) -> bool:
    """Whether a callback of the Trainer decides on this monitor's ``fp/denoised_loss`` (EarlyStopping, ...)."""
    key = with_prefix(DENOISED_KEY, monitor.prefix)
    for callback in getattr(trainer, "callbacks", []):
        if getattr(callback, "monitor", None) == key:
            return True
        rule = getattr(callback, "rule", None)
        if getattr(rule, "denoised_patience", None) is not None and \
                getattr(callback, "monitor_name", None) == monitor.name:
            return True
    return False


def _history_location(history_file: str | os.PathLike[str] | None, name: str | None) -> tuple[Path | None, str | None]:
    """(the folder of the monitor's files, ``None`` = the run folder; the history's file name) of ``history_file``.

    A named monitor writes next to an unnamed one, so the default name becomes ``fp_<name>_history.npz``.
    """
    if history_file is None:
        return None, None
    if not isinstance(history_file, (str, os.PathLike)) or not str(history_file).endswith(".npz"):
        raise ValueError(f"`history_file` must be None or a path ending in .npz, got {history_file!r}.")
    path = Path(history_file)
    file = history_file_name(name) if str(history_file) == HISTORY_FILE else path.name
    return (None if path.parent == Path(".") else path.parent), file


def _reference(spectral: Any) -> tuple[FrequencyPrincipleMonitor | None, ProjectedSpectralError | None]:
    """``spectral`` as (a reference monitor, the spectral settings to copy): a monitor gives both."""
    if isinstance(spectral, FrequencyPrincipleMonitor):
        return spectral, spectral._fresh_metrics[0]
    return None, spectral


def _source_description(probe_dataloader: Any) -> str | None:
    """A stable description of where a probe set comes from (``None``: the first train dataloader).

    Used in the ``state_key`` and the history's ``meta``, so it names the kind and size of the source, never an
    object's address (a resumed run must find the same key).
    """
    if probe_dataloader is None:
        return None
    if isinstance(probe_dataloader, (str, int)) and not isinstance(probe_dataloader, bool):
        return f"train dataloader {probe_dataloader!r}"
    if isinstance(probe_dataloader, tuple) and all(isinstance(v, torch.Tensor) for v in probe_dataloader):
        return f"(inputs, targets) tensors of {probe_dataloader[0].shape[0]} samples"
    dataset = getattr(probe_dataloader, "dataset", probe_dataloader)
    try:
        size = f" of {len(dataset)} samples"
    except TypeError:  # an iterable dataset
        size = ""
    return f"{type(dataset).__name__}{size}"


def _merged_layout(trainer: Any) -> dict[str, Any]:
    """TensorBoard's custom-scalars layout of every monitor of the Trainer that has recorded (one per run)."""
    from fp_lightning.callbacks.panels import monitor_layout

    layout: dict[str, Any] = {}
    monitors = [cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, FrequencyPrincipleMonitor)]
    for monitor in sorted(monitors, key=lambda cb: cb.prefix):  # fp first, then fp_<name> in order
        if monitor.history is not None:
            layout.update(monitor_layout(monitor.history, monitor.prefix, gap=monitor.reference is not None))
    return layout


def _cadence(every_n_epochs: int | None, every_n_train_steps: int | None) -> tuple[int | None, int | None]:
    """``(every_n_epochs, every_n_train_steps)``: one of them, as Lightning's ``ModelCheckpoint`` takes them."""
    if every_n_epochs is not None and every_n_train_steps is not None:
        raise ValueError("`every_n_epochs` and `every_n_train_steps` are exclusive; set one of them.")
    if every_n_train_steps is not None:
        check_int("every_n_train_steps", every_n_train_steps, 1)
        return None, every_n_train_steps
    every_n_epochs = 1 if every_n_epochs is None else every_n_epochs
    check_int("every_n_epochs", every_n_epochs, 1)
    return every_n_epochs, None


def _cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    """A Metric's ``state_dict()`` as a plain dict with its tensors on the CPU (loadable with ``weights_only``)."""
    return {key: value.cpu() if isinstance(value, torch.Tensor) else value for key, value in state.items()}


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
