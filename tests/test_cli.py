"""The ``fp-lightning`` command: demo, report, LightningCLI configs, usage errors (short runs only)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import yaml

from fp_lightning.cli import main
from fp_lightning.record import FrequencyHistory
from tests._paths import REPO_ROOT, SHARED_DATA, require_shared

CONFIGS = sorted((REPO_ROOT / "examples" / "configs").glob("*.yaml"))
TINY_DEMO = ["--epochs", "1", "--subset-size", "300", "--probe-size", "200", "--accelerator", "cpu"]


def _run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("fp_runs")
    code, printed = _run(["demo", *TINY_DEMO, "--output", str(output)])
    assert code == 0
    return output / "mnist_fc" / "version_0", printed


@pytest.mark.slow
def test_demo_writes_history_report_and_tensorboard_logs(demo_run: tuple[Path, str]) -> None:
    run_dir, printed = demo_run
    history = np.load(run_dir / "fp_history.npz")
    assert history["epoch"].tolist() == [0, 1]
    assert history["delta_f"].shape == (2, len(history["freqs"]))
    assert (run_dir / "fp_report.png").stat().st_size > 10_000
    assert list(run_dir.glob("events.out.tfevents.*"))
    assert f"tensorboard --logdir {run_dir.parent}" in printed
    assert str(run_dir / "fp_report.png") in printed
    assert "1st epoch <0.1" in printed  # the per-k summary table


@pytest.mark.slow
def test_report_redraws_png_from_the_saved_history(demo_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = demo_run
    png = run_dir / "fp_report.png"
    png.unlink()
    code, printed = _run(["report", str(run_dir.parent.parent)])  # searched recursively
    assert code == 0 and png.stat().st_size > 10_000
    assert str(png) in printed
    custom = tmp_path / "sub" / "mine.png"
    code, _ = _run(["report", str(run_dir / "fp_history.npz"), "--output", str(custom)])
    assert code == 0 and custom.is_file()


def test_report_without_history_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "RUN_DIR" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "option"), [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--dataset", "svhn"], "--dataset"),
    (["--model", "resnet"], "--model"),
    (["--probe-size", "1"], "--probe-size"),
    (["--lr", "-1e-3"], "--lr"),
    (["--subset-size", "20000"], "--subset-size"),
])
def test_demo_bad_arguments_exit_2_naming_the_option(args: list[str], option: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *args, "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_demo_cifar10_without_data_names_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"), "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--data-dir" in err and "CIFAR-10" in err


def test_no_subcommand_prints_help() -> None:
    code, printed = _run([])
    assert code == 2 and "demo" in printed and "report" in printed


def test_every_paper_experiment_has_a_config() -> None:
    names = {path.name for path in CONFIGS}
    assert names >= {"fig1_mnist_fc.yaml", "fig1_mnist_cnn.yaml", "fig1_cifar10_fc.yaml", "fig1_cifar10_cnn.yaml",
                     "fig2_image_small_init.yaml", "fig2_image_large_init.yaml", "fig3_staircase.yaml",
                     "fig4_sin3.yaml", "fig5a_low_to_high.yaml", "fig5b_high_to_low.yaml", "fig6_noise.yaml",
                     "fig7a_relu.yaml", "fig7b_random_points.yaml", "fig8_extrapolation.yaml",
                     "fig6_curriculum_low_to_high.yaml", "fig6_curriculum_high_to_low.yaml",
                     "theory_fig1_mse.yaml", "theory_fig2_l4.yaml"}


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_config_fits_a_short_version(config: Path, tmp_path: Path) -> None:
    args = ["fit", "--config", str(config), "--trainer.max_epochs=1", "--trainer.enable_checkpointing=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}"]
    if config.stem.startswith("fig1"):
        args += ["--data.init_args.subset_size=128", "--trainer.limit_train_batches=2"]
    if "cifar10" in config.stem:
        require_shared("cifar-10-batches-py/test_batch")
        args.append(f"--data.init_args.data_dir={SHARED_DATA}")
    code, printed = _run(args)
    assert code == 0
    histories = list(tmp_path.rglob("fp_history.npz"))
    assert len(histories) == 1
    assert (histories[0].parent / "fp_report.png").is_file()
    history = np.load(histories[0])
    assert history["epoch"].tolist()[0] == 0 and np.all(np.isfinite(history["delta_f"][0]))
    assert "tensorboard --logdir" in printed


@pytest.mark.slow
def test_config_override_with_a_bad_value_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIGS[0]), "--trainer.max_epochs=abc"])
    assert exit_info.value.code == 2
    assert "max_epochs" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ options checked by parsing
def _config_with(tmp_path: Path, monitor_args: dict, stopper_args: dict | None = None) -> Path:
    """The Fig. 3 config, its monitor's arguments updated, optionally a FrequencyEarlyStopping, logs in tmp_path."""
    config = yaml.safe_load((REPO_ROOT / "examples" / "configs" / "fig3_staircase.yaml").read_text())
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "logs")
    config["trainer"]["default_root_dir"] = str(tmp_path)
    monitor = config["trainer"]["callbacks"][0]["init_args"]
    for name, cls in (("spectral", "ProjectedSpectralError"), ("filtering", "LowHighFrequencyError")):
        if name in monitor_args:  # a configured Metric: its own init_args
            monitor.setdefault(name, {"class_path": f"fp_lightning.metrics.{cls}", "init_args": {}})
            monitor[name]["init_args"].update(monitor_args[name])
    monitor.update({key: value for key, value in monitor_args.items() if key not in ("spectral", "filtering")})
    if stopper_args is not None:
        config["trainer"]["callbacks"].append({"class_path": "fp_lightning.FrequencyEarlyStopping",
                                               "init_args": stopper_args})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(("monitor_args", "stopper_args", "key"), [
    ({"spectral": {"backend": "fftw"}}, None, "backend"),
    ({"filtering": {"filter_precision": "float16"}}, None, "filter_precision"),
    ({"output_transform": "relu"}, None, "output_transform"),
    ({}, {"delta": "median"}, "delta"),
    ({}, {"low_metric": "loss"}, "low_metric"),
])
def test_a_bad_option_in_a_config_is_rejected_before_training(monitor_args: dict, stopper_args: dict | None,
                                                               key: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_with(tmp_path, monitor_args, stopper_args)
    with pytest.raises(SystemExit) as exit_info:  # argument parsing exits; a constructor would raise ValueError
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 2
    assert f'Parser key "{key}"' in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.yaml"]  # no logs: nothing trained


def test_the_same_config_with_valid_options_parses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monitor_args = {"spectral": {"backend": "direct"}, "filtering": {"filter_precision": "float64"},
                    "output_transform": "identity"}
    config = _config_with(tmp_path, monitor_args, {"delta": 0.05, "low_metric": "delta_f"})
    with pytest.raises(SystemExit) as exit_info:  # --print_config parses, prints and exits without training
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "backend: direct" in printed and "low_metric: delta_f" in printed


def test_report_finds_a_history_saved_under_another_name(tmp_path: Path) -> None:
    history = FrequencyHistory(freqs=[1, 4], deltas=[0.1, 0.5], cutoff=1, target_amplitude=[3.0, 2.0, 0.5, 0.2, 1.0])
    for epoch, fitted in enumerate((0.0, 0.5, 0.9)):
        history.append(epoch=epoch, step=10 * epoch, delta_f=[1 - fitted, 1 - fitted / 2], e_low=[0.5, 0.4],
                       e_high=[0.9, 0.8], loss_low=2.0 - fitted, loss_high=1.0, low_share=0.5,
                       output_amplitude=[3.0 * fitted, 2.0 * fitted, 0.1, 0.1, 0.1])
    run = tmp_path / "run" / "version_0"
    history.save(run / "mine.npz", meta={"probe_size": 5})
    np.savez(run / "weights.npz", w=np.zeros(3))  # another .npz in the run folder: not a history
    (tmp_path / "broken.npz").write_bytes(b"not a zip archive")
    code, printed = _run(["report", str(tmp_path)])
    assert code == 0
    assert (run / "fp_report.png").stat().st_size > 10_000
    assert printed.count("report: ") == 1 and str(run / "fp_report.png") in printed
