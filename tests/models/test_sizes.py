"""Size estimates that let tfflat refuse, up front and with the number, what cannot fit in memory."""

import numpy as np
import pytest

from tfflat import memory, models
from tfflat.errors import UserError
from tfflat.training.run import TrainConfig


@pytest.mark.parametrize("name, task, shape", [("fcn", "mnist", (28, 28)), ("fcn-small", "mnist", (28, 28)),
                                               ("fcn:7,3,5", "boolean", (7,)), ("resnet50", "cifar_cats_cars",
                                                                              (32, 32, 3))])
def test_parameter_count_is_the_built_models(name, task, shape):
    spec = models.model_spec(name, task, shape)
    model = models.build(spec)
    assert models.parameter_count(spec) == sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_memory_override_and_refusal(monkeypatch):
    monkeypatch.setenv("TFFLAT_MEMORY_GB", "2")
    assert memory.available() == 2_000_000_000
    memory.require(1.9e9, "x", "y")
    with pytest.raises(UserError, match=r"^thing needs about 2.5 GB of memory but 2 GB are available; fix it$"):
        memory.require(2.5e9, "thing", "fix it")
    monkeypatch.setenv("TFFLAT_MEMORY_GB", "lots")
    with pytest.raises(UserError, match="TFFLAT_MEMORY_GB"):
        memory.available()
    monkeypatch.delenv("TFFLAT_MEMORY_GB")
    assert 0 < memory.available() < 1 << 62


def test_training_memory_scales_with_the_request():
    spec = models.model_spec("fcn:1000", "mnist", (28, 28))
    small = models.training_bytes(spec, 100, 200, 32, "sgd")
    assert models.training_bytes(spec, 100, 200, 32, "adam") > small          # Adam's two slots
    assert models.training_bytes(spec, 10_000, 20_000, 32, "sgd") > 10 * small
    assert small > 4 * models.parameter_count(spec) * 3                       # weights, gradients, a copy


def test_train_config_checks_and_normalises():
    cfg = TrainConfig(batch_size=16.0, seed=3.0)
    assert cfg.batch_size == 16 and isinstance(cfg.batch_size, int) and isinstance(cfg.seed, int)
    for bad, needle in ((dict(batch_size=2.5), "`batch_size` must be an integer"),
                        (dict(dataset="svhn"), "unknown `dataset`"), (dict(stop_on="E"), "`stop_on`"),
                        (dict(learning_rate=True), "`learning_rate` must be a number"),
                        (dict(data_dir=""), "`data_dir` must be a folder"), (dict(opt_args=[1]), "`opt_args`")):
        with pytest.raises(UserError, match=needle):
            TrainConfig(**bad)
