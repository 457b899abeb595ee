"""The prepared GPU check keeps working: ``bash benchmarks/gpu_check.sh OUT --device cpu`` as a user runs it.

The full run exercises every step (install check, environment, the ``gpu``-marked tests on the CPU, every benchmark
section, here at the smaller sizes of ``FP_CHECK_SIZES``: the harness is under test, not the timings); the
self-test variable ``FP_CHECK_FAIL`` proves that a failing step ends in a non-zero exit that names it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
SECTIONS = ("spectrum", "filtering", "monitor_split", "epoch_overhead", "profile")
#: benchmark sizes below the CPU defaults (the counts the assertions name, δ per case and recordings, are kept)
SMALL = {"spectrum_n": 500, "spectrum_k": 50, "cifar_n": 100, "mnist_n": 200, "probes": [100, 150],
         "epoch_images": 128, "profile_probe": 100, "repeats": 1,
         # the gpu tests without a Trainer: the step's harness is under test, the Trainer ones run in every real check
         "tests_k": "not trainer and not early_stopping and not bit_identical"}


def check_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable, FP_CHECK_SIZES=json.dumps(SMALL), **extra)
    if "FP_CHECK_FAIL" not in extra:
        env.pop("FP_CHECK_FAIL", None)
    return env


def run_check(out_dir: Path, *args: str, fail: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    env = check_env() if fail is None else check_env(FP_CHECK_FAIL=fail)
    return subprocess.run(["bash", str(SCRIPT), str(out_dir), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO.parent)


def numbers(tree) -> list[float]:
    """Every int/float leaf of a JSON tree (booleans excluded)."""
    if isinstance(tree, dict):
        return [x for value in tree.values() for x in numbers(value)]
    if isinstance(tree, list):
        return [x for value in tree for x in numbers(value)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


@pytest.mark.slow
def test_cpu_check_passes_and_reports_every_section(tmp_path):
    proc = run_check(tmp_path / "out", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU CHECK PASSED (cpu" in proc.stdout

    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["ok"] and report["failed_steps"] == []
    assert all(report["sizes"][key] == value for key, value in SMALL.items())
    assert [name for name in report["steps"] if not name.startswith("bench:")] == ["install", "environment", "tests"]
    tests = report["steps"]["tests"]["details"]
    assert tests["passed"] >= 8 and tests["failed"] == 0 and tests["skipped"] == 0
    bench = report["benchmarks"]
    assert set(bench) == set(SECTIONS)
    for name in SECTIONS:
        assert bench[name]["ok"], (name, bench[name].get("error"))
        values = numbers(bench[name])
        assert values and all(math.isfinite(v) for v in values), name

    spectrum = bench["spectrum"]["backends"]
    assert set(spectrum) == {"finufft (cpu)", "direct (cpu)"}
    assert all(r["rel_error"] < 1e-6 and r["median_s"] > 0 for r in spectrum.values())
    assert [c["n_deltas"] for c in bench["filtering"]["cases"]] == [20, 3]
    assert all(c["max_rel_diff"] == 0 for c in bench["filtering"]["cases"])  # same code, same device: same bits
    split = bench["monitor_split"]["cases"]
    assert [c["recordings"] for c in split] == [3, 3]
    assert all(set(c["steady"]) == {"forward", "spectrum", "filtering", "logging"} for c in split)
    overhead = bench["epoch_overhead"]
    assert len(overhead["plain_runs_s"]) == len(overhead["monitored_runs_s"]) == 2
    assert 0 < overhead["recording_s"] < overhead["monitored_s"]
    assert bench["profile"]["totals"]["aten_to"] > 0  # the CPU profiler sees the conversions too

    table = (tmp_path / "out" / "gpu_check.txt").read_text()
    assert "target monitor ≤ 5% of a CIFAR-10 CNN epoch" in table and "step tests" in table
    assert (tmp_path / "out" / "gpu_check.log").stat().st_size > 0


def test_an_injected_failure_exits_non_zero_naming_the_step(tmp_path):
    proc = run_check(tmp_path / "out", "--device", "cpu", fail="environment")
    assert proc.returncode == 1
    assert "failed steps: environment" in proc.stdout
    assert "FP_CHECK_FAIL=environment (self-test)" in proc.stdout
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["failed_steps"] == ["environment"] and not report["ok"]
    assert report["steps"]["install"]["ok"] and "tests" not in report["steps"]  # nothing runs without the environment


@pytest.mark.slow
def test_a_failing_benchmark_section_is_named_and_the_others_still_run(tmp_path):
    out = tmp_path / "bench.json"
    env = check_env(FP_CHECK_FAIL="bench:spectrum")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "bench", "--device", "cpu",
                           "--out", str(out), "--sections", "spectrum", "profile"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    sections = json.loads(out.read_text())
    assert not sections["spectrum"]["ok"] and "FP_CHECK_FAIL=bench:spectrum" in sections["spectrum"]["error"]
    assert sections["profile"]["ok"]


@pytest.mark.parametrize(("args", "message"), [
    ([], "usage: bash benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu]"),
    (["OUT", "--device", "tpu"], "--device must be cuda or cpu, got 'tpu'"),
    (["OUT", "--device"], "usage: bash benchmarks/gpu_check.sh OUT_DIR"),
    (["OUT", "--bogus"], "unknown argument: --bogus"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path, args, message):
    args = [str(tmp_path / a) if a == "OUT" else a for a in args]
    proc = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "OUT").exists()  # nothing is created before the arguments are valid
