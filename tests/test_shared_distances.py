"""One distance pass per probe set: the filter's widths and the denoised score's δ share the bank's distances."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything

from fp_lightning import DenoisedLoss, FrequencyPrincipleMonitor
from fp_lightning.functional import GaussianFilterBank, leave_one_out_lowpass
from fp_lightning.metrics import LowHighFrequencyError
from tests._lightning import loader, make_module, regression_data
from tests.conftest import EVERY_STEP as TRAINER_KW
from tests.test_denoising import _dense_leave_one_out


@pytest.fixture
def points() -> tuple[torch.Tensor, torch.Tensor]:
    """70 points in 5-D, three classes by the sign pattern of two coordinates."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(70, 5, generator=g)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, labels


def _count_distance_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the passes that compute distance products (each converts the centred inputs once)."""
    calls: list[int] = []
    original = GaussianFilterBank._centred_inputs

    def counted(self: GaussianFilterBank) -> torch.Tensor | None:
        calls.append(self.n_samples)
        return original(self)

    monkeypatch.setattr(GaussianFilterBank, "_centred_inputs", counted)
    return calls


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_neighbour_sums_at_another_width_match_dense_numpy(points, dtype, tol):
    x, labels = points
    onehot = F.one_hot(labels, 3).double()
    bank = GaussianFilterBank(x, [0.5, 2.0], chunk_size=16, dtype=dtype)  # 16 does not divide 70: ragged tiles
    bank.errors(onehot, torch.zeros_like(onehot))  # fills the kernel cache, and the distances beside it
    sums, weights = bank.neighbour_sums_at(onehot, 0.3)
    expected = _dense_leave_one_out(x.numpy(), onehot.numpy(), 0.3)
    np.testing.assert_allclose((sums / weights).numpy(), expected, atol=tol, rtol=0)


def test_a_width_outside_the_bank_reuses_its_distances(points, monkeypatch):
    x, labels = points
    passes = _count_distance_passes(monkeypatch)
    bank = GaussianFilterBank(x, [0.5, 2.0], chunk_size=16)
    assert bank.caches_kernels and bank.caches_distances  # both fit the default budget
    onehot = F.one_hot(labels, 3).double()
    bank.errors(onehot, torch.zeros_like(onehot))
    shared = leave_one_out_lowpass(x, labels, 0.05, bank=bank)
    assert len(passes) == 1  # the leave-one-out labels cost no distance products of their own
    alone = leave_one_out_lowpass(x, labels, 0.05, dtype=torch.float32, chunk_size=16)
    torch.testing.assert_close(shared, alone, atol=1e-12, rtol=0)  # the same float32 tiles, the same sums
    # float32 distances, float64 kernels: where float32 kernels would underflow (D/(2δ) > 103), nothing is lost
    np.testing.assert_allclose(shared.numpy(), _dense_leave_one_out(x.numpy(), F.one_hot(labels, 3).double().numpy(),
                                                                    0.05), atol=1e-5, rtol=0)


def test_bank_of_other_inputs_is_refused(points):
    x, labels = points
    with pytest.raises(ValueError, match="`bank`"):
        leave_one_out_lowpass(x, labels, 0.05, bank=GaussianFilterBank(x[:50], [1.0]))


def test_metric_shares_the_filter_bank(points, monkeypatch):
    x, labels = points
    probs = torch.softmax(torch.randn(70, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    filtering = LowHighFrequencyError(deltas=[0.5, 2.0])  # float32 distances by default
    denoised = DenoisedLoss(delta=0.05, filter_precision="float32")
    denoised.bank_source = filtering.filter_bank_for
    alone = DenoisedLoss(delta=0.05, filter_precision="float32")
    for metric in (filtering, denoised, alone):
        metric.update(x, probs, labels)
    filtering.compute()
    passes = _count_distance_passes(monkeypatch)
    shared_loss = denoised.compute()["denoised_loss"]
    assert passes == []
    assert float(shared_loss) == pytest.approx(float(alone.compute()["denoised_loss"]), rel=1e-12)
    assert len(passes) == 1  # the Metric on its own makes its own pass
    assert filtering.filter_bank_for(x + 1) is None
    float64 = DenoisedLoss(delta=0.05)  # float64 distances by default: another precision, its own pass
    float64.bank_source = filtering.filter_bank_for
    float64.update(x, probs, labels)
    float64.compute()
    assert len(passes) == 2


@pytest.mark.slow
def test_monitor_makes_one_distance_pass_per_probe_set(tmp_path, monkeypatch):
    passes = _count_distance_passes(monkeypatch)
    seed_everything(0, verbose=False)
    monitor = FrequencyPrincipleMonitor(probe_size=200, log_images=False, history_file=None)
    trainer = Trainer(max_epochs=2, callbacks=[monitor], logger=False, default_root_dir=tmp_path, **TRAINER_KW)
    trainer.fit(make_module(), loader(regression_data()))
    assert len(monitor.history) == 3 and np.isfinite(monitor.history.records["denoised_loss"]).all()
    assert passes == [200]  # one pass at the first recording serves every δ of the filter and the denoised score
    probe = monitor.filtering._bank_inputs
    expected = leave_one_out_lowpass(probe, monitor.denoised._gathered(float64_inputs=False)[1],
                                     monitor.denoised.fitted_delta, dtype=torch.float32)
    torch.testing.assert_close(monitor.denoised.denoised_labels, expected, atol=1e-12, rtol=0)
    assert monitor.denoised.bank_source.__self__ is monitor.filtering  # the fresh copies of a new fit stay linked
    copy = pickle.loads(pickle.dumps(FrequencyPrincipleMonitor()))  # and so do pickled ones
    assert copy.denoised.bank_source.__self__ is copy.filtering
