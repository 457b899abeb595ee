"""Add the Frequency Principle monitor to your own Trainer: ~10 lines (runs offline in about a minute on a CPU).

    python examples/train_mnist_with_monitor.py
    tensorboard --logdir lightning_logs        # fp/... scalars, Δ_F heatmap and spectra under IMAGES
"""

import lightning.pytorch as L

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.data import MNISTDataModule
from fp_lightning.metrics import ProjectedSpectralError
from fp_lightning.models import FullyConnectedNet

if __name__ == "__main__":
    L.seed_everything(0)
    data = MNISTDataModule(batch_size=100, subset_size=5000, download=False)  # the MNIST test split ships inside
    model = FullyConnectedNet(num_outputs=10, loss="cross_entropy", lr=1e-4, init_std=None)
    monitor = FrequencyPrincipleMonitor(probe_size=2000,
                                        spectral=ProjectedSpectralError(frequencies=[1, 2, 4, 8, 16, 32]))
    trainer = L.Trainer(max_epochs=10, callbacks=[monitor])
    trainer.fit(model, datamodule=data)
    print("tracked k:", monitor.history.freqs)
    print("Δ_F at the last epoch:", [round(v, 3) for v in monitor.history.records["delta_f"][-1]])
    print("history file:", f"{trainer.log_dir}/fp_history.npz")
