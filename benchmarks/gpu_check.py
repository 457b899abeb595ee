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
    Whether ``import cufinufft`` works. When it does not (e.g. the CUDA 12 wheels beside a CUDA 13 torch), the step
    reports it as unavailable with the import error and passes: its tests and benchmark row are not run and are
    named in the report, and every other number is still measured.
``tests``
    ``pytest tests/test_gpu.py -m gpu`` with ``FP_CHECK_DEVICE`` set to the device; a skipped test is a failure
    (``tests_k`` of the sizes narrows the selection: the suite's CPU run of the check keeps the fast ones).
``bench:spectrum``, ``bench:filtering``, ``bench:monitor_split``, ``bench:epoch_overhead``, ``bench:profile``
    The benchmarks: the ``bench_*`` functions below call those of ``bench_spectrum.py``, ``bench_filtering.py``
    and ``bench_monitor.py`` at the sizes of ``SIZES``; each timed with the device synchronized around it,
    warm-up runs excluded, median of the repeats.

Every step runs even when an earlier one failed (except after a failed ``install`` or a missing CUDA device), and
the check exits 1 naming every failed step. ``OUT_DIR`` receives ``gpu_check.json`` (every number),
``gpu_check.txt`` (the table printed at the end) and ``gpu_check.log`` (everything printed).

Self-test: ``FP_CHECK_FAIL=<step>[,<step>...]`` makes the named steps fail on purpose (e.g. ``environment`` or
``bench:spectrum``), to check that a failure is reported and ends in a non-zero exit; ``FP_CHECK_FAIL=
cufinufft-import`` makes ``import cufinufft`` fail in every step instead, to check that the check still passes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
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

#: problem sizes per device: the brief's GPU sizes, and tiny ones that keep the CPU smoke run short
SIZES: dict[str, dict[str, Any]] = {
    "cuda": {"spectrum_n": 100_000, "spectrum_k": 10_000, "cifar_n": 5_000, "cifar_deltas": 20, "mnist_n": 60_000,
             "mnist_deltas": 3, "probes": [5_000, 60_000], "epoch_images": 50_000, "profile_probe": 5_000,
             "repeats": 5, "filter_repeats": 3, "cpu_large_repeats": 1, "tests_k": None},
    "cpu": {"spectrum_n": 2_000, "spectrum_k": 200, "cifar_n": 300, "cifar_deltas": 20, "mnist_n": 1_000,
            "mnist_deltas": 3, "probes": [300, 600], "epoch_images": 256, "profile_probe": 300,
            "repeats": 3, "filter_repeats": 1, "cpu_large_repeats": 1, "tests_k": None},
}
#: smaller sizes for a quicker smoke run: a JSON object whose entries replace those of SIZES[device], e.g.
#: FP_CHECK_SIZES='{"spectrum_n": 500, "epoch_images": 128}' (the test suite's CPU run of this check uses it);
#: "tests_k" selects the gpu tests with a pytest ``-k`` expression (None: all of them)
SIZES_ENV = "FP_CHECK_SIZES"


def sizes(device: str) -> dict[str, Any]:
    """``SIZES[device]`` with the entries of ``$FP_CHECK_SIZES`` (if set) in place of its own."""
    cfg = dict(SIZES[device])
    override = json.loads(os.environ.get(SIZES_ENV) or "{}")
    unknown = sorted(set(override) - set(cfg))
    if unknown:
        raise SystemExit(f"{SIZES_ENV}: unknown entries {unknown}; known: {sorted(cfg)}")
    cfg.update(override)
    return cfg


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


#: FP_CHECK_FAIL=cufinufft-import: every later step sees ``import cufinufft`` fail (the self-test of that path)
HIDE_CUFINUFFT = "cufinufft-import"
#: the gpu tests that need cufinufft; not run (and named in the report) when it is not importable
CUFINUFFT_TESTS = ("tests/test_gpu.py::test_every_backend_on_the_device_matches_the_float64_sum_on_cpu[cufinufft]",
                   "tests/test_gpu.py::test_auto_backend_is_the_fast_one_on_the_device")


def hide_cufinufft(env: dict[str, str]) -> None:
    """Make ``import cufinufft`` fail in every later step, as a CUDA 12 wheel fails beside a CUDA 13 torch."""
    stub = Path(tempfile.mkdtemp(prefix="fp_check_stub_")) / "cufinufft"
    stub.mkdir()
    (stub / "__init__.py").write_text(f'raise ImportError("cufinufft hidden by {FAIL_ENV}={HIDE_CUFINUFFT} '
                                      f'(self-test)")\n')
    prepend_path(env, stub.parent)


def step_cufinufft(log: Log, env: dict[str, str]) -> dict[str, Any]:
    """Whether ``import cufinufft`` works; when it does not, the step passes and says why (the ``auto`` backend
    then uses the exact direct sum on the GPU, and every other number is still measured)."""
    injected("cufinufft")
    status = import_status(["cufinufft"], log, env)["cufinufft"]
    if not status["ok"]:
        log.line(f"cufinufft unavailable: {status['error']}; its test and benchmark row are skipped")
        return {"available": False, "reason": status["error"]}
    return {"available": True, **status}


def step_tests(device: str, log: Log, env: dict[str, str], timeout: float,
               no_cufinufft: str | None = None) -> dict[str, Any]:
    """``pytest tests/test_gpu.py -m gpu`` on ``device``; any failure, error or skip fails the step.

    ``no_cufinufft``: why cufinufft is not importable; its tests are then not run and are listed as such."""
    injected("tests")
    deselect = [arg for test in CUFINUFFT_TESTS for arg in ("--deselect", test)] if no_cufinufft else []
    chosen = sizes(device)["tests_k"]
    deselect += ["-k", chosen] if chosen else []
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "junit.xml"
        rc, expired = stream([sys.executable, "-m", "pytest", "tests/test_gpu.py", "-m", "gpu", "-q", "-rfEs",
                              "-p", "no:cacheprovider", "-p", "no:xdist", "-W", "ignore::DeprecationWarning",
                              f"--junitxml={report}", *deselect], log, timeout, env=dict(env, FP_CHECK_DEVICE=device))
        cases = _junit_cases(report) if report.exists() else []
    counts = {outcome: sum(c["outcome"] == outcome for c in cases) for outcome in ("passed", "failed", "skipped")}
    result = {"exit_code": rc, **counts, "cases": cases}
    if no_cufinufft:
        result["not_run"] = {"tests": list(CUFINUFFT_TESTS), "reason": f"cufinufft unavailable: {no_cufinufft}"}
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
    report: dict[str, Any] = {"device": device, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sizes": sizes(device),
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
        no_cufinufft = None
        if device == "cuda":
            if HIDE_CUFINUFFT in os.environ.get(FAIL_ENV, ""):
                hide_cufinufft(env)
            step("cufinufft", lambda: step_cufinufft(log, env))
            found = steps["cufinufft"]
            if found["ok"] and not found["details"]["available"]:
                no_cufinufft = found["details"]["reason"]
                report["cufinufft_unavailable"] = no_cufinufft
        step("tests", lambda: step_tests(device, log, env, timeout=min(240.0, remaining() - 120.0),
                                         no_cufinufft=no_cufinufft))
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
        status = "ok" if s["ok"] else "FAILED"
        if name == "cufinufft" and s["ok"] and not s["details"].get("available", True):
            status = "unavailable"
        rows.append((f"step {name}", status, f"{s['seconds']} s"))
    env = report.get("environment", {})
    if env:
        rows.append(("device", env.get("gpu", "cpu"), f"torch {env.get('torch')}, {env.get('cpu_count')} cores"))
    bench = report.get("benchmarks", {})
    spectrum = bench.get("spectrum", {})
    for name, r in spectrum.get("backends", {}).items():
        label = f"nufft_spectrum {name} n={spectrum.get('n')} K={spectrum.get('n_freqs')}"
        if "unavailable" in r:
            rows.append((label, "unavailable", str(r["unavailable"])[:100]))
            continue
        rows.append((label, _fmt(r.get("median_s")), f"rel. err vs CPU float64 sum {_fmt(r.get('rel_error'), '')}"))
    if "cufinufft_vs_direct" in spectrum:
        verdict = "MET" if spectrum["cufinufft_vs_direct"] <= 1e-6 else "MISSED"
        rows.append(("cufinufft vs direct (CUDA), relative", _fmt(spectrum["cufinufft_vs_direct"], ""),
                     f"target {TARGETS['cufinufft_vs_direct']}: {verdict}"))
    elif "cufinufft_unavailable" in spectrum:
        rows.append(("cufinufft vs direct (CUDA), relative", "-",
                     f"target {TARGETS['cufinufft_vs_direct']}: NOT MEASURED (cufinufft unavailable)"))
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
# Each section calls the functions of the bench_*.py scripts (benchmarks/, this script's folder, is first on
# sys.path) at the sizes of SIZES[device] and returns what the table and the JSON report.
def _torch():
    import torch

    return torch


def bench_spectrum(device: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``nufft_spectrum`` per backend at n points and K frequencies, against the float64 direct sum on the CPU.

    Under ``--device cuda`` without an importable cufinufft, its row says why and the section still passes."""
    from bench_spectrum import against_oracle

    from fp_lightning.functional.spectrum import _cufinufft_import_error

    plans = [("cufinufft", "cuda"), ("direct", "cuda"), ("finufft", "cpu")] if device == "cuda" else \
        [("finufft", "cpu"), ("direct", "cpu")]
    unavailable = _cufinufft_import_error() if device == "cuda" else None
    if unavailable:
        plans = [plan for plan in plans if plan[0] != "cufinufft"]
    result = against_oracle(cfg["spectrum_n"], cfg["spectrum_k"], plans, cfg["repeats"])
    if unavailable:
        result["backends"] = {"cufinufft (cuda)": {"unavailable": unavailable}, **result["backends"]}
        result["cufinufft_unavailable"] = unavailable
    errors = result.pop("errors")
    if errors:
        raise StepFailedError("; ".join(errors), result)
    return result


def bench_filtering(device: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``low_high_errors`` at CIFAR and MNIST sizes on the device and with the CPU code, in the same run."""
    torch = _torch()
    from bench_filtering import device_against_cpu
    from bench_monitor import images

    from fp_lightning.functional import default_deltas

    cases = []
    for name, n, n_deltas, repeats_cpu in (("cifar10", cfg["cifar_n"], cfg["cifar_deltas"], cfg["filter_repeats"]),
                                           ("mnist", cfg["mnist_n"], cfg["mnist_deltas"], cfg["cpu_large_repeats"])):
        x, labels, source = images(name, n)
        y = torch.nn.functional.one_hot(labels, 10).double()
        logits = torch.randn(n, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        h = torch.softmax(logits + 2 * y, dim=1)
        case = device_against_cpu(x, y, h, default_deltas(x, n_deltas), device, cfg["filter_repeats"], repeats_cpu)
        cases.append({"name": name, **case, "data": source})
    return {"cases": cases}


#: the CIFAR CNN of every monitor section (``fp_lightning.models.SmallCNN``, seeded)
CNN = {"model_kwargs": {"init_seed": 0}}


def bench_monitor_split(device: str, cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """``monitor.timings`` per stage for the CIFAR CNN at each probe size: first recording and steady state."""
    from bench_monitor import images, monitor_split

    cases = []
    for probe in cfg["probes"]:
        x, y, source = images("cifar10", probe)
        run = monitor_split("cifar10", x, y, probe, 3, root, device=device, batch_size=128, **CNN)
        recordings = len(run.pop("monitor").timings)
        if recordings != 3:
            raise StepFailedError(f"probe {probe}: {recordings} recordings instead of 3")
        cases.append({"probe": probe, "data": source, **run,
                      "analysis_s": run["steady"]["spectrum"] + run["steady"]["filtering"], "recordings": recordings})
        if device == "cuda":
            _torch().cuda.empty_cache()
    return {"cases": cases}


def bench_epoch_overhead(device: str, cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """One CIFAR CNN training epoch with and without the monitor at its defaults, seeded, interleaved twice."""
    from bench_monitor import STAGES, images, one_fit, training_overhead

    n, batch = cfg["epoch_images"], 128
    x, y, source = images("cifar10", n)
    fit = {"device": device, "model": "cifar10", "batch_size": batch, "seeded_loader": True, **CNN}
    one_fit(x, y, root, 1, limit_train_batches=10, **fit)  # warm-up: CUDA context, cuDNN, first Lightning set-up
    run = training_overhead(x, y, root, 1, repeats=2, monitor_kwargs={}, **fit)
    timings = run["timings"]
    if len(timings) != 2:
        raise StepFailedError(f"the monitored run made {len(timings)} recordings instead of 2")
    recording = sum(timings[-1][stage] for stage in STAGES)  # the recording after the epoch
    plain, monitored, hooks = run["runs"]["plain"], run["runs"]["monitored"], run["hook_runs"]
    return {"images": n, "batch_size": batch, "data": source, "plain_runs_s": plain, "monitored_runs_s": monitored,
            "hook_runs_s": hooks, "plain_s": run["plain"], "monitored_s": run["monitored"],
            "wall_overhead": run["overhead_wall"], "hook_seconds": run["monitor_hook_seconds"],
            "hook_fraction": run["overhead_hooks"], "recording_s": recording,
            "recording_fraction": recording / run["plain"], "timings": timings}


def bench_profile(device: str, cfg: dict[str, Any], root: Path) -> dict[str, Any]:
    """torch.profiler over the second recording (steady state) of a CIFAR CNN run: count copies and syncs."""
    from bench_monitor import images, profile_recording

    x, y, source = images("cifar10", cfg["profile_probe"])
    counted = profile_recording(x, y, root, device, **CNN)
    if counted is None:
        raise StepFailedError("the profiled recording did not run")
    return {"probe": cfg["profile_probe"], "data": source, **counted}


SECTIONS = ("spectrum", "filtering", "monitor_split", "epoch_overhead", "profile")


def run_benchmarks(device: str, out: Path, sections: list[str]) -> int:
    """Run the named sections; each one's failure is recorded and the others still run. Exit 1 if any failed."""
    torch = _torch()
    import lightning.pytorch as L

    L.seed_everything(0, verbose=False)
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    cfg = sizes(device)
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
