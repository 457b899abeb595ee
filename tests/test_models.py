"""The paper's networks: shapes, parameter counts, initialization, loss conventions, and tiny CPU fits."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fp_lightning.data import CIFAR10DataModule, MNISTDataModule, SineSeries1DDataModule, Staircase1DDataModule
from fp_lightning.models import FullyConnectedNet, SmallCNN, TanhMLP1D
from tests._paths import SHARED_DATA, needs_shared
from tests.conftest import tiny_trainer

needs_mnist = needs_shared("MNIST/raw")  # the training split: not embedded
needs_cifar = needs_shared("cifar-10-batches-py")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def trainer(**kwargs: object) -> pl.Trainer:
    return tiny_trainer(pl, **{"devices": 1, "max_epochs": 2, **kwargs})


# ---------------------------------------------------------------------------------------------------- structure
def test_fully_connected_shapes_and_parameter_counts() -> None:
    mnist = FullyConnectedNet(init_seed=0)
    assert mnist(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert n_params(mnist) == 784 * 200 + 200 + 200 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    cifar = FullyConnectedNet(input_shape=(3, 32, 32), num_outputs=1, init_seed=0)
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 1)
    assert n_params(cifar) == 3072 * 200 + 200 + 200 * 100 + 100 + 100 * 100 + 100 + 100 * 1 + 1
    assert FullyConnectedNet(in_features=784).in_features == 784
    tanhs = [m for m in mnist.modules() if isinstance(m, nn.Tanh)]
    assert len(tanhs) == 3
    with pytest.raises(ValueError, match=r"`in_features`=100 does not match"):
        FullyConnectedNet(in_features=100, input_shape=(1, 28, 28))


def test_small_cnn_shapes_and_parameter_counts() -> None:
    mnist = SmallCNN(init_seed=0)
    assert mnist(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    conv = (1 * 32 * 9 + 32) + (32 * 32 * 9 + 32)
    dense = lambda flat: flat * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10  # noqa: E731
    assert mnist.flat_features == 32 * 5 * 5 and n_params(mnist) == conv + dense(800)
    cifar = SmallCNN(input_shape=(3, 32, 32), init_seed=0)
    assert cifar(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert n_params(cifar) == (3 * 32 * 9 + 32) + (32 * 32 * 9 + 32) + dense(32 * 6 * 6)
    once = SmallCNN(pool="last", init_seed=0)
    assert once.flat_features == 32 * 12 * 12 and n_params(once) == conv + dense(32 * 12 * 12)
    assert sum(isinstance(m, nn.MaxPool2d) for m in mnist.modules()) == 2
    assert sum(isinstance(m, nn.ReLU) for m in mnist.modules()) == 4
    with pytest.raises(ValueError, match=r"`pool`"):
        SmallCNN(pool="never")


def test_tanh_mlp_1d_structure() -> None:
    model = TanhMLP1D(init_seed=0)
    assert model(torch.zeros(7, 1)).shape == (7, 1)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [200, 200, 200, 100, 1]
    assert n_params(model) == (1 * 200 + 200) + 2 * (200 * 200 + 200) + (200 * 100 + 100) + (100 + 1)
    assert model.lr == 2e-5 and model.optimizer_name == "adam" and model.loss_name == "mse"


# ---------------------------------------------------------------------------------------------------- init
@pytest.mark.parametrize(
    ("factory", "std"),
    [
        (lambda: FullyConnectedNet(init_seed=1), 1e-4),
        (lambda: SmallCNN(input_shape=(3, 32, 32), init_seed=1), 0.05),
        (lambda: TanhMLP1D(init_seed=1), 0.1),
        (lambda: TanhMLP1D(init_std=0.5, init_seed=1), 0.5),
    ],
)
def test_gaussian_init_std(factory: object, std: float) -> None:
    model = factory()
    weights = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if n.endswith("weight")])
    biases = torch.cat([p.detach().flatten() for n, p in model.named_parameters() if n.endswith("bias")])
    assert abs(float(weights.std()) / std - 1) < 0.02 and abs(float(weights.mean())) < 0.02 * std
    assert abs(float(biases.std()) / std - 1) < 0.15  # fewer biases: looser bound


def test_init_reproducibility_and_default_init() -> None:
    a, b = TanhMLP1D(init_seed=3), TanhMLP1D(init_seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(TanhMLP1D(init_seed=4).net[0].weight, a.net[0].weight)
    pl.seed_everything(7, verbose=False)
    c = TanhMLP1D()
    pl.seed_everything(7, verbose=False)
    d = TanhMLP1D()
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), d.parameters()))
    default = FullyConnectedNet(init_std=None)
    assert float(default.net[1][0].weight.detach().std()) > 1e-2  # PyTorch's default, not 1e-4
    with pytest.raises(ValueError, match=r"`init_std`"):
        TanhMLP1D(init_std=0.0)


# ---------------------------------------------------------------------------------------------------- losses
def test_loss_conventions() -> None:
    torch.manual_seed(0)
    out10 = torch.randn(6, 10)
    labels = torch.tensor([0, 3, 9, 1, 1, 5])
    model = FullyConnectedNet(init_seed=0)
    expected = ((out10 - F.one_hot(labels, 10).float()) ** 2).mean()
    assert torch.allclose(model.compute_loss(out10, labels), expected)  # one-hot MSE

    scalar = FullyConnectedNet(num_outputs=1, init_seed=0)
    out1 = torch.randn(6, 1)
    by_label = scalar.compute_loss(out1, labels)
    assert torch.allclose(by_label, ((out1.squeeze(1) - labels.float()) ** 2).mean())
    assert torch.allclose(scalar.compute_loss(out1, labels.float().unsqueeze(1)), by_label)
    assert torch.allclose(scalar.compute_loss(out1, labels.float()), by_label)

    ce = FullyConnectedNet(loss="cross_entropy", init_seed=0)
    assert torch.allclose(ce.compute_loss(out10, labels), F.cross_entropy(out10, labels))
    with pytest.raises(ValueError, match=r"integer class labels"):
        ce.compute_loss(out10, labels.float())
    with pytest.raises(ValueError, match=r"do not match"):
        model.compute_loss(out10, torch.zeros(6, 3))
    with pytest.raises(ValueError, match=r"`loss`"):
        FullyConnectedNet(loss="l1")
    with pytest.raises(ValueError, match=r"num_outputs"):
        TanhMLP1D(loss="cross_entropy")


def test_optimizers() -> None:
    adam = SmallCNN(lr=1e-4, init_seed=0).configure_optimizers()
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["lr"] == 1e-4
    assert adam.defaults["betas"] == (0.9, 0.999)
    sgd = TanhMLP1D(optimizer="sgd", lr=0.1, momentum=0.9, init_seed=0).configure_optimizers()
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    with pytest.raises(ValueError, match=r"`optimizer`"):
        TanhMLP1D(optimizer="lbfgs")


# ---------------------------------------------------------------------------------------------------- tiny fits
@needs_mnist
def test_fc_on_mnist_fit_validate_and_test() -> None:
    dm = MNISTDataModule(SHARED_DATA, train_split="train", subset_size=200, val_fraction=0.25, batch_size=50)
    model = FullyConnectedNet(lr=1e-3, init_seed=0)
    fit = trainer(limit_test_batches=2)
    fit.fit(model, dm)
    metrics = fit.callback_metrics
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(metrics)
    assert fit.current_epoch == 2 and fit.num_training_batches == 3
    fit.test(model, dm, verbose=False)
    assert {"test_loss", "test_acc"} <= set(fit.callback_metrics)


@needs_mnist
def test_fc_scalar_label_and_cnn_on_mnist() -> None:
    dm = MNISTDataModule(SHARED_DATA, subset_size=64, batch_size=32, target="scalar")
    run = trainer()
    run.fit(FullyConnectedNet(num_outputs=1, init_seed=0), dm)
    assert "train_loss" in run.callback_metrics and "val_loss" not in run.callback_metrics
    run = trainer(fast_dev_run=2)
    run.fit(SmallCNN(num_outputs=1, init_seed=0), dm)
    assert torch.isfinite(run.callback_metrics["train_loss"])


@pytest.mark.slow
@needs_cifar
def test_cnn_on_cifar_fit() -> None:
    dm = CIFAR10DataModule(SHARED_DATA, subset_size=64, batch_size=32, download=False, val_fraction=0.25)
    run = trainer()
    model = SmallCNN(input_shape=(3, 32, 32), loss="cross_entropy", lr=1e-4, init_seed=0)
    run.fit(model, dm)
    assert {"train_loss", "val_loss", "val_acc"} <= set(run.callback_metrics)


@pytest.mark.slow
def test_tanh_mlp_on_staircase_tasks() -> None:
    dm = Staircase1DDataModule(preset="fig3")
    model = TanhMLP1D(lr=1e-3, init_seed=0)
    with torch.no_grad():
        before = float(F.mse_loss(model(dm.x_train), dm.y_train))
    run = trainer(max_epochs=20)
    run.fit(model, dm)
    assert run.global_step == 20  # one full batch per epoch
    assert float(run.callback_metrics["train_loss"]) < before
    assert "val_loss" not in run.callback_metrics

    dm6 = Staircase1DDataModule(preset="fig6")
    run = trainer()
    model6 = TanhMLP1D(init_seed=0)
    run.fit(model6, dm6)
    assert {"train_loss", "val_loss"} <= set(run.callback_metrics)
    run.test(model6, datamodule=dm6, verbose=False)
    assert "test_loss" in run.callback_metrics

    run = trainer(fast_dev_run=1)
    run.fit(TanhMLP1D(init_seed=0), SineSeries1DDataModule())
    assert torch.isfinite(run.callback_metrics["train_loss"])
