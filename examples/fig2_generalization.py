"""The paper's Fig. 2 as a generalization question: which frequencies carry over to the held-out pixels?

Trains one Fig. 2 config (``examples/configs/fig2_image_small_init.yaml`` or ``..._large_init.yaml``) through
LightningCLI with two monitors side by side: the config's own on the training pixels (the odd columns, keys
``fp/...``) and a held-out one on the even columns (``name="heldout"``, keys ``fp_heldout/...``) that shares the
training monitor's projection, tracked frequencies and filter widths (``spectral=train_monitor``), so that
Δ_F(k) on both probes is compared k by k::

    python examples/fig2_generalization.py examples/configs/fig2_image_small_init.yaml
    python examples/fig2_generalization.py examples/configs/fig2_image_large_init.yaml --trainer.max_time 00:00:40:00
    fp-lightning report fp_runs/fig2_image_small_init   # + fp_heldout_report.png, fp_heldout_generalization.png

Extra arguments go to LightningCLI (``--trainer.max_epochs 500``). At the end it prints, per tracked k, Δ_F on
both probes and their gap at the last recording, and the first global step Δ_F fell below 0.5 on each probe
(:func:`fp_lightning.report.generalization_summary`); the run folder holds both histories and the generalization
page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.report import generalization_summary

#: recordings of both monitors every this many epochs (9 steps each), finer than the configs' 50
EVERY_N_EPOCHS = 25


def held_out_monitor(cli: object, every_n_epochs: int = EVERY_N_EPOCHS) -> tuple[FrequencyPrincipleMonitor,
                                                                                   FrequencyPrincipleMonitor]:
    """The config's training monitor (its cadence set to ``every_n_epochs``) and a held-out twin on the even columns.

    The held-out probe is every held-out pixel, given as an ``(inputs, targets)`` pair of tensors; ``spectral=``
    the training monitor makes it use that monitor's projection, frequencies, cutoff and δ.
    """
    trainer, datamodule = cli.trainer, cli.datamodule  # type: ignore[attr-defined]
    train = next(cb for cb in trainer.callbacks if isinstance(cb, FrequencyPrincipleMonitor))
    train.every_n_epochs = every_n_epochs
    held_out = FrequencyPrincipleMonitor(name="heldout", probe_dataloader=(datamodule.x_test, datamodule.y_test),
                                         probe_size=len(datamodule.x_test), every_n_epochs=every_n_epochs,
                                         spectral=train, probe_seed=0)
    return train, held_out


def main(argv: list[str] | None = None) -> None:
    """Train CONFIG with the training and the held-out monitor; print the generalization summary."""
    from lightning.pytorch.cli import LightningCLI

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    args, overrides = parser.parse_known_args(argv)
    cli = LightningCLI(args=["--config", str(args.config), *overrides], run=False,
                       save_config_kwargs={"overwrite": True})
    train, held_out = held_out_monitor(cli)
    cli.trainer.callbacks.append(held_out)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    folder = Path(cli.trainer.log_dir)
    print(generalization_summary(folder / held_out.history_file, folder / train.history_file))
    print(f"histories and pages in {folder}")


if __name__ == "__main__":
    main()
