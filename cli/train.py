"""``tfflat train``: train one network on S ∪ A to the zero-error epoch and save the run."""

from __future__ import annotations

import math

import click

from tfflat.data import TASKS
from tfflat.training.checkpoint import EVERY_SECONDS
from tfflat.training.optimizers import NAMES, parse_opt_args
from tfflat.training.run import STOP_ON, TrainConfig

from .devices import devices_option, precision_option, scope
from .output import Progress, emit

DEFAULT = TrainConfig()         # every default of `tfflat train` is the library's
CHECKPOINT_MINUTES = EVERY_SECONDS / 60


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
@click.option("--out", type=click.Path(), required=True,
              help="Run directory: new, or the same one to resume an interrupted run of the same options.")
@click.option("--force", is_flag=True,
              help="Replace what tfflat wrote in --out (a run, its checkpoint and measures) and train afresh.")
@click.option("--checkpoint-every", type=int, default=None, metavar="N",
              help="Also checkpoint after every N-th epoch (a rerun of this command resumes from it).")
@click.option("--checkpoint-minutes", type=float, default=CHECKPOINT_MINUTES, show_default=True,
              help="Checkpoint every this many minutes of training.")
@click.option("--json", "as_json", is_flag=True, help="Print a one-object JSON summary.")
def train(out, force, checkpoint_every, checkpoint_minutes, as_json, opt_arg, devices, **options):
    """Train a network on S ∪ A until zero error on S; save RUN/model.keras and RUN/run.json.

    Checkpoints RUN/train-checkpoint.npz while it trains: the same command rerun after an
    interruption (Ctrl-C, kill, power loss) resumes there and ends with the same numbers. A finished
    run of the same options is kept as it is; anything else in --out is refused unless --force.
    """
    from tfflat.training.run import train_run

    config = TrainConfig(opt_args=parse_opt_args(opt_arg), **options)
    bar = Progress("train", unit="epochs")

    def progress(epoch, rec, model):
        bar.update(epoch, f"loss {rec['loss']:.4f} acc S {rec['acc_S']:.3f} E {rec['acc_E'] or 0:.3f}")

    if not (math.isfinite(checkpoint_minutes) and checkpoint_minutes > 0):
        from tfflat.errors import UserError

        raise UserError(f"--checkpoint-minutes must be a positive number, got {checkpoint_minutes}")
    seconds = checkpoint_minutes * 60.0
    try:
        with scope(devices):
            _, meta, _ = train_run(config, out, callback=progress, force=force, checkpoint_every=checkpoint_every,
                                   checkpoint_seconds=seconds)
    finally:
        bar.close()
    summary = {"zero_error_epoch": meta["zero_error_epoch"], "train_accuracy": meta["train_accuracy"],
               "test_accuracy": meta["test_accuracy"], "epochs": meta["epochs"],
               "gradient_evaluations": meta["gradient_evaluations"], "seconds": round(meta["seconds"], 3),
               "run_dir": str(out), "status": meta["status"], "resumed_from": meta.get("resumed_from")}
    saved = {"trained": f"run saved to {out}",
             "resumed": f"resumed from the checkpoint at epoch {meta.get('resumed_from')}; run saved to {out}",
             "stored": f"{out} already holds this run (same options): nothing to train; --force retrains"}
    emit(summary, as_json, [
        f"zero-error epoch {meta['zero_error_epoch']} ({meta['epochs']} epochs, {meta['seconds']:.1f}s)",
        f"accuracy: S {meta['train_accuracy']:.4f}  A {meta['attack_accuracy'] or 0:.4f}  "
        f"E {meta['test_accuracy'] or 0:.4f}",
        saved[meta["status"]]])
