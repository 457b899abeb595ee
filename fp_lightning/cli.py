"""The ``fp-lightning`` command: a quick demo, LightningCLI training from YAML configs, and reports.

Subcommands::

    fp-lightning demo [--dataset mnist|cifar10] [--model fc|cnn] [--epochs N] ...
        Train the paper's network (default: the MNIST fully connected tanh net) with a FrequencyPrincipleMonitor,
        write TensorBoard logs, the history (fp_history.npz) and a PNG report under ./fp_runs/<name>/.
    fp-lightning fit --config examples/configs/fig1_mnist_fc.yaml [--trainer.max_epochs=2 ...]
        LightningCLI over fp_lightning's models and datamodules (any LightningModule / LightningDataModule class
        path works too); the monitor is configured under ``trainer.callbacks``. ``validate``, ``test`` and
        ``predict`` are forwarded to LightningCLI as well.
    fp-lightning report RUN_DIR [--output PNG]
        Redraw the PNG report of every history found under RUN_DIR (fp_history.npz, or any .npz file a monitor
        wrote with another ``history_file`` name), without retraining.

``main(argv)`` returns the exit status; usage errors exit with status 2 and a message naming the option.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI

from fp_lightning.metrics import ProjectedSpectralError
from fp_lightning.record import HISTORY_FILE

__all__ = ["DEMO_RECIPES", "LIGHTNING_SUBCOMMANDS", "DemoRecipe", "FPLightningCLI", "build_parser", "main",
           "run_demo", "run_lightning_cli", "run_report"]

#: Subcommands handed to LightningCLI unchanged.
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


@dataclass(frozen=True)
class DemoRecipe:
    """Training settings of ``fp-lightning demo`` for one (dataset, model) pair.

    Attributes:
        epochs: training epochs (the monitor records before training and after every epoch).
        lr: Adam learning rate.
        batch_size: mini-batch size (the paper's: 100 for the FC net, 128 for the CNN).
        init_std: standard deviation of the Gaussian initialization (``None``: PyTorch's default).
        target: ``"class"`` (10 outputs, cross-entropy; the monitor compares softmax outputs with one-hot labels)
            or ``"scalar"`` (1 output regressing the class index with MSE, as in the paper).
        probe_size: training samples the monitor measures on.
        frequencies: the tracked k. The class-label spectra of MNIST / CIFAR-10 on the first principal direction
            decay smoothly from k = 0 (|F[y]| has no clear peaks beyond k = 1 and reaches the sampling-noise floor
            around k ≈ 12 for 2000 probe samples), so the monitor's ``"auto"`` peak picking would track k = 1 and
            noise peaks; a roughly log-spaced list from 1 to 32 shows the low-to-high order directly.
    """

    epochs: int
    lr: float
    batch_size: int
    init_std: float | None
    target: str
    probe_size: int
    frequencies: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


# Why these settings (see `fp-lightning demo --help`): the paper's learning rates (1e-6 FC / 1e-5 CNN on MNIST,
# 1e-5 / 1e-4 on CIFAR-10) and its 1e-4 FC initialization need hundreds of epochs; with them nothing moves within a
# 3-minute CPU budget. A 100–1000× larger Adam step from PyTorch's default initialization shows the same ordering
# (low k fitted first) within ~15 epochs.
DEMO_RECIPES: dict[tuple[str, str], DemoRecipe] = {
    ("mnist", "fc"): DemoRecipe(epochs=15, lr=1e-4, batch_size=100, init_std=None, target="class", probe_size=2000),
    ("mnist", "cnn"): DemoRecipe(epochs=10, lr=3e-4, batch_size=128, init_std=None, target="class", probe_size=2000),
    ("cifar10", "fc"): DemoRecipe(epochs=15, lr=1e-4, batch_size=100, init_std=None, target="class", probe_size=2000),
    ("cifar10", "cnn"): DemoRecipe(epochs=10, lr=3e-4, batch_size=128, init_std=None, target="class",
                                   probe_size=2000),
}

# Lightning warnings that say nothing useful about the demo's in-memory data and small models.
_QUIET = (
    r".*does not have many workers.*",
    r".*defined a `validation_step` but have no `val_dataloader`.*",
    r".*is smaller than the logging interval.*",
    r".*LeafSpec.*",
)


# ------------------------------------------------------------------------------------------------ argument types
def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ≥ ``minimum``; the message names the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1  # reported below like any out-of-range value
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer ≥ {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)
_probe_size = _int_at_least(2)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``demo`` and ``report`` (``fit`` & co. are parsed by LightningCLI)."""
    parser = argparse.ArgumentParser(
        prog="fp-lightning",
        description="See the Frequency Principle while you train: networks fit low frequencies first.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  fp-lightning demo                      # MNIST, FC tanh net, ~1–3 min on a laptop CPU\n"
               "  fp-lightning fit --config examples/configs/fig1_mnist_fc.yaml --trainer.max_epochs=5\n"
               "  fp-lightning report fp_runs/mnist_fc   # redraw the PNG report(s) from the saved history\n"
               "  tensorboard --logdir fp_runs",
    )
    sub = parser.add_subparsers(dest="command", metavar="{demo,fit,report}")
    _add_demo_parser(sub)
    sub.add_parser("fit", add_help=False,
                   help="train from a YAML config with LightningCLI (see `fp-lightning fit --help`; examples in "
                        "examples/configs/); validate/test/predict work the same way")
    report = sub.add_parser("report", help=f"redraw the PNG report from a saved {HISTORY_FILE} (no retraining)",
                            description="Draw the one-page PNG report (spectra, Δ_F heatmap, e_low/e_high, loss "
                                        f"split) of every history found under RUN_DIR: {HISTORY_FILE}, or any .npz "
                                        "file holding a monitor's history (history_file=... in the monitor).")
    report.add_argument("run_dir", metavar="RUN_DIR", type=Path,
                        help="a run folder (searched recursively for histories) or the .npz file itself")
    report.add_argument("--output", "-o", type=Path, default=None, metavar="PNG",
                        help="where to write the PNG (only with a single history; default: fp_report.png next "
                             "to each history)")
    report.set_defaults(handler=run_report)
    return parser


def _add_demo_parser(sub: Any) -> None:
    default = DEMO_RECIPES["mnist", "fc"]
    demo = sub.add_parser(
        "demo", help="train the paper's MNIST network with the monitor and write logs + a PNG report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train the paper's fully connected tanh network 200-100-100 (or its small CNN) on the 10000 MNIST test\n"
            "images (the paper trains on the test split; they ship with the package, no download) with a\n"
            f"FrequencyPrincipleMonitor, then write TensorBoard logs, {HISTORY_FILE} and fp_report.png under\n"
            "OUTPUT/NAME/version_<n>/.\n\n"
            "Deviations from the paper (Fig. 1), so that the picture appears in a few minutes on a CPU:\n"
            f"  * Adam learning rate {default.lr:g} and PyTorch's default initialization, not the paper's 1e-6 and\n"
            "    N(0, 1e-4²): with those, the network barely moves within a few epochs.\n"
            f"  * class labels with cross-entropy ({default.target!r} target; the monitor compares softmax outputs\n"
            "    with one-hot labels) instead of regressing the digit value: the Δ_F rows then fall in a clean\n"
            "    low-to-high order; --target scalar gives the paper's regression (MSE, one output).\n"
            f"  * the monitor measures on a probe set of {default.probe_size} training images (--probe-size) and\n"
            f"    tracks k = {', '.join(map(str, default.frequencies))}: the class-label spectrum decays smoothly, so\n"
            "    the paper's peak picking would find k = 1 and sampling-noise peaks only (scalar target: peaks).\n"
            "What to look for: in the Δ_F heatmap the low-k rows turn red (fitted) epochs before the high-k rows."),
    )
    demo.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist",
                      help="mnist (embedded, default) or cifar10 (needs --data-dir or $FP_DATA_DIR)")
    demo.add_argument("--model", choices=("fc", "cnn"), default="fc",
                      help="fc: paper's tanh 200-100-100 net (default); cnn: its two-conv ReLU net")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help=f"training epochs (default {default.epochs} for mnist/fc)")
    demo.add_argument("--lr", type=_positive_float, default=None,
                      help=f"Adam learning rate (default {default.lr:g} for mnist/fc; the paper's 1e-6 barely "
                           "moves in a few epochs)")
    demo.add_argument("--batch-size", type=_positive_int, default=None,
                      help="mini-batch size (default: the paper's, 100 for fc and 128 for cnn)")
    demo.add_argument("--target", choices=("class", "scalar"), default=None,
                      help="class: 10 outputs, cross-entropy (default); scalar: regress the class index (paper)")
    demo.add_argument("--subset-size", type=_positive_int, default=None, metavar="N",
                      help="train on N random images of the split instead of all 10000")
    demo.add_argument("--probe-size", type=_probe_size, default=None, metavar="N",
                      help=f"training images the monitor measures on (default {default.probe_size}; more gives "
                           "cleaner spectra but each measurement costs ~N² time)")
    demo.add_argument("--accelerator", default="auto",
                      help="Lightning accelerator: auto (default), cpu, gpu, mps, ...")
    demo.add_argument("--output", type=Path, default=Path("fp_runs"), metavar="DIR",
                      help="folder of the runs (default ./fp_runs)")
    demo.add_argument("--name", default=None,
                      help="run name, the sub-folder of --output (default <dataset>_<model>, e.g. mnist_fc)")
    demo.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                      help="dataset root (torchvision layout: MNIST/raw, cifar-10-batches-py); default "
                           "$FP_DATA_DIR, else ~/.cache/fp_lightning/data")
    demo.add_argument("--download", action="store_true",
                      help="allow downloading missing dataset files (off: no network)")
    demo.add_argument("--threads", type=_non_negative_int, default=1, metavar="N",
                      help="CPU threads for torch (default 1: the demo's networks are small, and one thread is "
                           "immune to the slowdowns of oversubscribed shared CPUs; 0 keeps torch's default)")
    demo.add_argument("--seed", type=_non_negative_int, default=0,
                      help="seed of the initialization, the shuffling and the probe set (default 0)")
    demo.set_defaults(handler=run_demo)


# ------------------------------------------------------------------------------------------------ entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fp-lightning`` command with ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    Usage errors raise ``SystemExit(2)`` after printing a message that names the offending option.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in LIGHTNING_SUBCOMMANDS:
        run_lightning_cli(args_list if argv is not None else None)
        return 0
    parser = build_parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.handler
    return handler(args, parser)


# ------------------------------------------------------------------------------------------------ demo
def run_demo(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Train with the monitor as ``args`` say (see ``fp-lightning demo --help``), write the report, print paths."""
    import lightning.pytorch as pl
    import torch

    recipe = DEMO_RECIPES[args.dataset, args.model]
    name = args.name or f"{args.dataset}_{args.model}"
    pl.seed_everything(args.seed, workers=True, verbose=False)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _train_demo(args, parser, recipe, name)
    finally:
        torch.set_num_threads(threads)  # main() may run inside a longer Python process (tests, notebooks)


def _train_demo(args: argparse.Namespace, parser: argparse.ArgumentParser | None, recipe: DemoRecipe,
                name: str) -> int:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from fp_lightning import FrequencyPrincipleMonitor
    from fp_lightning.report import REPORT_FILE, history_summary, write_report

    epochs = args.epochs or recipe.epochs
    target = args.target or recipe.target
    probe_size = args.probe_size or recipe.probe_size
    datamodule = _demo_datamodule(args, recipe, target, parser)
    model = _demo_model(args, recipe, target, datamodule.input_shape)
    # class labels: a fixed low-to-high list of k (see DemoRecipe); scalar labels have peaks, picked as in the paper
    frequencies: Any = list(recipe.frequencies) if target == "class" else "auto"
    monitor = FrequencyPrincipleMonitor(probe_size=probe_size, probe_seed=args.seed,
                                        spectral=ProjectedSpectralError(frequencies=frequencies,
                                                                        n_freqs=max(recipe.frequencies) + 16))
    logger = TensorBoardLogger(save_dir=str(args.output), name=name, default_hp_metric=False)
    n_train = len(datamodule.train_dataset)
    trainer = pl.Trainer(max_epochs=epochs, accelerator=args.accelerator, devices=1, logger=logger,
                         callbacks=[monitor], enable_checkpointing=False,
                         log_every_n_steps=max(1, min(50, -(-n_train // _batch_size(args, recipe)))))
    print(f"fp-lightning demo: {args.dataset} / {args.model}, {n_train} training images, target={target}, "
          f"{epochs} epochs, Adam lr={args.lr or recipe.lr:g}; monitor probe set {min(probe_size, n_train)}.")
    start = time.perf_counter()
    with warnings.catch_warnings():
        for pattern in _QUIET:
            warnings.filterwarnings("ignore", message=pattern)
        trainer.fit(model, datamodule=datamodule)
    elapsed = time.perf_counter() - start
    run_dir = Path(logger.log_dir)
    history = run_dir / HISTORY_FILE
    if not history.is_file():
        print(f"fp-lightning demo: no history was written to {history} (see the monitor's warnings above).",
              file=sys.stderr)
        return 1
    png = write_report(history, run_dir / REPORT_FILE)
    print(f"\nTrained and monitored in {elapsed:.0f} s.\n{history_summary(history)}\n")
    print(f"Run folder:        {run_dir}")
    print(f"  report (PNG):    {png}")
    print(f"  history (npz):   {history}   (numpy.load works without fp_lightning)")
    print(f"  TensorBoard:     {run_dir}   (scalars fp/..., heatmaps and spectra under IMAGES)")
    print("Open TensorBoard with:")
    print(f"  tensorboard --logdir {run_dir.parent}")
    return 0


def _batch_size(args: argparse.Namespace, recipe: DemoRecipe) -> int:
    return int(args.batch_size or recipe.batch_size)


def _demo_datamodule(args: argparse.Namespace, recipe: DemoRecipe, target: str,
                     parser: argparse.ArgumentParser | None) -> Any:
    from fp_lightning.data import CIFAR10DataModule, MNISTDataModule

    cls = MNISTDataModule if args.dataset == "mnist" else CIFAR10DataModule
    data_dir = None if args.data_dir is None else str(args.data_dir)
    datamodule = cls(data_dir=data_dir, batch_size=_batch_size(args, recipe), subset_size=args.subset_size,
                     target=target, seed=args.seed, download=args.download)
    try:  # load now, so a missing dataset or a too large subset is a usage error, not a traceback mid-run
        datamodule.prepare_data()
        datamodule.setup("fit")
    except (FileNotFoundError, RuntimeError, OSError, ValueError) as error:
        option = "--subset-size" if "subset_size" in str(error) else "--data-dir"
        message = f"argument {option}: {error}"
        if parser is None:
            raise SystemExit(f"fp-lightning demo: error: {message}") from error
        demo_parser = _subparser(parser, "demo")
        demo_parser.error(message)
    return datamodule


def _demo_model(args: argparse.Namespace, recipe: DemoRecipe, target: str, input_shape: tuple[int, ...]) -> Any:
    from fp_lightning.models import FullyConnectedNet, SmallCNN

    outputs, loss = (10, "cross_entropy") if target == "class" else (1, "mse")
    common = {"num_outputs": outputs, "loss": loss, "optimizer": "adam", "lr": args.lr or recipe.lr,
              "init_std": recipe.init_std, "init_seed": args.seed}
    if args.model == "fc":
        return FullyConnectedNet(input_shape=input_shape, **common)
    return SmallCNN(input_shape=input_shape, **common)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    return parser


# ------------------------------------------------------------------------------------------------ report
def run_report(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Write the PNG report of every history under ``args.run_dir`` (or ``args.output`` for one)."""
    from fp_lightning.report import (
        find_histories,
        generalization_file,
        generalization_summary,
        history_summary,
        reference_of,
        report_file,
        write_generalization,
        write_report,
    )

    histories = find_histories(args.run_dir)
    error = None
    if not histories:
        error = (f"argument RUN_DIR: no history ({HISTORY_FILE}, or an .npz file with the arrays delta_f and "
                 f"meta) found under {args.run_dir}")
    elif args.output is not None and len(histories) > 1:
        error = (f"argument --output: {len(histories)} histories found under {args.run_dir}; --output needs a "
                 "single one (point RUN_DIR at one run, or leave --output out)")
    if error is not None:
        if parser is None:
            raise SystemExit(f"fp-lightning report: error: {error}")
        _subparser(parser, "report").error(error)
    for history in histories:
        out = args.output if args.output is not None else history.parent / report_file(history)
        print(history_summary(history))
        print(f"report: {write_report(history, out)}")
        reference = reference_of(history)  # a held-out probe next to the training probe it shares k with
        if reference is not None and args.output is None:
            print(generalization_summary(history, reference))
            page = write_generalization(history, reference, history.parent / generalization_file(history))
            print(f"generalization: {page}")
    return 0


# ------------------------------------------------------------------------------------------------ LightningCLI
class FPLightningCLI(LightningCLI):
    """LightningCLI that, after ``fit``, draws the PNG report of each monitor's history and prints where logs are."""

    def after_fit(self) -> None:
        """Write ``fp_report.png`` next to each monitor's ``fp_history.npz`` and print the TensorBoard command."""
        _report_after_fit(self.trainer)


def run_lightning_cli(argv: Sequence[str] | None) -> Any:
    """Run LightningCLI with ``argv`` (``["fit", "--config", FILE, ...]``; None: ``sys.argv[1:]``).

    ``model`` and ``data`` take class paths (``fp_lightning.models.FullyConnectedNet``, or short names such as
    ``FullyConnectedNet`` for fp_lightning's classes); callbacks such as ``fp_lightning.FrequencyPrincipleMonitor``
    go under ``trainer.callbacks``. The config of each run is saved next to its logs.
    """
    import lightning.pytorch as pl

    import fp_lightning.data
    import fp_lightning.models  # noqa: F401  (registers the short class names)

    with warnings.catch_warnings():
        # called from Python with explicit args (tests, notebooks), LightningCLI warns that sys.argv differs
        warnings.filterwarnings("ignore", message=r".*args parameter is intended to run from within Python.*")
        return FPLightningCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                              subclass_mode_data=True, args=None if argv is None else list(argv),
                              save_config_kwargs={"overwrite": True}, parser_kwargs={"prog": "fp-lightning"})


def _report_after_fit(trainer: Any) -> None:
    from fp_lightning import FrequencyPrincipleMonitor
    from fp_lightning.report import report_file, write_report

    monitors = [cb for cb in trainer.callbacks if isinstance(cb, FrequencyPrincipleMonitor) and cb.history_file]
    if not monitors or trainer.logger is None:
        return
    log_dir = Path(trainer.log_dir)  # a collective under DDP: every rank asks before the rank-0 check
    if not trainer.is_global_zero:
        return
    pages = [report_file(monitor.history_file) for monitor in monitors]  # fp_<name>_report.png for a name
    for monitor, page in zip(monitors, pages):
        history = log_dir / monitor.history_file
        if history.is_file():
            shared = pages.count(page) > 1  # two histories that would share a page get one each
            png = log_dir / (f"{Path(monitor.history_file).stem}_report.png" if shared else page)
            # the monitor draws its page at the end of the fit; redraw only what it did not (or an older one)
            if not png.is_file() or png.stat().st_mtime < history.stat().st_mtime:
                png = write_report(history, png)
            print(f"fp-lightning: report {png}\n              history {history}")
    root = log_dir.parent if log_dir.name.startswith("version_") else log_dir
    print(f"fp-lightning: logs in {log_dir}; open them with\n  tensorboard --logdir {root}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
