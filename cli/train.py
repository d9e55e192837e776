"""``tfflat train``: train one network on S ∪ A to the zero-error epoch and save the run."""

from __future__ import annotations

import click

from tfflat.data import TASKS
from tfflat.training.optimizers import NAMES, parse_opt_args
from tfflat.training.run import STOP_ON, TrainConfig

from .devices import devices_option, precision_option, scope
from .output import Progress, emit

DEFAULT = TrainConfig()         # every default of `tfflat train` is the library's


@click.command()
@click.option("--dataset", type=click.Choice(sorted(TASKS)), default=DEFAULT.dataset, show_default=True)
@click.option("--data-dir", type=click.Path(), default=DEFAULT.data_dir,
              help="Local data files (MNIST IDX, CIFAR folders or batches); default: tensorflow-datasets.")
@click.option("--model", default=DEFAULT.model, show_default=True, help="fcn, fcn-small, fcn:W1,W2,… or resnet50.")
@click.option("--sigma-w", type=float, default=DEFAULT.sigma_w, help="Weight std × √fan_in (default: the task's).")
@click.option("--sigma-b", type=float, default=DEFAULT.sigma_b, help="Bias std (default: the task's).")
@click.option("--bn-momentum", type=float, default=DEFAULT.bn_momentum,
              help="resnet50: BatchNorm moving-average momentum (default Keras' 0.99; lower it for tiny data).")
@click.option("--optimizer", type=click.Choice(NAMES), default=DEFAULT.optimizer, show_default=True)
@click.option("--lr", "learning_rate", type=float, default=DEFAULT.learning_rate, help="Learning rate (default: the optimizer's).")
@click.option("--opt-arg", multiple=True, metavar="KEY=VALUE", help="Optimizer hyperparameter; repeatable.")
@click.option("--batch-size", type=int, default=DEFAULT.batch_size, show_default=True)
@click.option("--train-size", type=int, default=DEFAULT.train_size, show_default=True, help="|S|")
@click.option("--attack-size", type=int, default=DEFAULT.attack_size, show_default=True, help="|A| (labels flipped)")
@click.option("--test-size", type=int, default=DEFAULT.test_size, show_default=True, help="|E|")
@click.option("--seed", type=int, default=DEFAULT.seed, show_default=True, help="Initialisation and shuffling seed.")
@click.option("--data-seed", type=int, default=DEFAULT.data_seed, show_default=True, help="Seed for drawing S, A, E.")
@click.option("--max-epochs", type=int, default=DEFAULT.max_epochs, show_default=True)
@click.option("--overtrain", type=int, default=DEFAULT.overtrain, show_default=True, help="Epochs after the zero-error epoch.")
@click.option("--stop-on", type=click.Choice(STOP_ON), default=DEFAULT.stop_on, show_default=True,
              help="Zero error on S (the paper) or on S ∪ A.")
@click.option("--bits", type=int, default=DEFAULT.bits, show_default=True, help="boolean: n.")
@click.option("--target", default=DEFAULT.target, show_default=True,
              help="boolean: 'random' (from --data-seed), a bit string or a hex key.")
@precision_option
@devices_option
@click.option("--out", type=click.Path(), required=True, help="Run directory to create.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def train(out, as_json, opt_arg, devices, **options):
    """Train a network on S ∪ A until zero error on S; save RUN/model.keras and RUN/run.json."""
    from tfflat.training.run import train_run

    config = TrainConfig(opt_args=parse_opt_args(opt_arg), **options)
    bar = Progress("train", unit="epochs")

    def progress(epoch, rec, model):
        bar.update(epoch, f"loss {rec['loss']:.4f} acc S {rec['acc_S']:.3f} E {rec['acc_E'] or 0:.3f}")

    try:
        with scope(devices):
            _, meta, _ = train_run(config, out, callback=progress)
    finally:
        bar.close()
    summary = {"zero_error_epoch": meta["zero_error_epoch"], "train_accuracy": meta["train_accuracy"],
               "test_accuracy": meta["test_accuracy"], "epochs": meta["epochs"],
               "gradient_evaluations": meta["gradient_evaluations"], "seconds": round(meta["seconds"], 3),
               "run_dir": str(out)}
    emit(summary, as_json, [
        f"zero-error epoch {meta['zero_error_epoch']} ({meta['epochs']} epochs, {meta['seconds']:.1f}s)",
        f"accuracy: S {meta['train_accuracy']:.4f}  A {meta['attack_accuracy'] or 0:.4f}  "
        f"E {meta['test_accuracy'] or 0:.4f}",
        f"run saved to {out}"])
