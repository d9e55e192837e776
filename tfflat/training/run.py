"""One training run from a config: data → splits → model → train → run directory (issue: foundation)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from tfflat import defaults
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


def fit(model, splits, config: TrainConfig, *, callback: Callable | None = None, trainer=None, strategy=None):
    """Train ``model`` on ``splits`` as ``config`` says (:func:`tfflat.training.train`), on ``strategy``'s
    devices (:mod:`tfflat.devices`; default one device); returns its result."""
    from tfflat.training import train

    return train(model, splits, config.optimizer, learning_rate=config.learning_rate, opt_args=config.opt_args,
                 batch_size=config.batch_size, max_epochs=config.max_epochs, overtrain=config.overtrain,
                 stop_on=config.stop_on, seed=config.seed, callback=callback, trainer=trainer,
                 strategy=strategy, precision=config.precision)


def prepare(config: TrainConfig, task=None):
    """Load the task (unless given) and draw the splits; validates every size before any training."""
    from tfflat.data import draw_indices, take
    from tfflat.training import optimizers

    optimizers.resolve(config.optimizer, config.learning_rate, **config.opt_args)
    task = task or load_task(config)
    spec = model_spec(config, task.input_shape)
    splits = take(task, draw_indices(task, config.train_size, config.attack_size, config.test_size,
                                     config.data_seed))
    return task, spec, splits


def train_run(config: TrainConfig, out=None, *, task=None, callback: Callable | None = None,
              raise_incomplete: bool = True, strategy=None):
    """Train one network as ``config`` says; save it to ``out`` (if given) and return (model, meta).
    ``strategy``: the devices (:mod:`tfflat.devices`), recorded in ``meta["devices"]``.

    Raises :class:`IncompleteError` (after saving) when ``max_epochs`` passes without zero error.
    """
    from tfflat import models, runs
    from tfflat.training import optimizers

    if out is not None:
        runs.ensure_dir(out)
    task, spec, splits = prepare(config, task)
    model = models.build(spec, seed=config.seed)
    from tfflat import devices

    strategy = devices.strategy(strategy)
    result = fit(model, splits, config, callback=callback, strategy=strategy)
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
    if zero is None and raise_incomplete:
        raise IncompleteError(f"no zero-error epoch within --max-epochs {config.max_epochs} "
                              f"(train accuracy {result.train_accuracy:.4f}); the model and history were saved"
                              + (f" to {out}" if out else "") + "; raise --max-epochs or the learning rate")
    return model, meta, splits
