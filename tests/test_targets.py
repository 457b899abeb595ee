import pytest
import torch

from fp_lightning.functional import prepare_targets


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
