"""One training run from a config: data → splits → model → train → run directory.

``train_run(config, out)`` is resumable: it checkpoints ``out`` while it trains
(:mod:`tfflat.training.checkpoint`) and a rerun with the same config continues from the last
checkpoint to the same numbers as an uninterrupted run. An ``out`` that already holds a finished run
of the same config is returned as it is; one that holds anything else (another run, other files) is
refused unless ``force``, which first removes what tfflat wrote there — the run, its checkpoint and
its measures (``flatness.json``, ``prior.json``, …) — so no stale measure outlives its network.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults, validate
from tfflat.errors import IncompleteError, UserError

STOP_ON = ("S", "SA")       # zero error on S (the paper) or on S ∪ A


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (stored verbatim in ``run.json``)."""

    dataset: str = "mnist"
    data_dir: str | None = None
    model: str = "fcn"
    sigma_w: float | None = None          # default: the task's (SPEC §2)
    sigma_b: float | None = None
    bn_momentum: float | None = None      # resnet50: BatchNorm momentum (default Keras' 0.99)
    optimizer: str = "sgd"
    learning_rate: float | None = None    # default: the optimizer's (SPEC §3)
    opt_args: dict = field(default_factory=dict)
    batch_size: int = defaults.BATCH_SIZE
    train_size: int = defaults.PAPER_SIZES["mnist"]["train_size"]
    attack_size: int = 0
    test_size: int = defaults.PAPER_SIZES["mnist"]["test_size"]
    seed: int = 0                         # initialisation and shuffling
    data_seed: int = 0                    # S, A, E (shared by every run of a sweep)
    max_epochs: int = defaults.MAX_EPOCHS
    overtrain: int = 0
    stop_on: str = STOP_ON[0]
    bits: int = defaults.BOOLEAN_BITS     # boolean task only
    target: str = "random"                # boolean task only
    precision: str = "float32"            # training only (mixed_bfloat16, mixed_float16); measures are float32

    def __post_init__(self):
        """Every field checked (one :class:`UserError` naming it); integral floats become ints."""
        from tfflat.data import TASKS

        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - frozen
        if self.dataset not in TASKS:
            raise UserError(f"unknown `dataset` {self.dataset!r}; choose one of {', '.join(TASKS)}")
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or not self.data_dir.strip()):
            raise UserError(f"`data_dir` must be a folder name, got {self.data_dir!r}")
        if not isinstance(self.model, str):
            raise UserError(f"`model` must be a name such as fcn or resnet50, got {self.model!r}")
        fix("sigma_w", validate.number("sigma_w", self.sigma_w, above=0, none=True))
        fix("sigma_b", validate.number("sigma_b", self.sigma_b, least=0, none=True))
        fix("bn_momentum", validate.number("bn_momentum", self.bn_momentum, least=0, below=1, none=True))
        fix("learning_rate", validate.number("learning_rate", self.learning_rate, above=0, none=True))
        if not isinstance(self.opt_args, dict):
            raise UserError(f"`opt_args` must be a dict of optimizer hyperparameters, got {self.opt_args!r}")
        for name, least in (("batch_size", 1), ("train_size", 1), ("attack_size", 0), ("test_size", 0),
                            ("max_epochs", 0), ("overtrain", 0)):
            fix(name, validate.integer(name, getattr(self, name), least=least))
        fix("seed", validate.seed("seed", self.seed))
        fix("data_seed", validate.seed("data_seed", self.data_seed))
        fix("bits", validate.integer("bits", self.bits, least=1, most=defaults.BOOLEAN_MAX_BITS))
        if self.stop_on not in STOP_ON:
            raise UserError(f"`stop_on` must be one of {', '.join(STOP_ON)}, got {self.stop_on!r}")
        if not isinstance(self.target, str):
            raise UserError(f"`target` must be 'random', a bit string or a hex key, got {self.target!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise UserError(f"unknown training setting(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(sorted(names))}")
        return cls(**d)


def load_task(config: TrainConfig):
    """The task of ``config`` (its local files, or tensorflow-datasets)."""
    from tfflat.data import load_task as load

    return load(config.dataset, config.data_dir, bits=config.bits, target=config.target,
                target_seed=config.data_seed)


def model_spec(config: TrainConfig, input_shape) -> dict:
    """The model spec (:func:`tfflat.models.model_spec`) of ``config`` for inputs of ``input_shape``."""
    from tfflat import models

    return models.model_spec(config.model, config.dataset, input_shape, sigma_w=config.sigma_w,
                             sigma_b=config.sigma_b, bn_momentum=config.bn_momentum)


def fit(model, splits, config: TrainConfig, *, callback: Callable | None = None, trainer=None, resume=None,
        strategy=None):
    """Train ``model`` on ``splits`` as ``config`` says (:func:`tfflat.training.train`), on ``strategy``'s
    devices (:mod:`tfflat.devices`; default one device); returns its result."""
    from tfflat.training import train

    return train(model, splits, config.optimizer, learning_rate=config.learning_rate, opt_args=config.opt_args,
                 batch_size=config.batch_size, max_epochs=config.max_epochs, overtrain=config.overtrain,
                 stop_on=config.stop_on, seed=config.seed, callback=callback, trainer=trainer, resume=resume,
                 strategy=strategy, precision=config.precision)


def prepare(config: TrainConfig, task=None):
    """Load the task (unless given) and draw the splits; validates every size before any training,
    and refuses a model whose training would not fit in memory."""
    from tfflat import models
    from tfflat.data import draw_indices, take
    from tfflat.training import optimizers

    optimizers.resolve(config.optimizer, config.learning_rate, **config.opt_args)
    spec = model_spec(config, _input_shape(config))
    n_fit, n_eval = config.train_size + config.attack_size, config.train_size + config.attack_size + config.test_size
    models.check_training_memory(spec, n_fit, n_eval, config.batch_size, config.optimizer)
    task = task or load_task(config)
    spec = model_spec(config, task.input_shape)
    splits = take(task, draw_indices(task, config.train_size, config.attack_size, config.test_size,
                                     config.data_seed))
    return task, spec, splits


def _input_shape(config: TrainConfig):
    from tfflat.data import input_shape

    return input_shape(config.dataset, config.bits)


def train_run(config: TrainConfig, out=None, *, task=None, callback: Callable | None = None,
              raise_incomplete: bool = True, force: bool = False, checkpoint_every: int | None = None,
              checkpoint_seconds: float | None = None, strategy=None):
    """Train one network as ``config`` says; save it to ``out`` (if given) and return (model, meta, splits).

    Args:
      config: the :class:`TrainConfig`.
      out: the run directory (see the module docstring: resumable, refused when it holds something else).
      task: the task, already loaded (default: :func:`load_task`).
      callback: ``callback(epoch, record, model)`` after every epoch (see :func:`tfflat.training.train`).
      raise_incomplete: raise :class:`IncompleteError` (after saving) when ``max_epochs`` passes
        without zero error.
      force: replace whatever tfflat wrote in ``out`` (the run, checkpoint and measures) and train afresh.
      checkpoint_every, checkpoint_seconds: checkpoint ``out`` after every ``checkpoint_every``-th epoch
        and every ``checkpoint_seconds`` (default 300 s) of training.
      strategy: the devices (a :mod:`tfflat.devices` spec or a ``tf.distribute`` strategy; default the
        caller's scope), recorded in ``meta["devices"]``.
    Returns:
      (model, meta, splits); ``meta["status"]`` (not stored) is ``trained``, ``resumed`` (from the
      epoch ``meta["resumed_from"]``) or ``stored`` (``out`` already held this run).
    Raises:
      :class:`IncompleteError` (after saving) when ``max_epochs`` passes without zero error; a
      :class:`UserError` when the loss becomes NaN or infinite (training diverged; nothing is saved).
    """
    from tfflat import devices, models, runs
    from tfflat.training import checkpoint, optimizers
    from tfflat.training.loop import make_trainer

    every = validate.integer("checkpoint_every", checkpoint_every, least=1, none=True)
    seconds = validate.number("checkpoint_seconds", checkpoint_seconds, above=0, none=True)
    if seconds is None:
        seconds = checkpoint.EVERY_SECONDS
    resume = None
    if out is not None:
        if not str(out).strip():
            raise UserError("`out` is empty; give a directory for the run")
        out = Path(out)
        if out.exists():
            claim, found = _claim(runs.ensure_dir(out), config, force)
            if claim == "stored":
                return _stored(out, found, config, raise_incomplete)
            resume = found
    task, spec, splits = prepare(config, task)
    if out is not None:
        runs.ensure_dir(out)                    # created only once the data and sizes are known to be good
    fingerprint = runs.data_fingerprint(splits)
    if resume is not None and resume.data and resume.data != fingerprint:
        raise UserError(f"the data has changed since {out} was checkpointed (S, A, E differ); rerun on the same data, "
                        "or with `force` to start over")
    model = models.build(spec, seed=config.seed)
    strategy = devices.strategy(strategy)
    trainer = make_trainer(model, splits, config.optimizer, learning_rate=config.learning_rate,
                           opt_args=config.opt_args, batch_size=config.batch_size, seed=config.seed,
                           strategy=strategy, precision=config.precision)
    if resume is not None:
        model.set_weights(resume.weights)
    saver = (checkpoint.Saver(out, runs.encode(config.to_dict()), fingerprint, model, trainer,
                              resume.history if resume else None, every, seconds) if out is not None else None)

    def each(epoch, rec, model):
        if not math.isfinite(rec["loss"]):
            raise UserError(f"training diverged at epoch {epoch}: the loss on S ∪ A is {rec['loss']}; lower "
                            "`learning_rate` (nothing was saved)")
        if saver is not None:
            saver(epoch, rec)
        return callback(epoch, rec, model) if callback else False

    with np.errstate(invalid="ignore", over="ignore"):      # a diverging loss is reported by `each`
        result = fit(model, splits, config, callback=each, trainer=trainer,
                     resume=resume.resume if resume is not None else None)
    zero = result.zero_error_epoch
    at_zero = result.history[zero] if zero is not None else None
    meta = {
        "config": config.to_dict(),
        "optimizer": {"name": config.optimizer,
                      **optimizers.resolve(config.optimizer, config.learning_rate, **config.opt_args)},
        "model_spec": spec,
        "source": task.source,
        "indices": splits.indices,
        "sizes": splits.sizes,
        "data": fingerprint,
        "zero_error_epoch": zero,
        "epochs": result.epochs,
        "gradient_evaluations": result.gradient_evaluations,
        "seconds": result.seconds,
        "train_accuracy": result.train_accuracy,
        "attack_accuracy": result.final["acc_A"],
        "test_accuracy": result.final["acc_E"],
        "test_accuracy_at_zero_error": at_zero["acc_E"] if at_zero else None,
        "history": result.history,
        "devices": devices.describe(strategy),
    }
    if out is not None:
        runs.save(out, model, meta)
        checkpoint.remove(out)
    meta = {**meta, "status": "resumed" if resume is not None else "trained"}
    if resume is not None:
        meta["resumed_from"] = resume.epoch
    if zero is None and raise_incomplete:
        raise IncompleteError(_incomplete(config, result.train_accuracy, out))
    return model, meta, splits


def _incomplete(config: TrainConfig, train_accuracy: float, out) -> str:
    return (f"no zero-error epoch within --max-epochs {config.max_epochs} (train accuracy {train_accuracy:.4f}); "
            "the model and history were saved" + (f" to {out}" if out else "") + "; raise --max-epochs or the "
            "learning rate")


def _claim(out: Path, config: TrainConfig, force: bool):
    """What ``out`` holds for ``config``: ``("fresh", None)``, ``("resume", Checkpoint)`` or
    ``("stored", meta)``; anything else is refused (unless ``force``, which clears tfflat's files first)."""
    from tfflat import runs
    from tfflat.training import checkpoint

    mine = runs.tfflat_files(out)
    if force:
        for p in sorted(mine, key=lambda p: p.name == runs.RUN_FILE):      # run.json last
            p.unlink(missing_ok=True)
        return "fresh", None
    wanted = runs.encode(config.to_dict())
    replace = "choose another `out`, or `force` to replace it (this deletes its model, checkpoint and measures"
    if (out / runs.RUN_FILE).is_file():
        meta = runs.read_json(out / runs.RUN_FILE, fix="choose another `out`, or `force` to replace it")
        if runs.encode(meta.get("config")) == wanted and (out / runs.MODEL_FILE).is_file():
            checkpoint.remove(out)           # left if a crash came between saving the run and deleting it
            return "stored", meta
        measures = [p.name for p in mine if p.name not in (runs.RUN_FILE, runs.MODEL_FILE, checkpoint.FILE)]
        raise UserError(f"{out} already holds a trained run{_differs(meta.get('config'), wanted)}; {replace}"
                        + (f": {', '.join(measures)})" if measures else ")"))
    for p in [p for p in mine if p.name.startswith(".") and ".tmp" in p.name]:
        p.unlink(missing_ok=True)            # temporary files left by a crash
    mine = runs.tfflat_files(out)
    found = checkpoint.load(out)
    if found is not None:
        if runs.encode(found.config) != wanted:
            raise UserError(f"{out} holds an unfinished run of another config{_differs(found.config, wanted)}; rerun "
                            "with its options to resume it, or `force` to start over")
        return "resume", found
    if (out / runs.MODEL_FILE).exists():
        raise UserError(f"{out} holds a {runs.MODEL_FILE} but no {runs.RUN_FILE}; {replace})")
    stale = [p.name for p in mine if p.suffix == ".json"]
    if stale:
        raise UserError(f"{out} holds measures of an earlier run ({', '.join(stale)}) but no {runs.RUN_FILE}; "
                        "`force` removes them, or choose another `out`")
    others = [p.name for p in sorted(out.iterdir()) if p not in mine]
    if others:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        raise UserError(f"`out` {out} is not empty ({shown}); give a new directory for the run, or `force` to write "
                        "into it (files tfflat did not write are kept)")
    return "fresh", None


def _differs(old, new: dict) -> str:
    if not isinstance(old, dict):
        return ""
    key = next((k for k in new if old.get(k) != new[k]), None)
    return "" if key is None else f" (`{key}` {old.get(key)!r} there, {new[key]!r} here)"


def _stored(out: Path, meta: dict, config: TrainConfig, raise_incomplete: bool):
    """The finished run in ``out`` (same config): nothing to train."""
    from tfflat import runs

    run = runs.load(out)
    meta = {**run.meta, "status": "stored"}
    if meta.get("zero_error_epoch") is None and raise_incomplete:
        raise IncompleteError(_incomplete(config, meta.get("train_accuracy", 0.0), out))
    return run.model, meta, run.splits
