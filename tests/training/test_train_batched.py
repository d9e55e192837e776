"""A stack of FCNs trained at once equals, bit for bit, each network trained alone by ``train``."""

import numpy as np
import pytest

from tfflat import models
from tfflat.data import draw_indices, take
from tfflat.errors import UserError
from tfflat.models.fcn import fcn, initial_weights
from tfflat.training import Trainer, batched, optimizers, train

S, A, E = 100, 20, 200            # mnist_small's sizes (conftest)


def no_seconds(rec):
    return {k: v for k, v in rec.items() if k != "seconds"}


@pytest.fixture(scope="module")
def spec():
    return models.model_spec("fcn", "mnist", (28, 28))


def test_stack_equals_one_network_runs_bit_for_bit(mnist, mnist_small, spec):
    members = [(0, 0), (A, 1), (7, 2)]                 # three |A|, so three epoch lengths (4, 4, 4 steps…)
    stack = batched.train_fcns(spec, mnist_small, members, learning_rate=0.05, overtrain=(0, 2), max_epochs=400)
    for (a, seed), got in zip(members, stack):
        splits = take(mnist, draw_indices(mnist, S, a, E, 0))
        model = models.build(spec, seed=seed)
        ref = train(model, splits, "sgd", learning_rate=0.05, overtrain=2, max_epochs=400, seed=seed)
        zero = ref.zero_error_epoch
        assert zero is not None and got.zero_error_epoch == zero and got.epochs == zero + 2
        for o in (0, 2):
            assert no_seconds(got.snapshots[o].record) == no_seconds(ref.history[zero + o])
        assert got.final is got.snapshots[2]
        assert all(np.array_equal(w, v) for w, v in zip(got.final.weights, model.get_weights()))
        assert got.gradient_evaluations == ref.gradient_evaluations
        assert len(got.final.logits) == S + a + E


def test_stack_cap_and_stop_on_sa(mnist, mnist_small, spec):
    members = [(A, 3), (5, 4)]
    stack = batched.train_fcns(spec, mnist_small, members, learning_rate=0.05, max_epochs=3)
    for (a, seed), got in zip(members, stack):
        ref = train(models.build(spec, seed=seed), take(mnist, draw_indices(mnist, S, a, E, 0)), "sgd",
                    learning_rate=0.05, max_epochs=3, seed=seed)
        assert got.zero_error_epoch is None and ref.zero_error_epoch is None and got.epochs == 3
        assert no_seconds(got.final.record) == no_seconds(ref.final) and got.snapshots == {}
    sa = batched.train_fcns(spec, mnist_small, [(A, 0)], learning_rate=0.05, stop_on="SA", max_epochs=400)[0]
    ref = train(models.build(spec, seed=0), mnist_small, "sgd", learning_rate=0.05, stop_on="SA", max_epochs=400)
    assert sa.zero_error_epoch == ref.zero_error_epoch and sa.final.record["acc_A"] == 1.0


def test_single_trainer_takes_the_written_out_epoch_only_for_plain_sgd():
    model = fcn((3,), (5,), seed=0)
    assert batched.plain_sgd(model, optimizers.make("sgd", 0.5))
    for name in ("momentum", "adam", "entropy-sgd"):
        assert not batched.plain_sgd(model, optimizers.make(name))
    import keras

    inputs = keras.Input((3,))
    tanh = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(4, activation="tanh")(inputs)))
    assert not batched.plain_sgd(tanh, optimizers.make("sgd"))


def test_written_out_epoch_equals_the_generic_keras_epoch(monkeypatch):
    """The two code paths of Trainer (float32, different operation order) agree to rounding."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    out = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(batched, "plain_sgd", lambda m, o: False)
        model = fcn((6,), (8, 5), seed=1)
        tr = Trainer(model, optimizers.make("sgd", 0.2), x, y, 8, seed=3, x_eval=x)
        z = [tr.epoch() for _ in range(3)][-1]
        out.append((model.get_weights(), z))
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-5, atol=1e-6)


def test_initial_weights_are_those_of_the_built_model(spec):
    for seed in (0, 7):
        built = models.build(spec, seed=seed).get_weights()
        direct = initial_weights(spec["input_shape"], spec["widths"], spec["sigma_w"], spec["sigma_b"], seed)
        assert all(np.array_equal(a, b) for a, b in zip(built, direct))


def test_bad_requests(mnist_small, spec):
    with pytest.raises(UserError, match="FCN"):
        batched.train_fcns({"kind": "resnet50"}, mnist_small, [(0, 0)])
    with pytest.raises(UserError, match="attack sizes"):
        batched.train_fcns(spec, mnist_small, [(A + 1, 0)])
    with pytest.raises(UserError, match="stop_on"):
        batched.train_fcns(spec, mnist_small, [(0, 0)], stop_on="E")
    assert batched.train_fcns(spec, mnist_small, []) == []
