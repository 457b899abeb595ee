"""Benchmark: scale of inputs and probes.

Two parts, both written to ``benchmarks/results/scale.json`` (each part updates only its own entry):

* ``memory``: peak resident memory and wall time of one ``ProjectedSpectralError`` + ``LowHighFrequencyError``
  compute (each metric fed the same probe, as the monitor feeds them) on n uint8 inputs of ImageNet size
  3 × 224 × 224. The inputs, labels and logits are random (a seeded generator); the images are smooth random
  patterns (``_image_like``) so that, as for photographs, a few principal directions dominate: the cost of the
  analysis depends on n, d and that spectral gap, not on what the pictures show. Each n runs in a fresh
  subprocess; the peak is the process's ``VmHWM`` (reset after the probe was built) minus its resident size then,
  i.e. what the analysis itself added. ``--package DIR`` runs
  the child against another copy of the package (e.g. an older one), to compare before and after.
* ``reduced``: ``LowHighFrequencyError`` exact against ``input_components`` = 32, 64, 128, 256 on MNIST
  (5,000 and 60,000 training images) and CIFAR-10 (5,000), all at the exact run's default δ; h is a ridge
  regression onto the one-hot labels (as in ``docs/library.md``), compared without a transform. Records the time
  of one compute (fit of the reduction included; the fit alone as ``fit_seconds``), the max |Δ| and max relative
  change of e_low and e_high, and the ratio of the δ that ``"auto"`` would pick on the reduced inputs to the exact
  ones.

Timings on a shared machine are noisy; the ratios of the ``reduced`` part come from one process.

Usage: ``python benchmarks/bench_scale.py memory --n 1000 2000`` or ``python benchmarks/bench_scale.py reduced
[--datasets mnist5000 cifar5000 mnist60000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
COMPONENTS = (32, 64, 128, 256)


def _status_mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not found")


def _reset_peak() -> float:
    """Reset the peak resident size (VmHWM) to the current one; return the current one, MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_mib("VmRSS")


def _peak_mib() -> float:
    return max(_status_mib("VmHWM"), _status_mib("VmRSS"))


def _image_like(n: int, generator: Any) -> Any:
    """n uint8 images 3×224×224 with the covariance structure of photographs, not of white noise.

    Random values, but smooth: a random brightness per image plus a random 8×8 colour pattern upsampled
    bilinearly, plus 10% pixel noise. Like natural images (and unlike white noise) their covariance has a few
    dominant directions, so the principal direction is well separated. Built 100 images at a time.
    """
    import torch

    x = torch.empty(n, 3, 224, 224, dtype=torch.uint8)
    for start in range(0, n, 100):
        b = min(100, n - start)
        brightness = torch.rand(b, 1, 1, 1, generator=generator)
        pattern = torch.nn.functional.interpolate(torch.rand(b, 3, 8, 8, generator=generator), size=(224, 224),
                                                  mode="bilinear", align_corners=False)
        noise = torch.rand(b, 3, 224, 224, generator=generator)
        x[start:start + b] = (255 * (0.5 * brightness + 0.4 * pattern + 0.1 * noise)).to(torch.uint8)
    return x


def memory_child(n: int) -> dict:
    """One spectral + filtering compute on n random uint8 3×224×224 inputs; peak RSS above the built probe."""
    import torch

    from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    x = _image_like(n, g)
    labels = torch.randint(0, 10, (n,), generator=g)
    logits = torch.randn(n, 10, generator=g)
    base = _reset_peak()
    spectral = ProjectedSpectralError(n_freqs=64, output_transform="softmax")
    filtering = LowHighFrequencyError(n_deltas=3, output_transform="softmax")
    out = {"n": n, "d": 3 * 224 * 224, "probe_uint8_mib": x.numel() / 2**20, "rss_after_probe_mib": base}
    start = time.perf_counter()
    spectral.update(x, logits, labels)
    spectral.compute()
    out["spectral_seconds"] = time.perf_counter() - start
    out["spectral_peak_mib"] = _peak_mib() - base
    del spectral
    base_filter = _reset_peak()
    start = time.perf_counter()
    filtering.update(x, logits, labels)
    filtering.compute()
    out["filtering_seconds"] = time.perf_counter() - start
    out["filtering_peak_mib"] = _peak_mib() - base_filter
    out["peak_above_probe_mib"] = max(out["spectral_peak_mib"], out["filtering_peak_mib"] + base_filter - base)
    out["package"] = str(Path(sys.modules["fp_lightning"].__file__).parent)
    return out


def run_memory(ns: list[int], package: str | None, label: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package or str(ROOT), env.get("PYTHONPATH")) if p)
    rows = []
    for n in ns:
        proc = subprocess.run([sys.executable, __file__, "memory-child", "--n", str(n)], env=env,
                              capture_output=True, text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(label, row, flush=True)
        rows.append(row)
    return {"label": label, "rows": rows}


def _ridge(x, y):
    import torch

    a = torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    return a @ torch.linalg.solve(a.T @ a + 10 * torch.eye(a.shape[1], dtype=torch.float64), a.T @ y)


def _dataset(name: str, data: Path):
    import torch

    from fp_lightning.data import load_cifar10, load_mnist

    if name.startswith("mnist"):
        images, labels = load_mnist(data, split="train")
    else:
        images, labels = load_cifar10(data, split="train")
    n = int(name.removeprefix("mnist").removeprefix("cifar"))
    x = images[:n].reshape(n, -1)  # uint8, as the dataset gives it
    y = torch.nn.functional.one_hot(labels[:n].long(), 10).double()
    h = _ridge(x.double() / 255, y)
    return x, y, h


def run_reduced(names: list[str], data: Path, components: list[int]) -> dict:
    import torch

    from fp_lightning.functional import default_deltas
    from fp_lightning.functional.projection import principal_components
    from fp_lightning.metrics import LowHighFrequencyError

    torch.set_num_threads(2)
    out = json.loads(RESULTS.read_text()).get("reduced", {}) if RESULTS.exists() else {}
    for name in names:
        x, y, h = _dataset(name, data)

        def compute(components, deltas, x=x, y=y, h=h):
            metric = LowHighFrequencyError(deltas=deltas, n_deltas=3, output_transform="identity",
                                           input_components=components)
            metric.update(x, h, y)
            start = time.perf_counter()
            result = metric.compute()
            return result, time.perf_counter() - start

        exact, exact_seconds = compute(None, "auto")
        deltas = exact["deltas"].tolist()
        row = {"n": x.shape[0], "d": x.shape[1], "deltas": deltas, "exact_seconds": exact_seconds,
               "e_low": exact["e_low"].tolist(), "e_high": exact["e_high"].tolist(), "reduced": {}}
        print(name, "exact", round(exact_seconds, 2), "s", flush=True)
        for m in components:
            reduced, seconds = compute(m, deltas)
            rows = {}
            for key in ("e_low", "e_high"):
                diff = (reduced[key] - exact[key]).abs()
                rows[f"{key}_max_abs_diff"] = float(diff.max())
                rows[f"{key}_max_rel_change"] = float((diff / exact[key].abs()).max())
            start = time.perf_counter()
            reduction = principal_components(x, m)
            fit_seconds = time.perf_counter() - start
            own = default_deltas(reduction.transform(x), 3)  # the δ "auto" would pick on the reduced inputs
            row["reduced"][str(m)] = {"seconds": seconds, "speedup": exact_seconds / seconds,
                                      "fit_seconds": fit_seconds, "kept_components": reduction.n_components,
                                      "own_deltas_over_exact": (own / exact["deltas"]).tolist(), **rows}
            print(name, m, row["reduced"][str(m)], flush=True)
            out[name] = row
            _save("reduced", out)  # after every m: a long run keeps what it measured
    return out


def _save(key: str, value: dict) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = value
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "note": "2-core CPU shared with other jobs: timings are noisy"}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("memory", "memory-child", "reduced"))
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--package", default=None, help="directory holding the fp_lightning package to measure")
    parser.add_argument("--label", default="after")
    parser.add_argument("--datasets", nargs="+", default=["mnist5000", "cifar5000", "mnist60000"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--components", type=int, nargs="+", default=list(COMPONENTS))
    args = parser.parse_args()
    if args.part == "memory-child":
        print(json.dumps(memory_child(args.n[0])))
        return
    if args.part == "memory":
        result = run_memory(args.n, args.package, args.label)
        previous = json.loads(RESULTS.read_text()).get("memory", {}) if RESULTS.exists() else {}
        previous[args.label] = result["rows"]
        _save("memory", previous)
        return
    _save("reduced", run_reduced(args.datasets, args.data, args.components))


if __name__ == "__main__":
    main()
