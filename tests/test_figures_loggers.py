"""Figures for every kind of logger, the δ part of the keys, and the custom-scalars layout, in real fits."""

import csv
import gc
import importlib
import io
import re
import warnings

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from fp_lightning import FrequencyPrincipleMonitor
from fp_lightning.callbacks.panels import (
    PANEL_FOLDER,
    custom_scalars_layout,
    draw_panels,
    panel_file_stem,
    panel_title,
)
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError
from fp_lightning.record import FrequencyHistory, delta_key, delta_keys
from tests.conftest import EVERY_STEP

EPOCHS = 2
DELTAS = [0.1, 0.12]  # "0.1" unescaped and unanchored would also match "0.12"
PANEL_SIZE = (260, 360)  # rows, columns of a panel image: one size, TensorBoard fits each image into its card


def sine_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 4, generator=g)
    return TensorDataset(x, torch.sin(2 * torch.pi * x[:, :1]))


def sine_regressor(root="lightning.pytorch"):
    L = importlib.import_module(root)

    class SineRegressor(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

    return SineRegressor()


def fit(tmp_path, logger, root="lightning.pytorch", **monitor_kw):
    L = importlib.import_module(root)
    L.seed_everything(0, verbose=False)
    monitor_kw = {"probe_size": 100, "spectral": ProjectedSpectralError(n_freqs=16),
                  "filtering": LowHighFrequencyError(deltas=DELTAS), **monitor_kw}
    monitor = FrequencyPrincipleMonitor(**monitor_kw)
    trainer = L.Trainer(max_epochs=EPOCHS, callbacks=[monitor], logger=logger, default_root_dir=tmp_path,
                        **{**EVERY_STEP, "enable_checkpointing": False})
    loader = DataLoader(sine_data(), batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0))
    trainer.fit(sine_regressor(root), loader)
    return trainer, monitor


def expected_tags(deltas=DELTAS):
    return ["fp/delta_f_heatmap", "fp/spectra", "fp/change_ratios", "fp/low_high_heatmap"]


def png_pixels(source):
    with Image.open(source) as image:
        return np.asarray(image.convert("RGB"))


def assert_is_panel(pixels):
    assert pixels.shape[:2] == PANEL_SIZE
    assert pixels.std() > 10  # drawn, not a blank canvas


# ------------------------------------------------------------------------------------------------ δ keys
def test_delta_keys_three_significant_digits():
    assert delta_keys([0.001234567, 0.5, 12.0, 1234.5]) == ["0.00123", "0.5", "12", "1.23e+03"]
    assert delta_keys([0.0101, 0.0102, 1.0]) == ["0.0101", "0.0102", "1"]  # distinct at 3 digits already
    assert delta_key(0.0123456) == "0.0123"
    assert [float(key) for key in delta_keys([0.25, 3.0])] == [0.25, 3.0]  # parseable back


def test_delta_keys_grow_precision_for_the_whole_list_on_collision():
    assert delta_keys([0.010001, 0.010002]) == ["0.010001", "0.010002"]
    # one collision makes every δ of the list more precise, so that the keys of a run read alike
    assert delta_keys([0.123456, 0.123457, 0.0314159]) == ["0.123456", "0.123457", "0.0314159"]
    neighbours = [0.1, float(np.nextafter(0.1, 1.0))]  # adjacent doubles: 17 digits tell them apart
    keys = delta_keys(neighbours)
    assert keys == ["0.10000000000000001", "0.10000000000000002"]
    assert [float(key) for key in keys] == neighbours


@pytest.mark.parametrize("bad", [[0.1, 0.1], [0.1, -1.0], [0.0], [float("nan")], [float("inf")]])
def test_delta_keys_reject_bad_deltas_naming_the_argument(bad):
    with pytest.raises(ValueError, match="`deltas`"):
        delta_keys(bad)


def test_panel_file_stems_are_distinct_file_names():
    close = [f"fp/low_high_heatmap/delta={key}" for key in delta_keys([0.010001, 0.010002])]
    stems = [panel_file_stem(tag) for tag in [*expected_tags(), *close]]
    assert stems == ["delta_f_heatmap", "spectra", "change_ratios", "low_high_heatmap",
                     "low_high_heatmap_delta=0.010001", "low_high_heatmap_delta=0.010002"]
    assert all("/" not in stem for stem in stems)


# ------------------------------------------------------------------------------------------------ TensorBoard
def read_layout(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "images": 0, "scalars": 0}).Reload()
    (config,) = events.Tensors(metadata.CONFIG_SUMMARY_TAG)
    layout = layout_pb2.Layout()
    layout.ParseFromString(config.tensor_proto.string_val[0])
    return events, layout


@pytest.mark.slow
def test_custom_scalars_patterns_match_exactly_one_logged_key(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    # k = 1 and k = 12 tracked together: an unanchored "k=1" would match both
    trainer, monitor = fit(tmp_path, TensorBoardLogger(tmp_path, name="tb"),
                           spectral=ProjectedSpectralError(n_freqs=16, frequencies=[1, 2, 12]))
    events, layout = read_layout(trainer.log_dir)
    logged = [tag for tag in events.Tags()["scalars"] if tag.startswith("fp/")]
    assert {f"fp/delta_f/k={k}" for k in (1, 2, 12)} <= set(logged)
    matched = []
    for category in layout.category:
        for chart in category.chart:
            for pattern in chart.multiline.tag:
                hits = [tag for tag in logged if re.search(pattern, tag)]
                assert len(hits) == 1, f"{pattern!r} matches {hits}"
                matched += hits
    # every fp/ scalar is on exactly one line of the layout
    assert sorted(matched) == sorted(logged)
    # TensorBoard colours lines by run: one series per chart, or two lines of a run could not be told apart
    assert all(len(chart.multiline.tag) == 1 for category in layout.category for chart in category.chart)
    titles = {chart.title: chart.multiline.tag[0] for category in layout.category for chart in category.chart}
    for key in delta_keys(DELTAS):
        assert titles[f"e_low (δ = {key})"] == f"^fp/e_low/delta={re.escape(key)}$"
        assert titles[f"e_high (δ = {key})"] == f"^fp/e_high/delta={re.escape(key)}$"
    for k in (1, 2, 12):
        assert titles[f"Δ_F at k = {k}"] == f"^fp/delta_f/k={k}$"
    cutoff = monitor.history.cutoff
    assert f"fp: loss split at cutoff η = {cutoff}" in [category.title for category in layout.category]
    assert {f"L_low (k ≤ {cutoff})", f"L_high (k > {cutoff})"} <= set(titles)
    # the same patterns as the public function gives
    expected = custom_scalars_layout(monitor.history.freqs, monitor.history.deltas, denoised=True, cutoff=cutoff)
    assert [list(c.multiline.tag) for cat in layout.category for c in cat.chart] == [
        chart[1] for charts in expected.values() for chart in charts.values()]


@pytest.mark.slow
@pytest.mark.parametrize("root", ["lightning.pytorch", "pytorch_lightning"])
def test_tensorboard_and_csv_both_get_every_figure_at_the_global_step(tmp_path, root):
    pytest.importorskip(root)
    loggers = importlib.import_module(f"{root}.loggers")
    board, table = loggers.TensorBoardLogger(tmp_path, name="tb"), loggers.CSVLogger(tmp_path, name="csv")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*FrequencyPrincipleMonitor.*")  # no figure fault, no advisory
        trainer, monitor = fit(tmp_path, [board, table], root=root)
    steps = monitor.history.records["step"]
    assert steps == [0, 4, 8]  # before training, then after each epoch of 4 batches
    events, _ = read_layout(board.log_dir)
    assert sorted(t for t in events.Tags()["images"] if t.startswith("fp/")) == sorted(expected_tags())
    folder = tmp_path / "tb" / "version_0" / PANEL_FOLDER  # the run folder is the first logger's
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{panel_file_stem(t)}.png" for t in expected_tags())
    for tag in expected_tags():
        images = events.Images(tag)
        assert [image.step for image in images] == steps
        last = png_pixels(io.BytesIO(images[-1].encoded_image_string))
        assert_is_panel(last)
        # one drawing per recording, given to both loggers: the same pixels
        assert np.array_equal(last, png_pixels(folder / f"{panel_file_stem(tag)}.png"))
        first = png_pixels(io.BytesIO(images[0].encoded_image_string))
        assert not np.array_equal(first, last)  # the epoch in the title (and the data) changed


# ------------------------------------------------------------------------------------------------ CSV / no logger
def live_figures():
    gc.collect()
    return sum(type(obj) is Figure for obj in gc.get_objects())  # type(): no attribute lookup on odd objects


@pytest.mark.slow
def test_csv_logger_gets_png_files_and_scalars(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    before = live_figures()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*FrequencyPrincipleMonitor.*")
        trainer, monitor = fit(tmp_path, CSVLogger(tmp_path, name="csv"))
    assert live_figures() == before  # every figure drawn during the fit was freed
    folder = tmp_path / "csv" / "version_0"
    for tag in expected_tags():
        assert_is_panel(png_pixels(folder / PANEL_FOLDER / f"{panel_file_stem(tag)}.png"))
    assert not list((folder / PANEL_FOLDER).glob("*.png.*")) and not list((folder / PANEL_FOLDER).glob("tmp*"))
    with open(folder / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    logged = [row for row in rows if row.get("fp/loss_low")]
    assert len(logged) == 3
    for k in monitor.history.freqs:
        values = [float(row[f"fp/delta_f/k={k}"]) for row in logged]
        history = [row[monitor.history.freqs.index(k)] for row in monitor.history.records["delta_f"]]
        assert values == pytest.approx(history, rel=1e-6)


@pytest.mark.slow
def test_no_logger_writes_png_files_in_the_root_folder(tmp_path):
    trainer, monitor = fit(tmp_path, False)
    files = sorted(p.name for p in (tmp_path / PANEL_FOLDER).iterdir())
    assert files == sorted(f"{panel_file_stem(tag)}.png" for tag in expected_tags())


@pytest.mark.slow
def test_panel_titles_give_the_completed_epochs(tmp_path):
    trainer, monitor = fit(tmp_path, False, log_images=False)
    assert not (tmp_path / PANEL_FOLDER).exists()  # log_images=False draws nothing
    figures = draw_panels(monitor.history)
    titles = {tag: panel_title(figure) for tag, figure in figures.items()}
    assert list(titles) == expected_tags()
    # the history counts completed epochs: the recording after the last epoch (Lightning's current_epoch
    # EPOCHS - 1) holds EPOCHS, and the titles say "after EPOCHS epochs", never "epoch EPOCHS"
    assert monitor.history.records["epoch"][-1] == EPOCHS
    assert all(title.endswith(f"after {EPOCHS} epochs") for title in titles.values())
    assert titles["fp/low_high_heatmap"].startswith(r"$e_{\mathrm{low}}$, $e_{\mathrm{high}}$ per $\delta$,")
    assert figures["fp/delta_f_heatmap"].axes[0].get_xlabel() == "epochs completed"
    assert figures["fp/low_high_heatmap"].axes[0].get_xlabel() == "epochs completed"  # under both heatmaps
    history = monitor.history
    first = FrequencyHistory(freqs=history.freqs, deltas=history.deltas, cutoff=history.cutoff,
                             target_amplitude=history.target_amplitude)
    first.append(**{key: values[0] for key, values in history.records.items()})
    assert all(panel_title(figure).endswith("before training") for figure in draw_panels(first).values())


# ------------------------------------------------------------------------------------------------ W&B, MLflow
@pytest.mark.slow
@pytest.mark.integration
def test_wandb_offline_gets_every_figure(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    try:
        trainer, monitor = fit(tmp_path, logger)
        media = tmp_path.joinpath(logger.experiment.dir, "media", "images")
        run_dir = logger.experiment.dir
    finally:
        logger.experiment.finish()
    assert str(tmp_path) in str(run_dir)
    written = [p.relative_to(media).as_posix() for p in media.rglob("*.png")]
    for tag in expected_tags():
        # W&B names a media file <key>_<its own step>_<hash>.png
        mine = [name for name in written if re.fullmatch(re.escape(tag) + r"_\d+_[0-9a-f]+\.png", name)]
        assert len(mine) == len(monitor.history), (tag, written)
        assert_is_panel(png_pixels(media / mine[0]))


@pytest.mark.slow
@pytest.mark.integration
def test_mlflow_gets_a_png_artifact_per_tag_and_step(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow ≥ 3.7 asks for this to keep a local file store

    logger = MLFlowLogger(experiment_name="fp", tracking_uri=f"file:{tmp_path}/mlruns")
    trainer, monitor = fit(tmp_path, logger)
    run = logger.experiment.get_run(logger.run_id)
    artifacts = run.info.artifact_uri.removeprefix("file://").removeprefix("file:")
    root = tmp_path.joinpath(artifacts, PANEL_FOLDER)
    for tag in expected_tags():
        files = sorted(p.name for p in (root / panel_file_stem(tag)).iterdir())
        assert files == [f"step_{step:06d}.png" for step in monitor.history.records["step"]]
        assert_is_panel(png_pixels(root / panel_file_stem(tag) / files[-1]))
    assert "fp/loss_low" in run.data.metrics


# ------------------------------------------------------------------------------------------------ legibility
def long_history(recordings=300, every=50, n_freqs=30, deltas=(0.00431, 0.0151)):
    rng = np.random.default_rng(0)
    freqs = list(range(1, 2 * n_freqs, 2))
    history = FrequencyHistory(freqs=freqs, deltas=list(deltas), cutoff=9,
                               target_amplitude=(1 + rng.random(2 * n_freqs + 1)).tolist())
    for i in range(recordings):
        history.append(epoch=i * every, step=i * every * 7, delta_f=rng.random(n_freqs), e_low=rng.random(len(deltas)),
                       e_high=rng.random(len(deltas)), loss_low=1.0, loss_high=1.0, low_share=0.5,
                       output_amplitude=rng.random(2 * n_freqs + 1).tolist(),
                       loss_change_ratio=np.sort(rng.random(2 * n_freqs))[::-1].tolist(),
                       window_change_ratio=np.sort(rng.random(2 * n_freqs))[::-1].tolist(),
                       output_change_ratio=np.sort(rng.random(2 * n_freqs))[::-1].tolist())
    return history


def drawn_ticks(axis):
    """The tick labels matplotlib draws: those inside the view limits."""
    low, high = sorted(axis.get_view_interval())
    return [tick.label1 for tick in axis.get_major_ticks()
            if low - 1e-9 <= tick.get_loc() <= high + 1e-9 and tick.label1.get_visible()]


@pytest.mark.slow
@pytest.mark.parametrize("recordings", [3, 41, 300])
def test_panel_text_stays_inside_and_tick_labels_never_overlap(recordings):
    for tag, figure in draw_panels(long_history(recordings)).items():
        canvas = FigureCanvasAgg(figure)  # what the loggers' images are rendered with
        canvas.draw()
        renderer = canvas.get_renderer()
        page = figure.bbox
        texts = [text for ax in figure.axes for text in (*drawn_ticks(ax.xaxis), *drawn_ticks(ax.yaxis), ax.title,
                                                         ax.xaxis.label, ax.yaxis.label) if text.get_text()]
        for text in texts:
            box = text.get_window_extent(renderer)
            assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, (tag, text.get_text())
            assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, (tag, text.get_text())
        main = figure.axes[0]
        for labels in (drawn_ticks(main.xaxis), drawn_ticks(main.yaxis)):
            boxes = [label.get_window_extent(renderer) for label in labels if label.get_text()]
            assert len(boxes) >= 2
            for first, second in zip(boxes, boxes[1:]):
                assert not first.overlaps(second), (tag, [label.get_text() for label in labels])
        if "heatmap" in tag:  # the colourbar says what red means
            assert any("red = fitted" in ax.get_ylabel() for ax in figure.axes)
    spectra = draw_panels(long_history(recordings))["fp/spectra"]
    assert [t.get_text() for t in spectra.axes[0].get_legend().get_texts()] == [
        "target |F[y]|", "network |F[h]|", "tracked k", r"cutoff $\eta$ = 9"]


# ------------------------------------------------------------------------------------------------ keys of a run
@pytest.mark.slow
@pytest.mark.parametrize(("deltas", "keys"), [([0.0123456, 0.5], ["0.0123", "0.5"]),
                                              ([0.010001, 0.010002], ["0.010001", "0.010002"])])
def test_logged_keys_layout_and_image_tags_share_the_delta_form(tmp_path, deltas, keys):
    from lightning.pytorch.loggers import TensorBoardLogger

    trainer, monitor = fit(tmp_path, TensorBoardLogger(tmp_path, name="tb"),
                           filtering=LowHighFrequencyError(deltas=deltas))
    logged = sorted(key for key in trainer.callback_metrics if key.startswith(("fp/e_low/", "fp/e_high/")))
    assert logged == sorted([f"fp/e_low/delta={key}" for key in keys] + [f"fp/e_high/delta={key}" for key in keys])
    events, layout = read_layout(trainer.log_dir)
    assert [t for t in events.Tags()["images"] if t.startswith("fp/low_high")] == ["fp/low_high_heatmap"]
    rows = draw_panels(monitor.history)["fp/low_high_heatmap"].axes
    assert [[t.get_text() for t in ax.get_yticklabels()] for ax in rows[:2]] == [keys, keys]  # the logged δ form
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    for key in keys:
        for part in ("e_low", "e_high"):
            lines = charts[f"{part} (δ = {key})"]
            shown = [tag for tag in events.Tags()["scalars"] if any(re.search(p, tag) for p in lines)]
            assert shown == [f"fp/{part}/delta={key}"]
    # the e_low of each δ is the history's value for that δ (not another δ's, as a key collision would give)
    for j, key in enumerate(keys):
        assert float(trainer.callback_metrics[f"fp/e_low/delta={key}"]) == pytest.approx(
            monitor.history.records["e_low"][-1][j], rel=1e-6)


@pytest.mark.slow
def test_a_failing_destination_warns_once_and_the_others_still_get_figures(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    run_folder = tmp_path / "tb" / "version_0"
    run_folder.mkdir(parents=True)
    (run_folder / PANEL_FOLDER).write_text("a file where the PNG folder should go")
    board = TensorBoardLogger(tmp_path, name="tb", version=0)
    with pytest.warns(UserWarning, match=r"could not write the figures to PNG files: FileExistsError") as caught:
        trainer, monitor = fit(tmp_path, [board, CSVLogger(tmp_path, name="csv")])
    assert sum("could not write the figures" in str(w.message) for w in caught) == 1  # once, not per recording
    events, _ = read_layout(board.log_dir)
    assert [image.step for image in events.Images("fp/spectra")] == monitor.history.records["step"]
    assert trainer.current_epoch == EPOCHS
