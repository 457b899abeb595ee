"""``examples/fig6_curriculum_table.py``: E[y | x] of the noisy staircase, and the table read from a real run."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

from fp_lightning.callbacks import PeakCurriculum
from fp_lightning.cli import main
from tests._paths import REPO_ROOT

CONFIG = REPO_ROOT / "examples" / "configs" / "fig6_curriculum_high_to_low.yaml"


def _table_module() -> ModuleType:
    """Import the example script as a module (the scripts are not part of the package)."""
    spec = importlib.util.spec_from_file_location("example_fig6_curriculum_table",
                                                  REPO_ROOT / "examples" / "fig6_curriculum_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_expected_staircase_is_the_mean_over_the_noise():
    table = _table_module()
    x = np.linspace(-10, 10, 41)
    rng = np.random.default_rng(0)
    draws = 0.5 * np.round((np.sin(x)[None, :] + 0.1 * rng.standard_normal((100_000, x.size))) / 0.5)
    monte_carlo = draws.mean(axis=0)
    standard_error = draws.std(axis=0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(table.expected_staircase(x) - monte_carlo) <= 5 * standard_error + 1e-12)
    # with almost no noise it is the staircase itself (no point of this grid lies on a rounding boundary)
    np.testing.assert_allclose(table.expected_staircase(x, noise_std=1e-4), 0.5 * np.round(np.sin(x) / 0.5),
                               atol=1e-9)


def test_moves_keep_the_starting_peak_when_the_first_recording_already_moved():
    table = _table_module()
    moves = table.curriculum_moves(np.array([50, 100, 150, 200]), np.array([7.0, 7.0, 11.0, 11.0]), first_peak=3)
    assert moves == [(0, 3), (50, 7), (150, 11)]


@pytest.mark.slow
def test_table_of_a_real_high_to_low_run_matches_the_curriculum_replayed_on_its_history(tmp_path: Path):
    config = yaml.safe_load(CONFIG.read_text())
    config["model"]["init_args"]["hidden"] = [16, 16]  # small, fast; the task and the loss are the config's
    config["trainer"].update(max_epochs=5, check_val_every_n_epoch=1, enable_progress_bar=False,
                             enable_model_summary=False)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path)
    monitor, curriculum = config["trainer"]["callbacks"]
    monitor["init_args"].update(every_n_epochs=1, log_images=False)  # figures are not what is tested here
    curriculum["init_args"]["max_steps_per_peak"] = 2  # the budget moves it every other epoch
    small = tmp_path / "fig6_h2l_small.yaml"
    small.write_text(yaml.safe_dump(config, allow_unicode=True))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["fit", "--config", str(small), f"--trainer.default_root_dir={tmp_path}"]) == 0
    run_dir = tmp_path / "fig6_curriculum_high_to_low" / "version_0"

    table = _table_module()
    summary = table.summarize(run_dir)

    history = np.load(run_dir / "fp_history.npz")
    freqs = [int(k) for k in history["freqs"]]
    replay = PeakCurriculum(freqs, n_samples=300, direction="high_to_low", threshold=0.1, max_steps_per_peak=2)
    for step, row in zip(history["step"][1:], history["delta_f"][1:]):  # the epoch-0 recording is not a check
        replay.update(dict(zip(freqs, row.tolist())), int(step))
    assert summary.moves == [tuple(t) for t in replay.transitions]
    assert len(summary.moves) >= 3  # it did move, from the highest peak down
    assert summary.moves[0] == (0, max(freqs))
    assert summary.final_epoch == 5 and 1 <= summary.best_epoch <= 5
    row = table.markdown_table([summary]).splitlines()[-1]
    assert row.startswith("| fig6_curriculum_high_to_low |") and f"0 → {max(freqs)}" in row
