"""Figs. 2, 7 and 8 of the F-Principle paper: their data, networks and configs (short runs only).

The data are checked against numpy (the grid subset of Fig. 7b, the image's odd columns of Fig. 2), the configs are
built and trained for a few steps in a real Trainer through the ``fp-lightning fit`` command, and the helpers of the
two example scripts are checked against direct computations.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import lightning.pytorch as pl
import matplotlib.image
import numpy as np
import pytest
import torch

from fp_lightning.data import ImageRegression2DDataModule, Staircase1DDataModule, load_grey_image, sample_image_path
from fp_lightning.models import TanhMLP1D

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "examples" / "configs"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _example(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` as a module (the scripts are not part of the package)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO_ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ Fig. 7b data
def test_grid_subset_draws_distinct_points_of_the_evenly_spaced_grid() -> None:
    dm = Staircase1DDataModule(preset="fig3", n_train=600, sampling="grid_subset", grid_size=3000, seed=3)
    grid = np.linspace(-1.0, 1.0, 3000)
    x = dm.x_train[:, 0].double().numpy()
    index = np.abs(x[:, None] - grid[None, :]).argmin(1)
    assert np.abs(grid[index] - x).max() < 1e-6  # every point is a grid point (float32 rounding only)
    assert len(np.unique(index)) == 600 and np.all(np.diff(index) > 0)  # distinct and sorted
    np.testing.assert_array_equal(dm.y_train[:, 0].numpy(), 0.5 * np.round(grid[index] / 0.5).astype(np.float32))
    # spread over the whole interval, not a block of it
    assert index.min() < 30 and index.max() > 2970
    again = Staircase1DDataModule(preset="fig3", n_train=600, sampling="grid_subset", grid_size=3000, seed=3)
    other = Staircase1DDataModule(preset="fig3", n_train=600, sampling="grid_subset", grid_size=3000, seed=4)
    assert torch.equal(again.x_train, dm.x_train) and not torch.equal(other.x_train, dm.x_train)


@pytest.mark.parametrize("grid_size", [None, 599, 2.5])
def test_grid_subset_needs_a_grid_at_least_as_large_as_the_sample(grid_size: object) -> None:
    with pytest.raises(ValueError, match="grid_size"):
        Staircase1DDataModule(preset="fig3", n_train=600, sampling="grid_subset", grid_size=grid_size)


def test_unknown_sampling_names_the_choices() -> None:
    with pytest.raises(ValueError, match="`sampling` must be one of"):
        Staircase1DDataModule(sampling="sobol")


# ------------------------------------------------------------------------------------------------ Fig. 2 data
def test_grey_image_is_the_luma_of_the_block_means_of_the_crop() -> None:
    rgb = matplotlib.image.imread(sample_image_path()).astype(np.float64) / 255.0
    crop = rgb[100:356, 128:384, :3]
    blocks = crop.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))  # 256 → 64: 4 × 4 block means
    expected = blocks @ np.array([0.299, 0.587, 0.114])
    grey = load_grey_image(crop=(100, 128, 256, 256), size=(64, 64))
    np.testing.assert_allclose(grey.numpy(), expected, atol=1e-12)


def test_image_datamodule_trains_on_odd_columns_and_holds_out_even_ones() -> None:
    dm = ImageRegression2DDataModule(crop=(100, 128, 256, 256), size=(64, 48), probe_row=22, coordinates="unit")
    image = dm.image.numpy()
    height, width = image.shape
    assert (height, width) == (64, 48)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))  # row-major, as image[i, j]
    odd = cols % 2 == 1
    x = -1 + 2 * cols / (width - 1)
    y = -1 + 2 * rows / (height - 1)
    np.testing.assert_allclose(dm.x_train.numpy(), np.stack([x[odd], y[odd]], 1), atol=1e-6)
    np.testing.assert_array_equal(dm.y_train[:, 0].numpy(), image[odd])
    np.testing.assert_allclose(dm.x_test.numpy(), np.stack([x[~odd], y[~odd]], 1), atol=1e-6)
    np.testing.assert_array_equal(dm.y_test[:, 0].numpy(), image[~odd])
    x_row, y_row = dm.row_data()
    np.testing.assert_array_equal(y_row[:, 0].numpy(), image[22, 1::2])
    np.testing.assert_allclose(np.diff(x_row[:, 0].numpy()), 4 / (width - 1), rtol=1e-5)  # every other column
    np.testing.assert_allclose(x_row[:, 1].numpy(), y[22, 0], rtol=1e-6)
    in_pixels = ImageRegression2DDataModule(crop=(100, 128, 256, 256), size=(64, 48))
    np.testing.assert_array_equal(in_pixels.x_train.numpy(), np.stack([cols[odd], rows[odd]], 1))
    train_batch = next(iter(dm.train_dataloader()))
    held_out_batch = next(iter(dm.val_dataloader()))
    assert len(train_batch[0]) == len(held_out_batch[0]) == height * width // 2


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"train_columns": "left"}, "train_columns"),
    ({"probe_row": 48}, "probe_row"),
    ({"crop": (500, 0, 200, 100)}, "crop"),
    ({"size": (0, 10)}, "size"),
    ({"batch_size": 0}, "batch_size"),
    ({"coordinates": "polar"}, "coordinates"),
])
def test_image_datamodule_bad_arguments_are_named(kwargs: dict, argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ImageRegression2DDataModule(**{"size": (48, 48), **kwargs})


# ------------------------------------------------------------------------------------------------ networks
def test_relu_and_two_dimensional_inputs_with_a_chosen_init_std() -> None:
    relu = TanhMLP1D(in_features=2, hidden=(64, 32), activation="relu", init_std=0.5, init_seed=0)
    tanh = TanhMLP1D(in_features=2, hidden=(64, 32), activation="tanh", init_std=0.5, init_seed=0)
    assert all(torch.equal(a, b) for a, b in zip(relu.parameters(), tanh.parameters(), strict=True))
    weights = torch.cat([p.detach().flatten() for p in relu.parameters()])
    assert abs(float(weights.std()) - 0.5) < 0.02 and abs(float(weights.mean())) < 0.02
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(1))
    first, second, last = relu.net[0], relu.net[2], relu.net[4]
    by_hand = last(torch.relu(second(torch.relu(first(x)))))  # ReLU between the layers, none after the last
    torch.testing.assert_close(relu(x), by_hand)
    assert not torch.allclose(relu(x), tanh(x))


# ------------------------------------------------------------------------------------------------ configs
def _cli_objects(config: str) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    from lightning.pytorch.cli import LightningCLI

    cli = LightningCLI(args=["--config", str(CONFIGS / config), "--trainer.logger=false"], run=False)
    return cli.model, cli.datamodule


@pytest.mark.slow
def test_fig7_configs_build_the_papers_settings() -> None:
    model, dm = _cli_objects("fig7a_relu.yaml")
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())
    assert not any(isinstance(m, torch.nn.Tanh) for m in model.modules())
    np.testing.assert_allclose(dm.x_train[:, 0].numpy(), np.linspace(-1, 1, 601), atol=1e-6)
    model, dm = _cli_objects("fig7b_random_points.yaml")
    widths = [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [400, 400, 400, 200, 200, 1]
    assert len(dm.x_train) == 600 and dm.sampling == "grid_subset" and dm.grid_size == 3000


@pytest.mark.slow
def test_fig2_configs_differ_only_in_the_init_std() -> None:
    small, dm = _cli_objects("fig2_image_small_init.yaml")
    large, _ = _cli_objects("fig2_image_large_init.yaml")
    assert dict(small.hparams, init_std=None) == dict(large.hparams, init_std=None)
    for model, std in ((small, 0.01), (large, 0.5)):
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        assert abs(float(weights.std()) / std - 1) < 0.02
    assert small.in_features == 2 and isinstance(dm, ImageRegression2DDataModule)


# ------------------------------------------------------------------------------------------------ example scripts
def test_fig8_flatness_numbers_against_direct_values() -> None:
    fig8 = _example("fig8_extrapolation")
    x = np.linspace(0, 4 * np.pi, 20001)  # two whole periods: ∫|cos| = 8 over a length 4π
    assert fig8.total_variation_per_length(x, np.sin(x)) == pytest.approx(2 / np.pi, rel=1e-6)
    assert fig8.total_variation_per_length(x, 0.3 * x) == pytest.approx(0.3)
    assert fig8.local_extrema(np.sin(x)) == 4  # π/2, 3π/2, 5π/2, 7π/2
    assert fig8.local_extrema(np.tanh(x - 5)) == 0 and fig8.local_extrema(np.ones(5)) == 0


@pytest.mark.slow
def test_fig2_snapshots_and_row_spectrum(tmp_path: Path) -> None:
    fig2 = _example("fig2_image")
    path = tmp_path / "snapshots.npz"
    saved = fig2.train(CONFIGS / "fig2_image_large_init.yaml", every=4, path=path,
                       overrides=["--trainer.max_epochs=1", "--trainer.logger=false", *QUIET,
                                  f"--trainer.default_root_dir={tmp_path}"])
    assert saved["steps"].tolist() == [0, 4, 8, 9]  # 1152 pixels in batches of 128: 9 steps, and the end
    with np.load(path) as on_disk:  # rewritten at every snapshot
        np.testing.assert_array_equal(on_disk["images"], saved["images"])
    assert float(saved["init_std"]) == 0.5
    curves = fig2.analyse(saved)
    mask, target, row = curves.train_mask, curves.target, curves.probe_row
    # Δ_F by numpy's FFT of the row's training pixels (the DFT grid)
    y_fft = np.fft.fft(target[row][mask[row]])
    h_fft = np.fft.fft(curves.images[-1][row][mask[row]])
    k = curves.peaks
    np.testing.assert_allclose(curves.delta_f[-1], np.abs(y_fft[k] - h_fft[k]) / np.abs(y_fft[k]), rtol=1e-4)
    np.testing.assert_allclose(curves.target_amplitude, np.abs(y_fft[: len(curves.target_amplitude)]), rtol=1e-6)
    np.testing.assert_allclose(curves.heldout_mse[0], ((curves.images[0] - target)[~mask] ** 2).mean(), rtol=1e-6)
    fig2.draw({"small init": curves, "large init": curves}, tmp_path / "fig2.png")
    assert (tmp_path / "fig2.png").stat().st_size > 10_000


@pytest.mark.slow
def test_fig7b_grid_probe_measures_on_the_whole_grid(tmp_path: Path) -> None:
    _example("fig7b_grid_probe").main(["--trainer.max_epochs=1", *QUIET,
                                       f"--trainer.logger.init_args.save_dir={tmp_path}"])
    (history_path,) = tmp_path.rglob("fp_history.npz")
    history = np.load(history_path)
    grid = np.linspace(-1.0, 1.0, 3000)
    y = 0.5 * np.round(grid / 0.5)
    # evenly spaced probe: the monitor's spectrum is numpy's FFT of the 3000 grid values (float32 targets)
    np.testing.assert_allclose(history["target_amplitude"], np.abs(np.fft.fft(y))[:40], rtol=1e-4, atol=1e-3)
    assert history["freqs"].tolist() == [1, 4, 12, 20, 28, 36]
