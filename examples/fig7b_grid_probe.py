"""Fig. 7b measured on the whole grid: train on 600 random points, watch Δ_F on all 3000 evenly spaced ones.

``examples/configs/fig7b_random_points.yaml`` trains on 600 points drawn at random from 3000 evenly spaced ones in
[−1, 1], and its monitor measures on those 600 points. Their non-uniform Fourier sums carry a sampling-noise floor
(≈ √n · std(y) ≈ 15 here) that is as large as the staircase's own peaks beyond k ≈ 18, so the high "peaks" of
that spectrum are partly the low-frequency content seen through the random sampling. This script trains the same
config but gives the monitor the 3000 grid points and the staircase there as its probe set
(``probe_inputs`` / ``probe_targets``): a noise-free spectrum with the peaks of Fig. 3 (k = 1, 4, 12, 20, 28, 36),
and Δ_F of the network's function, including between its training points::

    python examples/fig7b_grid_probe.py
    fp-lightning report fp_runs/fig7b_grid_probe      # first epoch with Δ_F < 0.05 per k, Spearman

Extra arguments are LightningCLI overrides, e.g. ``--trainer.max_epochs=500``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.data import evenly_spaced
from fp_lightning.metrics import ProjectedSpectralError

CONFIG = Path(__file__).parent / "configs" / "fig7b_random_points.yaml"


def main(argv: list[str] | None = None) -> None:
    """Train the Fig. 7b config with the monitor's probe set replaced by the whole grid."""
    overrides = sys.argv[1:] if argv is None else argv
    cli = LightningCLI(args=["--config", str(CONFIG), "--trainer.logger.init_args.name=fig7b_grid_probe",
                             *overrides], run=False, save_config_kwargs={"overwrite": True})
    dm = cli.datamodule
    low, high = dm.x_range
    grid = evenly_spaced(low, high, dm.grid_size).unsqueeze(1)
    monitor = FrequencyPrincipleMonitor(every_n_epochs=100, probe_batch_size=3000,
                                        probe_dataloader=(grid.float(), dm.target_function(grid).float()),
                                        spectral=ProjectedSpectralError(n_freqs=40, frequencies=[1, 4, 12, 20, 28, 36]))
    trainer = cli.trainer
    # the config's monitor (on the 600 training points) gives way: both would log the same keys
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, FrequencyPrincipleMonitor)]
    trainer.callbacks.append(monitor)
    trainer.fit(cli.model, datamodule=dm)


if __name__ == "__main__":
    main()
