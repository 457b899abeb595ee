"""Run by tests/test_monitor_ddp.py: a 2-process CPU DDP fit with the monitor (Lightning re-launches this file)."""

import json
import sys
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fp_lightning import FrequencyEarlyStopping, FrequencyPrincipleMonitor
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from tests._lightning import loader, make_module, regression_data


class RankShardedStream(torch.utils.data.IterableDataset):
    """A user's stream that gives each process its own part (every other sample), as sharded streams do."""

    def __iter__(self):
        x, y = regression_data().tensors
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        return iter(list(zip(x, y))[rank::2])


N_FREQS, DELTAS = 16, [0.02, 0.2]
MONITOR_KW = dict(probe_size=201, spectral=ProjectedSpectralError(n_freqs=N_FREQS),
                  filtering=LowHighFrequencyError(deltas=DELTAS), probe_batch_size=50, strict=True)


def main(out: Path, early_stopping: bool = False) -> None:
    seed_everything(0, verbose=False)
    module = make_module()
    probe_calls = []  # forward calls outside training: the monitor's probe passes
    module.register_forward_hook(lambda m, args, out: probe_calls.append(len(args[0])) if not m.training else None)
    monitor = FrequencyPrincipleMonitor(**MONITOR_KW)
    callbacks = [monitor]
    if early_stopping:  # a threshold every run meets: it must stop both ranks at the same epoch
        callbacks.append(FrequencyEarlyStopping(low_threshold=10.0, patience=2, share_threshold=None,
                                                arm_threshold=None, plateau_rtol=None))
    trainer = Trainer(max_epochs=6 if early_stopping else 2, accelerator="cpu", devices=2, strategy="ddp",
                      callbacks=callbacks, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=out)
    data = torch.utils.data.DataLoader(RankShardedStream(), batch_size=32) if early_stopping else loader(
        regression_data(), shuffle=False)
    trainer.fit(module, data)
    rank = trainer.global_rank
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("fp/")}
    stopper = next((cb for cb in callbacks if isinstance(cb, FrequencyEarlyStopping)), None)
    stop = None if stopper is None else {"epoch": trainer.current_epoch, "stopped_epoch": stopper.stopped_epoch,
                                         "criterion": stopper.rule.criterion}
    (out / f"rank{rank}.json").write_text(json.dumps({"metrics": metrics, "history": monitor.history.state_dict(),
                                                      "stop": stop,
                                                      "probe_calls": probe_calls,
                                                      "probe_indices": monitor.probe.indices.tolist()}))
    if rank == 0:
        torch.save(module.state_dict(), out / "final.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), early_stopping=len(sys.argv) > 2 and sys.argv[2] == "early-stopping")
