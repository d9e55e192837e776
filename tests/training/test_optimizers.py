"""The paper's optimizers by name: each trains the 784-40-40-1 FCN on real MNIST to zero error;
names and hyperparameter overrides are validated (CLI: one line, exit 2)."""

import inspect

import pytest

from tfflat import defaults, models
from tfflat.errors import UserError
from tfflat.training import optimizers, train
from tfflat.training.entropy_sgd import EntropySGD

# Paper defaults except full-batch GD and Adagrad, whose defaults (lr 0.01, 0.001) need > 2000
# epochs here (the CLI table in the issue note uses the defaults); raised to keep the test short.
FASTER = {"gd": 0.3, "adagrad": 0.03}


@pytest.fixture(scope="module")
def mnist500(mnist):
    from tfflat.data import make_splits

    return make_splits(mnist, 500, 0, 100, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", optimizers.NAMES)
def test_every_optimizer_trains_fcn_on_mnist_to_zero_error(name, mnist500):
    model = models.build(models.model_spec("fcn", "mnist", (28, 28)), seed=0)
    r = train(model, mnist500, name, learning_rate=FASTER.get(name), max_epochs=600, seed=0)
    assert r.zero_error_epoch is not None, f"{name}: train accuracy {r.train_accuracy}"
    assert r.train_accuracy == 1.0 and r.test_accuracy > 0.75
    steps = {"gd": 1, "entropy-sgd": 20}.get(name, 16)       # 500 examples, batch 32; ESGD: whole outer steps
    assert r.gradient_evaluations == r.epochs * steps


def test_names_and_defaults():
    assert set(optimizers.NAMES) == {"sgd", "gd", "momentum", "adam", "adagrad", "rmsprop", "entropy-sgd"}
    params = set(inspect.signature(EntropySGD.__init__).parameters) - {"self", "name", "kwargs"}
    assert set(defaults.OPTIMIZERS["entropy-sgd"]) == params
    opt = optimizers.make("entropy-sgd", 0.5, inner_steps=5, alpha=0.25)
    assert (opt.inner_steps, opt.alpha, float(opt.learning_rate)) == (5, 0.25, 0.5)
    assert float(optimizers.make("momentum").momentum) == 0.9
    assert optimizers.make("sgd", momentum=1).momentum == 1.0            # int → float for Keras


@pytest.mark.parametrize("call, match", [
    (lambda: optimizers.make("adamw"), "unknown optimizer 'adamw'"),
    (lambda: optimizers.make("adam", bogus=1), "no argument 'bogus'"),
    (lambda: optimizers.make("sgd", momentum=1.5), "optimizer sgd: .*momentum"),
    (lambda: optimizers.make("entropy-sgd", inner_steps=0), "inner_steps"),
    (lambda: optimizers.parse_opt_args(["beta_1"]), "not KEY=VALUE"),
    (lambda: optimizers.parse_opt_args(["beta_1=fast"]), "not a number"),
])
def test_bad_names_and_arguments(call, match):
    with pytest.raises(UserError, match=match):
        call()


@pytest.mark.parametrize("args, needle", [
    (["--optimizer", "adamw"], "'adamw' is not one of"),
    (["--optimizer", "adam", "--opt-arg", "bogus=1"], "optimizer adam has no argument 'bogus'"),
    (["--optimizer", "entropy-sgd", "--opt-arg", "inner_steps=0"], "inner_steps"),
])
def test_cli_rejects_unknown_optimizer_or_key(args, needle, tmp_path, capsys, data_dir):
    from tfflat_cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data-dir", data_dir, "--train-size", "20", "--test-size", "10",
              "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:") and needle in err
