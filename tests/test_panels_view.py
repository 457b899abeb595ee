"""What a person reads in the figures: ranges that hold the data, every tracked k labelled, mathtext symbols,
the cutoff η, completed epochs, and a custom-scalars layout whose every line can be identified."""

import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from fp_lightning.callbacks.panels import custom_scalars_layout, draw_panels, exact_tag_pattern
from fp_lightning.plotting import MAX_K_LABELS, plot_change_ratios
from fp_lightning.record import FrequencyHistory
from fp_lightning.report import report_figure

CUTOFF = 5


def history(n_freqs=10, recordings=6, output_scale=(0.1, 1.5), seed=0):
    """A history whose outputs grow from ``output_scale[0]`` to ``output_scale[1]`` times the target."""
    rng = np.random.default_rng(seed)
    n_k = 2 * n_freqs + 2
    target = 1.0 + 10.0 * rng.random(n_k)
    h = FrequencyHistory(freqs=list(range(1, 2 * n_freqs, 2)), deltas=[0.00431, 26.0], cutoff=CUTOFF,
                         target_amplitude=target.tolist())
    for i, scale in enumerate(np.linspace(*output_scale, recordings)):
        ratio = np.sort(rng.random(n_k - 1))[::-1]
        ratio[2] = 4.6  # the parts above and below η changed in opposite directions
        h.append(epoch=i, step=10 * i, delta_f=rng.random(n_freqs), e_low=rng.random(2), e_high=rng.random(2),
                 loss_low=1.0 + rng.random(), loss_high=1.0 + rng.random(), low_share=0.5,
                 output_amplitude=(scale * target * rng.random(n_k)).tolist(), loss_density=rng.random(n_k).tolist(),
                 loss_change_ratio=ratio.tolist(), window_change_ratio=(ratio / 2).tolist(),
                 output_change_ratio=np.where(np.arange(n_k - 1) == 4, np.inf, ratio / 3).tolist())
    return h


def texts(figure):
    """Every piece of text a figure draws (titles, axis and tick labels, legends, colourbar labels)."""
    return [t.get_text() for t in figure.findobj(Text) if t.get_text() and t.get_visible()]


def outside_mathtext(text):
    return re.sub(r"(?<!\\)\$.*?(?<!\\)\$", "", text)


# ------------------------------------------------------------------------------------------------ ranges
def test_change_ratio_range_holds_every_finite_value():
    fig, ax = plot_change_ratios({"loss_change_ratio": [0.9, 4.6, float("nan"), 0.01],
                                  "output_change_ratio": [0.8, float("inf"), 0.1, 0.002]})
    low, high = ax.get_ylim()
    assert low <= 0.002 and high >= 4.6 and np.isfinite(high)
    panel = draw_panels(history())["fp/change_ratios"].axes[0]
    drawn = np.concatenate([line.get_ydata() for line in panel.get_lines() if len(line.get_ydata()) > 2])
    assert np.nanmax(drawn[np.isfinite(drawn)]) == pytest.approx(4.6)
    assert panel.get_ylim()[0] <= np.nanmin(drawn) and panel.get_ylim()[1] > 4.6


def test_change_ratio_legend_leaves_the_curves_visible():
    eta = np.arange(40)
    curves = {"loss_change_ratio": np.r_[0.9, 4.6, np.linspace(0.9, 0.05, 38)],
              "window_change_ratio": np.linspace(1.0, 0.1, 40), "output_change_ratio": np.linspace(0.8, 0.2, 40)}
    figure, ax = plot_change_ratios(curves, cutoff=CUTOFF)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    legend = ax.get_legend().get_window_extent(canvas.get_renderer())
    points = np.concatenate([ax.transData.transform(np.c_[eta, values]) for values in curves.values()])
    assert legend.y1 < points[:, 1].min()  # under the curves: it hides none of them
    assert figure.bbox.x0 <= legend.x0 and legend.x1 <= figure.bbox.x1 and figure.bbox.y0 <= legend.y0
    assert figure.get_size_inches().tolist() == [3.6, 2.6]  # the size of every panel: TensorBoard fits it to a card


def test_spectra_keep_one_range_over_the_recordings():
    h = history(recordings=6)
    limits = []
    for n in (2, 4, 6):  # the panels drawn at three recordings of one run
        part = FrequencyHistory(freqs=h.freqs, deltas=h.deltas, cutoff=h.cutoff, target_amplitude=h.target_amplitude)
        for i in range(n):
            part.append(**{key: values[i] for key, values in h.records.items()})
        ax = draw_panels(part)["fp/spectra"].axes[0]
        limits.append(ax.get_ylim())
        top = max(np.nanmax(line.get_ydata()) for line in ax.get_lines()[:2])
        assert ax.get_ylim()[1] >= top  # the curves stay inside
        assert ax.get_ylabel() == "|F[y]|, |F[h]|"
    assert limits[0] == limits[1] == limits[2]


# ------------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("n_freqs", [3, 10, MAX_K_LABELS])
def test_heatmap_labels_every_tracked_k_without_overlap(n_freqs):
    h = history(n_freqs=n_freqs)
    figure = draw_panels(h)["fp/delta_f_heatmap"]
    ax = figure.axes[0]
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    labels = ax.get_yticklabels()
    assert [label.get_text() for label in labels] == [str(k) for k in h.freqs]
    assert ax.get_ylabel() == "tracked $k$"
    boxes = [label.get_window_extent(canvas.get_renderer()) for label in labels]
    assert all(not a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
    assert all(figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1 for box in boxes)


def test_heatmap_says_which_k_are_labelled_beyond_the_limit():
    h = history(n_freqs=30)
    ax = draw_panels(h)["fp/delta_f_heatmap"].axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == [str(k) for k in h.freqs[::2]]
    assert ax.get_ylabel() == "tracked $k$ (every 2nd)"


@pytest.mark.slow
def test_no_literal_underscore_outside_mathtext(tmp_path):
    h = history()
    figures = dict(draw_panels(h))
    path = h.save(tmp_path / "run" / "fp_history.npz")  # a folder name without "_": the run's name is in the title
    figures["report"] = report_figure(path)
    for name, figure in figures.items():
        FigureCanvasAgg(figure).draw()  # mathtext that does not parse fails here
        for text in texts(figure):
            assert "_" not in outside_mathtext(text), (name, text)
    panel_texts = texts(figures["fp/low_high_heatmap"])
    assert r"$e_{\mathrm{low}}$" in panel_texts and r"$e_{\mathrm{high}}$" in panel_texts
    assert "26" in panel_texts  # a δ row label


def test_cutoff_eta_is_shown():
    figures = draw_panels(history())
    for tag in ("fp/change_ratios", "fp/spectra"):
        legend = [t.get_text() for t in figures[tag].axes[0].get_legend().get_texts()]
        assert any(text.endswith(rf"$\eta$ = {CUTOFF}") for text in legend), (tag, legend)


def test_report_shows_eta_and_completed_epochs(tmp_path):
    h = history()
    h.save(tmp_path / "fp_history.npz")
    figure = report_figure(tmp_path / "fp_history.npz")
    all_texts = texts(figure)
    assert any(text.startswith(rf"Loss split at the cutoff $\eta$ = {CUTOFF}") for text in all_texts)
    assert any(text.startswith(rf"$L_{{\mathrm{{low}}}}$ ($k \leq \eta$ = {CUTOFF})") for text in all_texts)
    assert any(text.startswith("Projected spectrum after 5 epochs") for text in all_texts)
    assert "epochs completed" in all_texts
    assert not any(re.search(r"\bepoch \d", text) for text in all_texts)


# ------------------------------------------------------------------------------------------------ custom scalars
def test_custom_scalars_one_identified_series_per_chart():
    freqs, deltas = [1, 3, 12], [0.005, 0.02, 0.08]
    layout = custom_scalars_layout(freqs, deltas, denoised=True, cutoff=CUTOFF)
    charts = {title: chart for category in layout.values() for title, chart in category.items()}
    assert all(kind == "Multiline" and len(tags) == 1 for kind, tags in charts.values())
    for k in freqs:
        assert charts[f"Δ_F at k = {k}"][1] == [exact_tag_pattern(f"fp/delta_f/k={k}")]
    for delta in ("0.005", "0.02", "0.08"):
        category = layout[f"fp: e_low / e_high, filter width δ = {delta}"]
        assert category == {f"e_low (δ = {delta})": ["Multiline", [exact_tag_pattern(f"fp/e_low/delta={delta}")]],
                            f"e_high (δ = {delta})": ["Multiline", [exact_tag_pattern(f"fp/e_high/delta={delta}")]]}
    assert layout[f"fp: loss split at cutoff η = {CUTOFF}"][f"L_low (k ≤ {CUTOFF})"][1] == ["^fp/loss_low$"]
