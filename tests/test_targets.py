import warnings

import numpy as np
import pytest
import torch

from fp_lightning.functional import nufft_spectrum, prepare_targets, relative_spectral_error
from fp_lightning.functional.targets import resolve_output_transform
from fp_lightning.metrics import LowHighFrequencyError, ProjectedSpectralError


def test_labels_one_hot_and_softmax_by_default():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    y, h = prepare_targets(logits, torch.tensor([2, 0]))
    assert torch.equal(y, torch.tensor([[0.0, 0, 1], [1, 0, 0]], dtype=torch.float64))
    assert torch.allclose(h, torch.softmax(logits.double(), dim=1))


def test_real_targets_compared_with_raw_outputs():
    y, h = prepare_targets(torch.tensor([[3.0], [4.0]]), torch.tensor([1.0, 2.0]))
    assert y.tolist() == [[1.0], [2.0]] and h.tolist() == [[3.0], [4.0]]


def test_user_transform_wins():
    logits = torch.tensor([[0.0, 1.0]])
    _, h = prepare_targets(logits, torch.tensor([1]), output_transform="identity")
    assert torch.equal(h, logits.double())
    _, h = prepare_targets(logits, torch.tensor([1]), output_transform=lambda t: t * 2)
    assert h.tolist() == [[0.0, 2.0]]
    _, h = prepare_targets(logits, torch.tensor([[0.0, 1.0]]), output_transform="sigmoid")
    assert torch.allclose(h, torch.sigmoid(logits.double()))


@pytest.mark.parametrize(
    ("preds", "target", "kwargs", "match"),
    [
        (torch.zeros(3, 2), torch.zeros(2, dtype=torch.long), {}, "Mismatched"),
        (torch.zeros(2, 2), torch.tensor([0, 5]), {}, "`target` holds labels"),
        (torch.zeros(2, 3), torch.zeros(2, 2), {}, "does not match"),
        (torch.tensor([[float("nan")], [0.0]]), torch.zeros(2), {}, "`preds` must be finite"),
        (torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), {"output_transform": "tanh"}, "`output_transform`"),
    ],
)
def test_bad_input(preds, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prepare_targets(preds, target, **kwargs)


# ---------------------------------------------------------------------- targets as people have them
def _np_softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _rng_logits(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=2.0, size=shape)


def _check(y, h, y_oracle: np.ndarray, h_oracle: np.ndarray) -> None:
    n = y_oracle.shape[0]
    np.testing.assert_array_equal(y.numpy(), y_oracle.reshape(n, -1))
    np.testing.assert_allclose(h.numpy(), h_oracle.reshape(n, -1), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("label_shape", ["(n,)", "(n, 1)"])
def test_sample_labels_with_class_logits(label_shape):
    logits = _rng_logits(6, 4)
    labels = np.array([0, 3, 1, 2, 3, 0])
    target = torch.from_numpy(labels) if label_shape == "(n,)" else torch.from_numpy(labels).unsqueeze(1)
    y, h = prepare_targets(torch.from_numpy(logits), target)
    _check(y, h, np.eye(4)[labels], _np_softmax(logits, 1))
    assert resolve_output_transform(torch.from_numpy(logits), target) == ("softmax", None)


def test_segmentation_labels_nchw_class_axis_moved_last():
    logits = _rng_logits(3, 5, 4, 4)                      # (n, C, H, W)
    labels = np.random.default_rng(1).integers(0, 5, size=(3, 4, 4))
    y, h = prepare_targets(torch.from_numpy(logits), torch.from_numpy(labels))
    y_oracle = np.eye(5)[labels]                          # (n, H, W, C)
    h_oracle = _np_softmax(logits, 1).transpose(0, 2, 3, 1)
    _check(y, h, y_oracle, h_oracle)
    assert y.shape == (3, 4 * 4 * 5)
    # every block of C columns is one pixel: one-hot rows and probability rows
    assert torch.equal(y.reshape(3, 16, 5).sum(-1), torch.ones(3, 16, dtype=torch.float64))


def test_sequence_labels_ntc_with_class_dim_minus_one():
    logits = _rng_logits(4, 7, 3)                         # (n, T, C)
    labels = np.random.default_rng(2).integers(0, 3, size=(4, 7))
    y, h = prepare_targets(torch.from_numpy(logits), torch.from_numpy(labels), class_dim=-1)
    _check(y, h, np.eye(3)[labels], _np_softmax(logits, -1))


def test_sequence_labels_nct_with_default_class_dim():
    logits = _rng_logits(4, 3, 7)                         # (n, C, T), as nn.CrossEntropyLoss takes them
    labels = np.random.default_rng(3).integers(0, 3, size=(4, 7))
    y, h = prepare_targets(torch.from_numpy(logits), torch.from_numpy(labels))
    _check(y, h, np.eye(3)[labels], _np_softmax(logits, 1).transpose(0, 2, 1))


def test_explicit_transforms_and_callable_follow_the_class_axis():
    logits = torch.from_numpy(_rng_logits(2, 3, 5))       # (n, C, T)
    labels = torch.tensor([[0, 1, 2, 0, 1], [2, 2, 1, 0, 0]])
    _, h = prepare_targets(logits, labels, output_transform="sigmoid")
    np.testing.assert_allclose(h.numpy(), _np_sigmoid(logits.numpy()).transpose(0, 2, 1).reshape(2, -1))
    _, h_callable = prepare_targets(logits, labels, output_transform=lambda t: torch.softmax(t, dim=1))
    _, h_softmax = prepare_targets(logits, labels, output_transform="softmax")
    torch.testing.assert_close(h_callable, h_softmax)


@pytest.mark.parametrize("shape", [(8,), (8, 1)])
def test_binary_float_targets_with_one_logit_get_sigmoid_and_a_reason(shape):
    logits = np.array([-3.0, 2.0, 0.5, -0.2, 4.0, -1.0, 0.1, 1.5]).reshape(shape)
    target = np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=np.float32).reshape(shape)
    name, reason = resolve_output_transform(torch.from_numpy(logits), torch.from_numpy(target))
    assert name == "sigmoid" and "BCEWithLogitsLoss" in reason and "output_transform='identity'" in reason
    y, h = prepare_targets(torch.from_numpy(logits), torch.from_numpy(target))
    _check(y, h, target.reshape(8, 1).astype(np.float64), _np_sigmoid(logits).reshape(8, 1))


def test_binary_integer_labels_with_one_logit_get_sigmoid():
    logits = torch.tensor([[-2.0], [3.0], [0.4]])
    y, h = prepare_targets(logits, torch.tensor([0, 1, 1]))
    _check(y, h, np.array([[0.0], [1.0], [1.0]]), _np_sigmoid(logits.double().numpy()))


def test_multilabel_targets_get_sigmoid():
    logits = _rng_logits(5, 4)
    target = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 0, 1]], dtype=np.float32)
    name, reason = resolve_output_transform(torch.from_numpy(logits), torch.from_numpy(target))
    assert name == "sigmoid" and "multi-label" in reason
    y, h = prepare_targets(torch.from_numpy(logits), torch.from_numpy(target))
    _check(y, h, target.astype(np.float64), _np_sigmoid(logits))


@pytest.mark.parametrize("kind", ["soft", "one-hot floats"])
def test_distribution_targets_get_softmax(kind):
    logits = _rng_logits(6, 3)
    if kind == "soft":
        target = _np_softmax(_rng_logits(6, 3, seed=5), 1).astype(np.float32)
    else:
        target = np.eye(3, dtype=np.float32)[[0, 2, 1, 1, 0, 2]]
    name, reason = resolve_output_transform(torch.from_numpy(logits), torch.from_numpy(target))
    assert name == "softmax" and "soft labels" in reason and "output_transform='identity'" in reason
    y, h = prepare_targets(torch.from_numpy(logits), torch.from_numpy(target))
    _check(y, h, target.astype(np.float64), _np_softmax(logits, 1))


def test_soft_labels_per_position_with_class_dim():
    logits = _rng_logits(2, 5, 3)                          # (n, T, C)
    target = torch.from_numpy(_np_softmax(_rng_logits(2, 5, 3, seed=9), -1))
    assert resolve_output_transform(torch.from_numpy(logits), target, class_dim=-1)[0] == "softmax"
    y, h = prepare_targets(torch.from_numpy(logits), target, class_dim=-1)
    _check(y, h, target.numpy(), _np_softmax(logits, -1))
    # with the default class axis the rows along dim 1 do not sum to 1: raw values, and a hint to the right axis
    name, reason = resolve_output_transform(torch.from_numpy(logits), target)
    assert name == "identity" and "class_dim=-1" in reason


@pytest.mark.parametrize(
    ("preds", "target", "why"),
    [
        (_np_softmax(_rng_logits(5, 3), 1), np.array([0, 1, 2, 2, 0]), "integer class labels"),
        (_np_softmax(_rng_logits(5, 3), 1), np.eye(3)[[0, 1, 2, 2, 0]], "already are probabilities"),
        (_np_sigmoid(_rng_logits(5, 1)), np.array([[0.0], [1.0], [1.0], [0.0], [1.0]]), "raw values"),
    ],
)
def test_outputs_that_already_are_probabilities_are_compared_as_they_are(preds, target, why):
    name, reason = resolve_output_transform(torch.from_numpy(preds), torch.from_numpy(target))
    assert name == "identity" and why in reason and "output_transform=" in reason
    y, h = prepare_targets(torch.from_numpy(preds), torch.from_numpy(target))
    np.testing.assert_array_equal(h.numpy(), preds.reshape(5, -1))


def test_regression_targets_stay_raw_without_a_reason():
    preds = torch.from_numpy(_rng_logits(6, 2))
    target = torch.from_numpy(_rng_logits(6, 2, seed=4))
    assert resolve_output_transform(preds, target) == ("identity", None)
    y, h = prepare_targets(preds, target)
    assert torch.equal(h, preds) and torch.equal(y, target)
    image_target = torch.rand(3, 2, 4, 4)                  # image-to-image regression keeps every value
    y, h = prepare_targets(image_target * 2, image_target)
    torch.testing.assert_close(h, 2 * y)


def test_auto_decides_per_call_in_the_functional():
    target = torch.tensor([0.0, 1.0, 1.0])
    _, h_logits = prepare_targets(torch.tensor([-1.0, 2.0, 3.0]), target)
    _, h_probs = prepare_targets(torch.tensor([0.1, 0.8, 0.9]), target)
    torch.testing.assert_close(h_logits[:, 0], torch.sigmoid(torch.tensor([-1.0, 2.0, 3.0], dtype=torch.float64)))
    assert h_probs[:, 0].tolist() == pytest.approx([0.1, 0.8, 0.9])


@pytest.mark.parametrize(
    ("preds", "target", "kwargs", "match"),
    [
        (torch.zeros(2, 8, 8, 5), torch.zeros(2, 8, 8, dtype=torch.long), {}, r"class_dim=-1"),
        (torch.zeros(2, 5, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), {"class_dim": -1}, r"class_dim=1"),
        (torch.zeros(2, 16), torch.zeros(2, 7, dtype=torch.long), {}, "`output_key`"),
        (torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), {}, "`output_key`"),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), {"class_dim": 0}, "`class_dim`"),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), {"class_dim": 2}, "`class_dim=2`"),
        (torch.zeros(2, 3, 4), torch.full((2, 4), 3), {}, "`target` holds labels"),
        (torch.zeros(2, 3), torch.tensor([2.0, 0.0]), {}, r"as integers \(`.long\(\)`\)"),
        (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), {"output_transform": lambda t: t[:, :1]},
         "`output_transform` returned"),
    ],
)
def test_bad_layouts_name_the_argument(preds, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        prepare_targets(preds, target, **kwargs)


# ---------------------------------------------------------------------- the Metric freezes its choice
def _binary_batch(logit_scale: float):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, generator=g)
    target = (x[:, 0] > 0.5).float().unsqueeze(1)
    logits = logit_scale * (x[:, :1] - 0.5)
    return x, logits, target


def _record(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fn()
    return out, [w for w in caught if "output_transform" in str(w.message)]


def test_metric_resolves_once_warns_once_and_keeps_the_choice():
    metric = ProjectedSpectralError(n_freqs=8, frequencies=[1, 2])
    x, logits, target = _binary_batch(8.0)
    metric.update(x, logits, target)
    first, caught = _record(metric.compute)
    assert metric.resolved_output_transform == "sigmoid"
    assert len(caught) == 1 and issubclass(caught[0].category, UserWarning)
    assert "chose 'sigmoid'" in str(caught[0].message)
    # later outputs inside [0, 1] would look like probabilities to a fresh decision; the frozen choice stays
    metric.reset()
    probs = torch.sigmoid(logits)
    metric.update(x, probs, target)
    second, caught = _record(metric.compute)
    assert caught == [] and metric.resolved_output_transform == "sigmoid"
    y, h = prepare_targets(probs, target, "sigmoid")
    coords = metric.projection.transform(x.double())[:, 0]
    expected = relative_spectral_error(nufft_spectrum(coords, y, 8)[[1, 2]], nufft_spectrum(coords, h, 8)[[1, 2]])
    torch.testing.assert_close(second["delta_f"], expected)


def test_frozen_choice_travels_in_the_state_dict():
    metric = LowHighFrequencyError(deltas=[0.1])
    x, logits, target = _binary_batch(8.0)
    metric.update(x, logits, target)
    _record(metric.compute)
    state = metric.state_dict()
    assert state["_extra_state"] == {"resolved_output_transform": "sigmoid"}
    restored = LowHighFrequencyError(deltas=[0.1])
    restored.load_state_dict(state)
    assert restored.resolved_output_transform == "sigmoid"
    restored.update(x, torch.sigmoid(logits), target)  # would resolve to 'identity' if it decided afresh
    out, caught = _record(restored.compute)
    assert caught == []
    expected = LowHighFrequencyError(deltas=[0.1], output_transform="sigmoid")
    expected.update(x, torch.sigmoid(logits), target)
    torch.testing.assert_close(out["e_low"], expected.compute()["e_low"])
    LowHighFrequencyError(deltas=[0.1]).load_state_dict({})  # a state dict from before the choice was kept


def test_a_second_metric_makes_the_same_choice_silently():
    spectral = ProjectedSpectralError(n_freqs=8, frequencies=[1])
    filtering = LowHighFrequencyError(deltas=[0.1], warn_auto_choice=False)
    x, logits, target = _binary_batch(8.0)
    for metric in (spectral, filtering):
        metric.update(x, logits, target)
    _, caught = _record(lambda: (spectral.compute(), filtering.compute()))
    assert len(caught) == 1
    assert spectral.resolved_output_transform == filtering.resolved_output_transform == "sigmoid"


def test_obvious_choices_and_explicit_transforms_are_silent():
    x = torch.rand(30, 2)
    for preds, target, transform in [
        (torch.randn(30, 4), torch.randint(0, 4, (30,)), "auto"),
        (torch.randn(30, 1), torch.randn(30, 1), "auto"),
        (torch.randn(30, 1), (torch.rand(30, 1) > 0.5).float(), "sigmoid"),
    ]:
        metric = ProjectedSpectralError(n_freqs=8, frequencies=[1], output_transform=transform)
        metric.update(x, preds, target)
        _, caught = _record(metric.compute)
        assert caught == []


def test_metric_rejects_bad_class_dim_and_resolved_name():
    with pytest.raises(ValueError, match="`class_dim`"):
        ProjectedSpectralError(class_dim=0)
    with pytest.raises(ValueError, match="`resolved_output_transform`"):
        ProjectedSpectralError().resolved_output_transform = "tanh"


def test_half_precision_probabilities_are_recognised():
    probs = torch.softmax(torch.from_numpy(_rng_logits(64, 50)), dim=1).to(torch.bfloat16)
    assert float((probs.double().sum(1) - 1).abs().max()) > 1e-4     # bfloat16 rows miss 1 by more than 1e-4
    labels = torch.arange(64) % 50
    assert resolve_output_transform(probs, labels)[0] == "identity"
    soft = probs[:, :3] / probs[:, :3].sum(1, keepdim=True)          # bfloat16 soft labels, logits as outputs
    assert resolve_output_transform(torch.randn(64, 3), soft)[0] == "softmax"
