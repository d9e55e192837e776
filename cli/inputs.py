"""The MODEL argument and the data options shared by ``sharpness``, ``hessian``, ``prior`` and ``rescale``.

MODEL is a tfflat run, a ``.keras`` file, a ``ModelCheckpoint`` folder (its newest ``.keras``) or a
SavedModel folder; a run brings its own S and E, any other model takes ``--data FILE.npz``
(``x_train``, ``y_train``, optional ``x_test``, ``y_test``) or ``--dataset NAME --data-dir DIR``.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import click

HEADS = ("logit", "sigmoid", "logits", "softmax")


def data_options(f):
    """``--data``, ``--dataset``, ``--data-dir``, ``--train-size``, ``--test-size``, ``--data-seed``, ``--head``."""
    from tfflat.data import TASKS

    options = [
        click.option("--data", "data_file", type=click.Path(), default=None, metavar="FILE.npz",
                     help="Your data: an .npz with x_train, y_train and optionally x_test, y_test."),
        click.option("--dataset", type=click.Choice(sorted(TASKS)), default=None,
                     help="Or a tfflat task (S and E drawn as `tfflat train` does)."),
        click.option("--data-dir", type=click.Path(), default=None,
                     help="Local files of --dataset; for a run, where its data is now (if it moved)."),
        click.option("--train-size", type=int, default=None,
                     help="|S|: how many --dataset draws [default: the paper's]; for prior --kernel-file, m of the bound."),
        click.option("--test-size", type=int, default=None, help="--dataset: |E| [default: the paper's]."),
        click.option("--data-seed", type=int, default=0, show_default=True, help="--dataset: which S and E."),
        click.option("--head", type=click.Choice(HEADS), default=None,
                     help="What the model outputs, when it cannot be read from its last layer and compiled loss."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@dataclass
class Inputs:
    """An opened MODEL and its data: ``arrays`` is None when a run measures on its own splits."""

    opened: object
    arrays: dict | None
    task: str | None

    @property
    def model(self):
        return self.opened.model


def open_inputs(model_path, data_file=None, dataset=None, data_dir=None, train_size=None, test_size=None,
                data_seed=0, head=None) -> Inputs:
    """Open MODEL and the data it is measured on (one-line errors that name the missing piece)."""
    from tfflat import runs
    from tfflat.data.arrays import load_npz, task_arrays
    from tfflat.errors import UserError

    if data_file is not None and dataset is not None:
        raise UserError("give --data FILE.npz or --dataset NAME, not both")
    if dataset is None and any(v is not None for v in (train_size, test_size)):
        raise UserError("--train-size and --test-size go with --dataset NAME")
    if data_file is not None and data_dir is not None:
        raise UserError("--data-dir goes with --dataset NAME (or a run whose data moved), not with --data")
    external = data_file is not None or dataset is not None
    opened = runs.open_model(model_path, data=not external, data_dir=None if external else data_dir)
    if not external:
        if opened.kind != "run" and data_dir is not None:
            raise UserError(f"{model_path} is {opened.describe()}: --data-dir goes with --dataset NAME")
        if opened.kind != "run":
            raise UserError(f"{model_path} is {opened.describe()}; give --data FILE.npz (arrays x_train, y_train, "
                            "optional x_test, y_test) or --dataset NAME --data-dir DIR")
        if head is not None:
            raise UserError("--head is for Keras models measured on --data; a run's network has one logit")
        return Inputs(opened, None, opened.run.task)
    arrays = load_npz(data_file) if data_file is not None else \
        task_arrays(dataset, data_dir, train_size, test_size, data_seed)
    return Inputs(opened, arrays, dataset)


@contextlib.contextmanager
def echo_warnings():
    """Print the library's warnings (e.g. an unconverged sharpness) as ``warning: …`` lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", module="keras")
        warnings.filterwarnings("ignore", module="tensorflow")
        try:
            yield
        finally:
            from .main import flag_text

            seen = set()
            for w in caught:
                text = flag_text(str(w.message), command=click.get_current_context().info_name)
                if text not in seen and issubclass(w.category, UserWarning):
                    seen.add(text)
                    click.echo(f"warning: {text}", err=True)


def check_out(out) -> None:
    """A :class:`UserError` now, before any work, when ``--out`` cannot name a result file."""
    if out is None:
        return
    from pathlib import Path

    from tfflat.errors import UserError

    if not str(out).strip() or Path(out).name in ("", ".", ".."):
        raise UserError(f"--out {out!r} names no file; give a file name such as result.json")
    if Path(out).is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {Path(out) / 'result.json'}")


def write_out(out, record: dict) -> str | None:
    """Write ``record`` as strict JSON (with ``format_version``) to ``--out`` atomically; the path, or None
    without ``--out``."""
    if out is None:
        return None
    check_out(out)
    from tfflat import runs

    runs.write_json(out, record)
    return str(out)
