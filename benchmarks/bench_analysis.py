"""Benchmark: the first recording with one distance pass or two, the later recordings' analysis against the forward.

**Precision of the denoised labels** at the default δ on the probe: float32 kernels, and float32 distances with
float64 kernels (the monitor's shared pass), against float64 throughout.

**First recording.** The monitor at its defaults (the denoised score fits its labels from the filter's cached
distances: one distance pass over the probe) against the earlier way, a ``DenoisedLoss()`` of its own (float64
distances, a second pass), alternately in one process, ``--pairs`` times; the monitor's own timings of the
filtering and the denoised score at the first recording.

Workload: the monitor at its defaults on the MNIST fully connected network (784-200-100-100-10) with a probe of
5,000 MNIST training images, ``--recordings`` recordings of one training batch each (``bench_monitor.monitor_split``);
the monitor's own timings split each later recording into the forward pass, the spectrum, the filtering (e_low,
e_high from the cached kernels), the denoised score and the logging. The ratio (spectrum + filtering + denoised) /
forward is the figure.

Then the filtering step alone, on the same probe and the monitor's δ, one later recording's ``errors`` call (new
outputs, cached target): the kernels of every δ are read once per recording (8 δ × 5,000²/2 float32 numbers, about
420 MB), so the step is bound by memory bandwidth. Variants, all reading the same cached kernels:

* ``float32 (default)``: the bank as it is, each stacked (M, 512, 512) tile multiplied twice (rows, then columns);
* ``float32, per δ``: the same products one δ at a time, so that a 1 MB tile is still in the cache for its second
  product (the same numbers, summed in the same order per δ: exact);
* ``float16 storage`` and ``bfloat16 storage``: the kernels kept in 16 bits (half the bytes to read), converted
  to float32 one δ-tile at a time before the same products. Not exact: the change of e_low and e_high against the
  default is reported.

The fastest of ``--repeat`` calls is reported per variant (other processes share these cores). Usage:
``python benchmarks/bench_analysis.py [--data DIR] [--repeat 5] [--recordings 6] [--pairs 3]``; writes
``benchmarks/results/analysis.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one
import torch
from bench_monitor import DEFAULT_DATA, REPO, _dataset, _model, _quiet_trainer, monitor_split

from fp_lightning.functional.filtering import GaussianFilterBank


def _products(bank: GaussianFilterBank, w: torch.Tensor, acc: torch.Tensor, storage: torch.dtype | None,
              per_delta: bool) -> None:
    """acc += K w over the cached kernels, as the bank's own pass does, with the kernels read as ``storage``."""
    for (p0, q0), stacked in bank._kernels.items():
        rows, cols = (p0, p0 + stacked.shape[1]), (q0, q0 + stacked.shape[2])
        if not per_delta:
            bank._add_products(acc, stacked, w, rows, cols)
            continue
        for m in range(stacked.shape[0]):
            kernel = stacked[m] if storage is None else stacked[m].to(torch.float32)
            bank._add_products(acc[m], kernel, w, rows, cols)


def filtering_variants(bank: GaussianFilterBank, y: torch.Tensor, h: torch.Tensor, repeat: int) -> dict:
    """Time one later recording's filtering (the h − y pass and the norms) per storage variant."""
    bank.errors(y, h)  # fills the kernels and the target's cache
    diff = (h - y).to(torch.float64)
    c = diff.shape[1]
    width = -(-(c + 1) // 12) * 12
    w = torch.cat([diff, diff.new_ones(len(diff), 1), diff.new_zeros(len(diff), width - c - 1)], 1).float()
    exact_kernels = bank._kernels
    out = {}
    y_low, y_high = bank._target_cache[1], bank._target_cache[2]
    reference = None
    for name, storage, per_delta in (("float32 (default)", None, False), ("float32, per δ", None, True),
                                     ("float16 storage", torch.float16, True),
                                     ("bfloat16 storage", torch.bfloat16, True)):
        bank._kernels = (exact_kernels if storage is None
                         else {key: tile.to(storage) for key, tile in exact_kernels.items()})
        times = []
        for _ in range(repeat):
            acc = diff.new_zeros(bank._coefs.numel(), len(diff), width)
            start = time.perf_counter()
            _products(bank, w, acc, storage, per_delta)
            low, high = bank._part_norms(diff, acc[..., :c], acc[..., c:c + 1])
            times.append(time.perf_counter() - start)
        e = torch.cat([low / y_low, high / y_high])
        reference = e if reference is None else reference
        out[name] = {"seconds": min(times), "all_seconds": times,
                     "kernel_bytes": sum(t.numel() * t.element_size() for t in bank._kernels.values()),
                     "max_rel_change": float(((e - reference).abs() / reference.abs()).max())}
        print(f"{name}: {min(times) * 1e3:.1f} ms, kernels {out[name]['kernel_bytes'] / 2**20:.0f} MiB, "
              f"max rel. change of e_low/e_high {out[name]['max_rel_change']:.1e}", flush=True)
    bank._kernels = exact_kernels
    return out


def denoised_precision(x: torch.Tensor, y: torch.Tensor) -> dict:
    """Denoised labels of the probe at the default δ in three precisions, against float64 distances and kernels.

    ``float32 kernels``: what a float32 bank's own pass gives (kernels exp(−D/(2δ)) in float32, which underflow
    beyond D/(2δ) ≈ 103); ``float32 distances, float64 kernels``: what the monitor's shared pass gives. The loss
    is the soft cross-entropy of seeded random logits against each set of labels.
    """
    import torch.nn.functional as F

    from fp_lightning.functional import leave_one_out_lowpass, scale_free_delta

    flat, onehot = x[:5000].reshape(5000, -1), F.one_hot(y[:5000], 10).double()
    delta = scale_free_delta(flat, 1e-3)
    reference = leave_one_out_lowpass(flat, y[:5000], delta, dtype=torch.float64)
    sums, weights = GaussianFilterBank(flat, [delta], memory_budget=0).neighbour_sums(onehot)
    isolated = weights[0, :, 0] <= 0
    float32 = sums[0] / torch.where(isolated, 1.0, weights[0, :, 0]).unsqueeze(1)
    float32[isolated] = onehot.mean(dim=0)
    mixed = leave_one_out_lowpass(flat, y[:5000], delta, dtype=torch.float32)
    log_p = torch.log_softmax(torch.randn(5000, 10, generator=torch.Generator().manual_seed(0),
                                          dtype=torch.float64), dim=1)
    loss = {name: float(-(labels * log_p).sum(1).mean()) for name, labels in
            (("reference", reference), ("float32 kernels", float32), ("float32 distances, float64 kernels", mixed))}
    out = {"delta": delta, "float32 kernels: isolated samples": int(isolated.sum())}
    for name, labels in (("float32 kernels", float32), ("float32 distances, float64 kernels", mixed)):
        out[name] = {"max_abs_label_change": float((labels - reference).abs().max()),
                     "argmax_changes": int((labels.argmax(1) != reference.argmax(1)).sum()),
                     "loss_rel_change": abs(loss[name] - loss["reference"]) / abs(loss["reference"])}
        print(f"denoised labels, {name}: max |change| {out[name]['max_abs_label_change']:.1e}, argmax changes "
              f"{out[name]['argmax_changes']} of 5000, score rel. change {out[name]['loss_rel_change']:.1e}",
              flush=True)
    return out


def first_recording(x: torch.Tensor, y: torch.Tensor, shared: bool, root: Path) -> dict:
    """The monitor's timings of its first recording (probe 5,000), with the denoised score sharing or not."""
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import DenoisedLoss, FrequencyPrincipleMonitor

    torch.manual_seed(0)
    monitor = FrequencyPrincipleMonitor(log_images=False, history_file=None, strict=True,
                                        probe_dataloader=(x[:5000], y[:5000]),
                                        denoised_loss=True if shared else DenoisedLoss())
    loader = DataLoader(TensorDataset(x[:1000], y[:1000]), batch_size=100)
    _quiet_trainer(1, [monitor], root, limit_train_batches=1).fit(_model("mnist"), loader)
    first = monitor.timings[0]
    return {stage: first[stage] for stage in ("forward", "spectrum", "filtering", "denoised")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--recordings", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "analysis.json")
    args = parser.parse_args()
    x, y = _dataset("mnist", args.data)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    precision = denoised_precision(x, y)
    pairs = []
    for _ in range(args.pairs):  # alternately, so that the machine's load moves both alike
        pairs.append({name: first_recording(x, y, name == "one pass", REPO / "benchmarks" / "results" / "runs" / name)
                      for name in ("one pass", "two passes")})
    for name in ("one pass", "two passes"):
        cost = statistics.median(p[name]["filtering"] + p[name]["denoised"] for p in pairs)
        print(f"first recording, {name}: filtering + denoised score {cost:.3f} s (median of {args.pairs}; "
              + ", ".join(f"{p[name]['filtering']:.3f} + {p[name]['denoised']:.3f}" for p in pairs) + ")", flush=True)
    split = monitor_split("mnist", x, y, 5000, args.recordings, REPO / "benchmarks" / "results" / "runs" / "storage")
    monitor = split.pop("monitor")
    steady = split["steady"]
    later = monitor.timings[1:]
    analysis = statistics.median(t["spectrum"] + t["filtering"] + t["denoised"] for t in later)
    ratio = analysis / steady["forward"]
    print(f"later recordings (median): forward {steady['forward'] * 1e3:.1f} ms, analysis (spectrum + filtering + "
          f"denoised) {analysis * 1e3:.1f} ms: {ratio:.2f}× the forward; split {steady}", flush=True)
    bank = monitor.filtering._bank
    x_probe = monitor.filtering._bank_inputs
    model = monitor_model_outputs(monitor, x_probe)
    targets = torch.nn.functional.one_hot(y[:5000], 10).double()
    variants = filtering_variants(bank, targets, model, args.repeat)
    result = {"machine": platform.platform(), "threads": torch.get_num_threads(), "probe": 5000,
              "deltas": bank.deltas.tolist(), "first_recording": split["first"], "later_recordings": steady,
              "denoised_precision": precision, "first_recording_pairs": pairs,
              "later_analysis_seconds": analysis, "analysis_over_forward": ratio, "filtering_variants": variants}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def monitor_model_outputs(monitor, x_probe: torch.Tensor) -> torch.Tensor:
    """Softmax outputs of a seeded MNIST network on the probe: realistic values of h for the timing."""
    torch.manual_seed(1)
    with torch.no_grad():
        return torch.softmax(_model("mnist")(x_probe.reshape(-1, 1, 28, 28)), dim=1).double()


if __name__ == "__main__":
    main()
