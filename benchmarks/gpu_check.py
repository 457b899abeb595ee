"""One prepared check of the package on a CUDA GPU: install from carried wheels, the GPU tests, the GPU benchmarks.

``bash benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu]`` calls ``python benchmarks/gpu_check.py run ...``.
Steps, in order, each named in the output and in ``OUT_DIR/gpu_check.json``:

``install``
    Import each package the check needs; install the missing ones from the wheels in ``benchmarks/wheels/``
    (``pip install --no-index --no-deps --find-links``; no network), then the package itself with
    ``pip install --no-deps -e .`` unless it is already importable from this checkout.
``environment``
    Python, torch, CUDA device, library versions. Under ``--device cuda`` a missing CUDA device ends the check.
``cufinufft`` (``--device cuda`` only)
    ``import cufinufft`` works (its error is printed when it does not).
``tests``
    ``pytest tests/test_gpu.py -m gpu`` with ``FP_CHECK_DEVICE`` set to the device; a skipped test is a failure.
``bench:spectrum``, ``bench:filtering``, ``bench:monitor_split``, ``bench:epoch_overhead``, ``bench:profile``
    The benchmarks (see the ``bench_*`` functions), each timed with the device synchronized around it, warm-up
    runs excluded, median of the repeats.

Every step runs even when an earlier one failed (except after a failed ``install`` or a missing CUDA device), and
the check exits 1 naming every failed step. ``OUT_DIR`` receives ``gpu_check.json`` (every number),
``gpu_check.txt`` (the table printed at the end) and ``gpu_check.log`` (everything printed).

Self-test: ``FP_CHECK_FAIL=<step>[,<step>...]`` makes the named steps fail on purpose (e.g. ``environment`` or
``bench:spectrum``), to check that a failure is reported and ends in a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / "benchmarks" / "wheels"
FAIL_ENV = "FP_CHECK_FAIL"
#: the whole check must end within this many seconds (the GPU machine's run is limited; the CPU run is a smoke test)
BUDGET_S = {"cuda": 480.0, "cpu": 600.0}
#: importable module -> distribution (wheel) name; cufinufft only under --device cuda
REQUIREMENTS = {"finufft": "finufft", "jsonargparse": "jsonargparse", "docstring_parser": "docstring_parser",
                "typeshed_client": "typeshed_client", "typing_extensions": "typing_extensions", "yaml": "PyYAML"}
CUDA_REQUIREMENTS = {"cufinufft": "cufinufft"}
#: the stages of one recording in ``FrequencyPrincipleMonitor.timings``
STAGES = ("forward", "spectrum", "filtering", "logging")

#: problem sizes per device: the brief's GPU sizes, and tiny ones that keep the CPU smoke run short
SIZES: dict[str, dict[str, Any]] = {
    "cuda": {"spectrum_n": 100_000, "spectrum_k": 10_000, "cifar_n": 5_000, "cifar_deltas": 20, "mnist_n": 60_000,
             "mnist_deltas": 3, "probes": [5_000, 60_000], "epoch_images": 50_000, "profile_probe": 5_000,
             "repeats": 5, "filter_repeats": 3, "cpu_large_repeats": 1},
    "cpu": {"spectrum_n": 2_000, "spectrum_k": 200, "cifar_n": 300, "cifar_deltas": 20, "mnist_n": 1_000,
            "mnist_deltas": 3, "probes": [300, 600], "epoch_images": 256, "profile_probe": 300,
            "repeats": 3, "filter_repeats": 1, "cpu_large_repeats": 1},
}
TARGETS = {
    "analysis_60k_s": "n = 60k analysis (spectrum + 3 δ filtering) < 1 s per recording",
    "monitor_epoch_fraction": "monitor ≤ 5% of a CIFAR-10 CNN epoch",
    "cufinufft_vs_direct": "cufinufft equals direct to 1e-6 (relative)",
}


class StepFailedError(RuntimeError):
    """A step of the check failed; the message says why."""


def injected(step: str) -> None:
    """Fail on purpose when ``FP_CHECK_FAIL`` names ``step`` (the self-test of the failure path)."""
    if step in [s.strip() for s in os.environ.get(FAIL_ENV, "").split(",")]:
        raise StepFailedError(f"failure injected by {FAIL_ENV}={step} (self-test)")


# ====================================================================== orchestration (standard library only)
class Log:
    """Prints and keeps everything in ``gpu_check.log``."""

    def __init__(self, path: Path) -> None:
        self.handle = path.open("w", encoding="utf-8")

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        self.handle.write(text)
        self.handle.flush()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")


def stream(cmd: list[str], log: Log, timeout: float, env: dict[str, str] | None = None,
           cwd: Path = REPO) -> tuple[int, bool]:
    """Run ``cmd``, copying its output to the log as it comes; kill its process group after ``timeout`` s."""
    log.line(f"$ {' '.join(cmd)}")
    # its own process group (not a new session: whoever ends this check's session ends the step with it)
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                            errors="replace", **group)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def forward(signum: int, _frame: Any) -> None:  # a terminated check leaves no step running on the GPU
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    timer = threading.Timer(max(timeout, 1.0), kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for text in proc.stdout:
            log.write(text)
        return proc.wait(), expired.is_set()
    finally:
        timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def python_json(code: str, log: Log, timeout: float = 120.0, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter outside the checkout (no accidental import from cwd); parse its last line."""
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                              cwd=scratch, env=env)
    if proc.returncode != 0 or not proc.stdout.strip():
        log.write(proc.stdout + proc.stderr)
        raise StepFailedError(f"python exited {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


_IMPORT_PROBE = """
import importlib, json, sys
result = {}
for name in sys.argv[1:] or %r:
    try:
        module = importlib.import_module(name)
        result[name] = {"ok": True, "version": str(getattr(module, "__version__", "")),
                        "file": str(getattr(module, "__file__", ""))}
    except Exception as error:
        result[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
print(json.dumps(result))
"""


_FIND_PROBE = """
import importlib.util, json
print(json.dumps({name: importlib.util.find_spec(name) is not None for name in %r}))
"""


def import_status(modules: list[str], log: Log, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Import each module in a fresh interpreter: ``{"ok", "version", "file"}`` or ``{"ok": False, "error"}``."""
    return python_json(_IMPORT_PROBE % (modules,), log, env=env)


def findable(modules: list[str], log: Log, env: dict[str, str] | None = None) -> dict[str, bool]:
    """Whether each module is installed, without importing it (importing torch-based packages takes seconds)."""
    return python_json(_FIND_PROBE % (modules,), log, env=env)


def wheel_for(distribution: str) -> Path | None:
    """The wheel of ``distribution`` in ``benchmarks/wheels`` (file names use underscores, case-insensitive)."""
    prefix = distribution.replace("-", "_").lower() + "-"
    found = sorted(p for p in WHEELS.glob("*.whl") if p.name.lower().startswith(prefix)) if WHEELS.is_dir() else []
    return found[-1] if found else None


#: where ``import fp_lightning`` would load from, without running it
_ORIGIN_PROBE = """
import importlib.util, json
spec = importlib.util.find_spec("fp_lightning")
print(json.dumps({"ok": spec is not None, "file": spec.origin if spec else "", "error": "not installed"}))
"""


def prepend_path(env: dict[str, str], folder: Path) -> None:
    """Put ``folder`` first on the ``PYTHONPATH`` of every later step (``env`` is shared by them)."""
    env["PYTHONPATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("PYTHONPATH")])])


def step_install(device: str, log: Log, env: dict[str, str]) -> dict[str, Any]:
    """Install the missing requirements from carried wheels, then the package (editable) unless importable."""
    injected("install")
    needed = dict(REQUIREMENTS, **(CUDA_REQUIREMENTS if device == "cuda" else {}))
    missing = [module for module, found in findable(list(needed), log, env).items() if not found]
    result: dict[str, Any] = {"already_importable": sorted(set(needed) - set(missing)), "installed": []}
    if missing:
        wheels = {module: wheel_for(needed[module]) for module in missing}
        absent = [needed[m] for m, w in wheels.items() if w is None]
        if absent:
            # cufinufft may be missing here and still leave every other step meaningful: the cufinufft step fails
            log.line(f"no wheel in {WHEELS} for: {', '.join(absent)} (see benchmarks/README.md)")
            result["no_wheel"] = absent
        paths = [str(w) for w in wheels.values() if w is not None]
        if paths:
            pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir",
                   "--find-links", str(WHEELS)]
            rc, _ = stream(pip + paths, log, timeout=180, env=env)
            if rc != 0:  # e.g. a read-only environment: a private folder put first on PYTHONPATH instead
                site = Path(tempfile.gettempdir()) / "fp_check_site"
                log.line(f"installing into the environment failed; retrying with --target {site} on PYTHONPATH")
                rc, _ = stream([*pip, "--upgrade", "--target", str(site), *paths], log, timeout=180, env=env)
                if rc != 0:
                    names = ", ".join(Path(p).name for p in paths)
                    raise StepFailedError(f"pip could not install {names} (exit {rc})")
                prepend_path(env, site)
                result["target"] = str(site)
            result["installed"] = [Path(p).name for p in paths]
        after = import_status([m for m in missing if m not in CUDA_REQUIREMENTS], log, env)
        core = {m: status["error"] for m, status in after.items() if not status["ok"]}
        if core:
            listed = "; ".join(f"{m} ({e})" for m, e in core.items())
            raise StepFailedError(f"not importable after the install: {listed}")
    package = python_json(_ORIGIN_PROBE, log, env=env)
    if not (package["ok"] and Path(package["file"]).resolve().is_relative_to(REPO)):
        rc, _ = stream([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "-e", str(REPO)], log, timeout=180, env=env)
        if rc == 0:
            result["installed"].append("fp-lightning (editable)")
        else:  # the checkout itself on PYTHONPATH serves the same purpose
            log.line(f"`pip install --no-deps -e .` failed (exit {rc}); using {REPO} on PYTHONPATH instead")
            prepend_path(env, REPO)
            result["package_on_pythonpath"] = str(REPO)
        package = python_json(_ORIGIN_PROBE, log, env=env)
        if not (package["ok"] and Path(package["file"]).resolve().is_relative_to(REPO)):
            raise StepFailedError(f"fp_lightning is not importable from {REPO} (found: {package['file'] or 'none'})")
    result["fp_lightning"] = package["file"]
    return result


_ENVIRONMENT_PROBE = """
import json, os, platform, sys
import torch, lightning, torchmetrics, numpy, finufft
info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "torch_threads": torch.get_num_threads(),
        "lightning": lightning.__version__, "torchmetrics": torchmetrics.__version__, "numpy": numpy.__version__,
        "finufft": getattr(finufft, "__version__", ""), "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
print(json.dumps(info))
"""


def step_environment(device: str, log: Log, env: dict[str, str]) -> dict[str, Any]:
    injected("environment")
    info = python_json(_ENVIRONMENT_PROBE, log, env=env)
    if device == "cuda" and not info["cuda_available"]:
        raise StepFailedError(f"--device cuda but torch {info['torch']} sees no CUDA device")
    return info


def step_cufinufft(log: Log, env: dict[str, str]) -> dict[str, Any]:
    injected("cufinufft")
    status = import_status(["cufinufft"], log, env)["cufinufft"]
    if not status["ok"]:
        raise StepFailedError(f"import cufinufft failed: {status['error']}")
    return status


def step_tests(device: str, log: Log, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """``pytest tests/test_gpu.py -m gpu`` on ``device``; any failure, error or skip fails the step."""
    injected("tests")
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        rc, expired = stream([sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-q", "-rfEs",
                              "-p", "no:cacheprovider", "-p", "no:xdist", "-W", "ignore::DeprecationWarning",
                              f"--junitxml={report}"], log, timeout, env=dict(env, FP_CHECK_DEVICE=device))
        cases = _junit_cases(report) if report.exists() else []
    counts = {outcome: sum(c["outcome"] == outcome for c in cases) for outcome in ("passed", "failed", "skipped")}
    result = {"exit_code": rc, **counts, "cases": cases}
    if expired:
        raise StepFailedError(f"pytest ran past its {timeout:.0f} s share of the budget", result)
    if rc != 0 or counts["failed"] or counts["skipped"] or not counts["passed"]:
        bad = [c["name"] for c in cases if c["outcome"] != "passed"]
        raise StepFailedError(f"pytest exit {rc}; not passed: {', '.join(bad) or 'no test ran'}", result)
    return result


def _junit_cases(path: Path) -> list[dict[str, Any]]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = "passed"
        for tag, name in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
            if case.find(tag) is not None:
                outcome = name
        cases.append({"name": case.get("name"), "seconds": float(case.get("time", 0)), "outcome": outcome})
    return cases


def step_benchmarks(device: str, log: Log, env: dict[str, str], timeout: float,
                    sections: list[str] | None = None) -> dict[str, Any]:
    """Run the ``bench`` subcommand in a fresh interpreter; return its per-section JSON."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "bench.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "bench", "--device", device, "--out", str(out)]
        rc, expired = stream(cmd + (["--sections", *sections] if sections else []), log, timeout, env=env)
        results = json.loads(out.read_text()) if out.exists() else {}
    why = f"killed: ran past its {timeout:.0f} s share of the budget" if expired else f"exited {rc}"
    for name in sections or SECTIONS:  # a section the process did not finish is a failure too, never a gap
        results.setdefault(name, {"ok": False, "error": f"did not finish (the benchmark process {why})"})
    if rc != 0 and all(r.get("ok") for r in results.values()):
        results["_runner"] = {"ok": False, "error": f"the benchmark process {why}"}
    return results


def run_check(out_dir: Path, device: str) -> int:
    """The whole check; returns the exit code (0 when every step passed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log(out_dir / "gpu_check.log")
    start = time.perf_counter()
    budget = BUDGET_S[device]
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUBLAS_WORKSPACE_CONFIG=":4096:8")
    steps: dict[str, dict[str, Any]] = {}
    report: dict[str, Any] = {"device": device, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sizes": SIZES[device],
                              "budget_s": budget, "steps": steps}

    def remaining() -> float:
        return budget - (time.perf_counter() - start)

    def step(name: str, action: Callable[[], dict[str, Any]], fatal: bool = False) -> bool:
        log.line(f"\n==== step {name} ({remaining():.0f} s of the budget left)")
        began = time.perf_counter()
        try:
            details, ok, error = action(), True, None
        except Exception as failure:
            ok, error = False, f"{type(failure).__name__}: {failure.args[0] if failure.args else failure}"
            details = failure.args[1] if isinstance(failure, StepFailedError) and len(failure.args) > 1 else {}
            if not isinstance(failure, StepFailedError):
                log.write(traceback.format_exc())
        steps[name] = {"ok": ok, "seconds": round(time.perf_counter() - began, 2), "error": error,
                       "details": details}
        log.line(f"---- step {name}: {'ok' if ok else 'FAILED: ' + str(error)}")
        return ok or not fatal

    go_on = step("install", lambda: step_install(device, log, env), fatal=True)
    go_on = go_on and step("environment", lambda: step_environment(device, log, env), fatal=True)
    if go_on:
        report["environment"] = steps["environment"]["details"]
        if device == "cuda":
            step("cufinufft", lambda: step_cufinufft(log, env))
        step("tests", lambda: step_tests(device, log, env, timeout=min(240.0, remaining() - 120.0)))
        bench = step_benchmarks(device, log, env, timeout=remaining() - 5.0)
        report["benchmarks"] = bench
        for name, section in bench.items():
            steps[f"bench:{name}"] = {"ok": bool(section.get("ok")), "seconds": section.get("seconds"),
                                      "error": section.get("error")}
    report["failed_steps"] = [name for name, s in steps.items() if not s["ok"]]
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["ok"] = not report["failed_steps"]
    table = summary_table(report)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "gpu_check.txt").write_text(table + "\n")
    log.line("\n" + table)
    if report["failed_steps"]:
        log.line(f"\nGPU CHECK FAILED ({device}, {report['seconds']} s): failed steps: "
                 f"{', '.join(report['failed_steps'])}")
        for name in report["failed_steps"]:
            log.line(f"  {name}: {steps[name]['error']}")
        return 1
    log.line(f"\nGPU CHECK PASSED ({device}, {report['seconds']} s); results in {out_dir / 'gpu_check.json'}")
    return 0


def _fmt(value: Any, unit: str = "s") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "s":
        return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "%":
        return f"{100 * value:.1f}%"
    if unit == "x":
        return f"{value:.1f}x"
    return f"{value:.2e}" if isinstance(value, float) else str(value)


def summary_table(report: dict[str, Any]) -> str:
    """The printed table: every step's status, the headline numbers and the targets next to them."""
    rows: list[tuple[str, str, str]] = []
    for name, s in report["steps"].items():
        rows.append((f"step {name}", "ok" if s["ok"] else "FAILED", f"{s['seconds']} s"))
    env = report.get("environment", {})
    if env:
        rows.append(("device", env.get("gpu", "cpu"), f"torch {env.get('torch')}, {env.get('cpu_count')} cores"))
    bench = report.get("benchmarks", {})
    spectrum = bench.get("spectrum", {})
    for name, r in spectrum.get("backends", {}).items():
        rows.append((f"nufft_spectrum {name} n={spectrum.get('n')} K={spectrum.get('n_freqs')}",
                     _fmt(r.get("median_s")), f"rel. err vs CPU float64 sum {_fmt(r.get('rel_error'), '')}"))
    if "cufinufft_vs_direct" in spectrum:
        verdict = "MET" if spectrum["cufinufft_vs_direct"] <= 1e-6 else "MISSED"
        rows.append(("cufinufft vs direct (CUDA), relative", _fmt(spectrum["cufinufft_vs_direct"], ""),
                     f"target {TARGETS['cufinufft_vs_direct']}: {verdict}"))
    for case in bench.get("filtering", {}).get("cases", []):
        rows.append((f"low_high_errors {case['name']} n={case['n']} x {case['n_deltas']} δ ({case['data']})",
                     f"{_fmt(case['device']['median_s'])} on {case['device_name']}",
                     f"CPU {_fmt(case['cpu']['median_s'])}, x{case['speedup']:.1f}, max rel diff "
                     f"{_fmt(case['max_rel_diff'], '')}"))
    for case in bench.get("monitor_split", {}).get("cases", []):
        steady = case["steady"]
        note = ""
        if case["probe"] >= 60_000:
            verdict = "MET" if case["analysis_s"] < 1.0 else "MISSED"
            note = f"; target {TARGETS['analysis_60k_s']}: {verdict}"
        rows.append((f"monitor CIFAR CNN probe {case['probe']} ({case['data']}), per recording",
                     f"analysis {_fmt(case['analysis_s'])}",
                     f"forward {_fmt(steady['forward'])} spectrum {_fmt(steady['spectrum'])} filtering "
                     f"{_fmt(steady['filtering'])} logging {_fmt(steady['logging'])}; first "
                     f"{_fmt(sum(case['first'].values()))}{note}"))
    epoch = bench.get("epoch_overhead", {})
    if epoch.get("ok"):
        verdict = "MET" if epoch["recording_fraction"] <= 0.05 else "MISSED"
        rows.append((f"CIFAR CNN epoch, {epoch['images']} images ({epoch['data']}), batch {epoch['batch_size']}",
                     f"plain {_fmt(epoch['plain_s'])}, monitored {_fmt(epoch['monitored_s'])}",
                     f"1-epoch run incl. set-up: hooks {_fmt(epoch['hook_fraction'], '%')}, wall "
                     f"{_fmt(epoch['wall_overhead'], '%')}"))
        rows.append(("monitor per recording / epoch", _fmt(epoch["recording_fraction"], "%"),
                     f"{_fmt(epoch['recording_s'])} per recording; target {TARGETS['monitor_epoch_fraction']}: "
                     f"{verdict}"))
    profile = bench.get("profile", {})
    if profile.get("ok"):
        t = profile["totals"]
        rows.append(("one recording under torch.profiler", f"{t['host_device_copies']} copies",
                     f"{t['synchronizations']} synchronizations, {t['aten_to']} aten::to"))
    for name, section in bench.items():
        if not section.get("ok"):
            rows.append((f"bench:{name}", "FAILED", str(section.get("error"))[:100]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    title = f"fp_lightning GPU check, --device {report['device']}, {report.get('seconds', '?')} s"
    lines = [title, "-" * len(title)]
    lines += [f"{a:<{widths[0]}} | {b:<{widths[1]}} | {c}" for a, b, c in rows]
    return "\n".join(lines)


# ====================================================================== benchmarks (run in their own interpreter)
def _torch():
    import torch

    return torch


def synchronize(device: str) -> None:
    if device == "cuda":
        _torch().cuda.synchronize()


def timed(action: Callable[[], Any], device: str, repeats: int, warmup: int = 1) -> tuple[dict[str, Any], Any]:
    """Median wall time of ``repeats`` calls after ``warmup`` untimed ones, the device synchronized around each.

    Returns the timings and the last call's result (so that no extra call is needed to check its values).
    """
    for _ in range(warmup):
        action()
    runs, result = [], None
    for _ in range(repeats):
        synchronize(device)
        began = time.perf_counter()
        result = action()
        synchronize(device)
        runs.append(time.perf_counter() - began)
    return {"median_s": statistics.median(runs), "runs_s": runs, "warmup": warmup}, result


def data_dir() -> Path | None:
    """``$FP_DATA_DIR``, else ``../shared/data`` beside the checkout, else ``benchmarks/data``, when it exists."""
    for candidate in (os.environ.get("FP_DATA_DIR"), REPO.parent / "shared" / "data", REPO / "benchmarks" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def images(name: str, n: int, seed: int = 0):
    """``n`` images in [0, 1] and labels: real CIFAR-10 / MNIST training images when enough exist, else random."""
    torch = _torch()
    root = data_dir()
    if root is not None:
        from fp_lightning.data import load_cifar10, load_mnist

        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # CIFAR: the missing data_batch_2..5 are expected here
                x, y = (load_cifar10 if name == "cifar10" else load_mnist)(root, split="train", download=False)
            if len(x) >= n:
                x = x[:n].float().div_(255)
                return (x if x.ndim == 4 else x.unsqueeze(1)), y[:n].long(), f"real {name} ({root})"
        except (FileNotFoundError, ValueError):
            pass
    g = torch.Generator().manual_seed(seed)
    shape = (3, 32, 32) if name == "cifar10" else (1, 28, 28)
    return torch.rand(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g), f"random {name}-shaped"


def bench_spectrum(device: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``nufft_spectrum`` per backend at n points and K frequencies, against the float64 direct sum on the CPU."""
    torch = _torch()
    from fp_lightning.functional import nufft_spectrum

    n, k = cfg["spectrum_n"], cfg["spectrum_k"]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, generator=g, dtype=torch.float64)
    v = torch.randn(n, generator=g, dtype=torch.float64)
    began = time.perf_counter()
    oracle = nufft_spectrum(x, v, k, backend="direct")
    result: dict[str, Any] = {"n": n, "n_freqs": k, "channels": 1, "oracle_cpu_direct_s": time.perf_counter() - began,
                              "backends": {}}
    plans = [("cufinufft", "cuda"), ("direct", "cuda"), ("finufft", "cpu")] if device == "cuda" else \
        [("finufft", "cpu"), ("direct", "cpu")]
    errors = []
    spectra = {}
    for backend, where in plans:
        xd, vd = x.to(where), v.to(where)
        label = f"{backend} ({where})"
        try:
            timing, spectrum = timed(lambda b=backend, a=xd, c=vd: nufft_spectrum(a, c, k, backend=b), where,
                                     cfg["repeats"])
            spectra[backend] = spectrum.cpu()
            rel = float((spectra[backend] - oracle).norm() / oracle.norm())
            result["backends"][label] = {**timing, "rel_error": rel}
        except Exception as error:
            result["backends"][label] = {"error": f"{type(error).__name__}: {error}"}
            errors.append(f"{label}: {type(error).__name__}: {error}")
    if "cufinufft" in spectra and "direct" in spectra:
        direct = spectra["direct"]
        result["cufinufft_vs_direct"] = float((spectra["cufinufft"] - direct).norm() / direct.norm())
        if result["cufinufft_vs_direct"] > 1e-6:
            errors.append(f"cufinufft differs from direct by {result['cufinufft_vs_direct']:.2e} > 1e-6")
    if errors:
        raise StepFailedError("; ".join(errors), result)
    return result


def bench_filtering(device: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``low_high_errors`` at CIFAR and MNIST sizes on the device and with the CPU code, in the same run."""
    torch = _torch()
    from fp_lightning.functional import default_deltas, low_high_errors

    cases = []
    for name, n, n_deltas, repeats_cpu in (("cifar10", cfg["cifar_n"], cfg["cifar_deltas"], cfg["filter_repeats"]),
                                           ("mnist", cfg["mnist_n"], cfg["mnist_deltas"], cfg["cpu_large_repeats"])):
        x, labels, source = images(name, n)
        y = torch.nn.functional.one_hot(labels, 10).double()
        logits = torch.randn(n, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        h = torch.softmax(logits + 2 * y, dim=1)
        deltas = default_deltas(x, n_deltas)
        xd, yd, hd = x.to(device), y.to(device), h.to(device)
        on_device, dev_values = timed(lambda a=xd, b=yd, c=hd, d=deltas: low_high_errors(a, b, c, d), device,
                                      cfg["filter_repeats"])
        # the CPU reference: one untimed warm-up at a small size, then the full size (once at n = 60k: ~seconds each)
        low_high_errors(x[:200], y[:200], h[:200], deltas)
        on_cpu, cpu_values = timed(lambda a=x, b=y, c=h, d=deltas: low_high_errors(a, b, c, d), "cpu", repeats_cpu,
                                   warmup=0)
        dev_values, cpu_values = torch.cat(dev_values).cpu(), torch.cat(cpu_values)
        cases.append({"name": name, "n": n, "d": int(x[0].numel()), "n_deltas": n_deltas, "data": source,
                      "device_name": device, "device": on_device, "cpu": on_cpu,
                      "cpu_threads": torch.get_num_threads(), "speedup": on_cpu["median_s"] / on_device["median_s"],
                      "max_rel_diff": float(((dev_values - cpu_values).abs() / cpu_values.abs()).max())})
    return {"cases": cases}


def _trainer(device: str, root: Path, max_epochs: int, callbacks: list, **kwargs):
    import lightning.pytorch as L

    return L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=max_epochs,
                     callbacks=callbacks, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     enable_checkpointing=False, default_root_dir=root, **kwargs)


def _cifar_cnn():
    from fp_lightning.models import SmallCNN

    return SmallCNN(input_shape=(3, 32, 32), num_outputs=10, loss="cross_entropy", lr=1e-3, init_seed=0)


def bench_monitor_split(device: str, cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """``monitor.timings`` per stage for the CIFAR CNN at each probe size: first recording and steady state."""
    torch = _torch()
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    cases = []
    for probe in cfg["probes"]:
        x, y, source = images("cifar10", probe)
        monitor = FrequencyPrincipleMonitor(probe_inputs=x, probe_targets=y, log_images=False, history_file=None,
                                            strict=True)
        loader = DataLoader(TensorDataset(x[:1000], y[:1000]), batch_size=128)
        torch.manual_seed(0)
        _trainer(device, root, 2, [monitor], limit_train_batches=1).fit(_cifar_cnn(), loader)
        if len(monitor.timings) != 3:
            raise StepFailedError(f"probe {probe}: {len(monitor.timings)} recordings instead of 3")
        first = {s: monitor.timings[0][s] for s in STAGES}
        steady = {s: statistics.median(t[s] for t in monitor.timings[1:]) for s in STAGES}
        cases.append({"probe": probe, "data": source, "first": first, "steady": steady,
                      "analysis_s": steady["spectrum"] + steady["filtering"], "recordings": len(monitor.timings)})
        del monitor, x, y
        if device == "cuda":
            torch.cuda.empty_cache()
    return {"cases": cases}


def _hook_clock(monitor) -> dict[str, float]:
    """Seconds spent inside each of the monitor's hooks (the same clock as ``bench_monitor.py``)."""
    from bench_monitor import _timed_hooks  # benchmarks/ is this script's folder, first on sys.path

    return _timed_hooks(monitor)


def bench_epoch_overhead(device: str, cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """One CIFAR CNN training epoch with and without the monitor at its defaults, seeded, interleaved twice."""
    torch = _torch()
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    n, batch = cfg["epoch_images"], 128
    x, y, source = images("cifar10", n)
    dataset = TensorDataset(x, y)

    def one_run(monitored: bool, **kwargs) -> tuple[float, float, list[dict[str, float]]]:
        torch.manual_seed(0)
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0))
        monitor = FrequencyPrincipleMonitor() if monitored else None
        spent = _hook_clock(monitor) if monitor is not None else {}
        trainer = _trainer(device, root, 1, [monitor] if monitor is not None else [], **kwargs)
        synchronize(device)
        began = time.perf_counter()
        trainer.fit(_cifar_cnn(), loader)
        synchronize(device)
        return time.perf_counter() - began, sum(spent.values()), monitor.timings if monitor is not None else []

    one_run(False, limit_train_batches=10)  # warm-up: CUDA context, cuDNN autotuning, first Lightning set-up
    plain, monitored, hooks, timings = [], [], [], []
    for _ in range(2):
        plain.append(one_run(False)[0])
        wall, inside, recorded = one_run(True)
        monitored.append(wall)
        hooks.append(inside)
        timings = recorded
    if len(timings) != 2:
        raise StepFailedError(f"the monitored run made {len(timings)} recordings instead of 2")
    recording = sum(timings[-1][stage] for stage in STAGES)  # the recording after the epoch
    best_plain = min(plain)
    return {"images": n, "batch_size": batch, "data": source, "plain_runs_s": plain, "monitored_runs_s": monitored,
            "hook_runs_s": hooks, "plain_s": best_plain, "monitored_s": min(monitored),
            "wall_overhead": min(monitored) / best_plain - 1, "hook_seconds": min(hooks),
            "hook_fraction": min(hooks) / best_plain, "recording_s": recording,
            "recording_fraction": recording / best_plain, "timings": timings}


#: profiler event names counted as host-device copies, synchronizations and dtype/device conversions
COPY_EVENTS = ("Memcpy HtoD", "Memcpy DtoH", "cudaMemcpy", "cudaMemcpyAsync")
SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
TO_EVENTS = ("aten::to", "aten::_to_copy", "aten::copy_", "aten::item", "aten::_local_scalar_dense")


def bench_profile(device: str, cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """torch.profiler over the second recording (steady state) of a CIFAR CNN run: count copies and syncs."""
    torch = _torch()
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.data import DataLoader, TensorDataset

    from fp_lightning import FrequencyPrincipleMonitor

    x, y, source = images("cifar10", cfg["profile_probe"])
    monitor = FrequencyPrincipleMonitor(probe_inputs=x, probe_targets=y, log_images=False, history_file=None,
                                        strict=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    hook = monitor.on_train_epoch_end
    captured: list[Any] = []

    def profiled(trainer, pl_module):
        if trainer.current_epoch == 1:  # the second epoch's recording: every cache is warm
            with profile(activities=activities) as prof:
                hook(trainer, pl_module)
                synchronize(device)
            captured.append(prof)
        else:
            hook(trainer, pl_module)

    monitor.on_train_epoch_end = profiled
    loader = DataLoader(TensorDataset(x[:512], y[:512]), batch_size=128)
    torch.manual_seed(0)
    _trainer(device, root, 2, [monitor], limit_train_batches=2).fit(_cifar_cnn(), loader)
    if not captured:
        raise StepFailedError("the profiled recording did not run")
    counts: dict[str, int] = {}
    for event in captured[0].key_averages():
        if any(event.key.startswith(name) for name in COPY_EVENTS + SYNC_EVENTS + TO_EVENTS):
            counts[event.key] = counts.get(event.key, 0) + int(event.count)

    def total(names: tuple[str, ...]) -> int:
        return sum(c for key, c in counts.items() if any(key.startswith(name) for name in names))

    device_copies = total(("Memcpy HtoD", "Memcpy DtoH"))
    return {"probe": cfg["profile_probe"], "data": source, "counts": counts,
            "totals": {"host_device_copies": device_copies if device == "cuda" else 0,
                       "copy_calls": total(("cudaMemcpy",)), "synchronizations": total(SYNC_EVENTS),
                       "aten_to": total(("aten::to",)), "item_calls": total(("aten::item",))}}


SECTIONS = ("spectrum", "filtering", "monitor_split", "epoch_overhead", "profile")


def run_benchmarks(device: str, out: Path, sections: list[str]) -> int:
    """Run the named sections; each one's failure is recorded and the others still run. Exit 1 if any failed."""
    torch = _torch()
    import lightning.pytorch as L

    L.seed_everything(0, verbose=False)
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    cfg = SIZES[device]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        actions = {"spectrum": lambda: bench_spectrum(device, cfg), "filtering": lambda: bench_filtering(device, cfg),
                   "monitor_split": lambda: bench_monitor_split(device, cfg, root),
                   "epoch_overhead": lambda: bench_epoch_overhead(device, cfg, root),
                   "profile": lambda: bench_profile(device, cfg, root)}
        for name in sections:
            print(f"\n---- bench:{name}", flush=True)
            began = time.perf_counter()
            try:
                injected(f"bench:{name}")
                section = {"ok": True, **actions[name]()}
            except Exception as failure:
                known = isinstance(failure, StepFailedError)
                details = failure.args[1] if known and len(failure.args) > 1 else {}
                message = failure.args[0] if known else f"{type(failure).__name__}: {failure}"
                if not known:
                    traceback.print_exc()
                section = {**details, "ok": False, "error": str(message)}
            section["seconds"] = round(time.perf_counter() - began, 2)
            print(json.dumps({k: v for k, v in section.items() if k not in ("timings", "counts")}, default=str)[:2000],
                  flush=True)
            results[name] = section
            out.write_text(json.dumps(results, indent=2, default=str))  # keep what is done if a later one hangs
            if device == "cuda":
                torch.cuda.empty_cache()
    return 0 if all(s["ok"] for s in results.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the whole check (install, environment, tests, benchmarks)")
    run.add_argument("out_dir", type=Path)
    run.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    bench = sub.add_parser("bench", help="the benchmarks only, one JSON file")
    bench.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    bench.add_argument("--out", type=Path, required=True)
    bench.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    args = parser.parse_args(argv)
    if args.command == "run":
        return run_check(args.out_dir, args.device)
    return run_benchmarks(args.device, args.out, args.sections)


if __name__ == "__main__":
    sys.exit(main())
