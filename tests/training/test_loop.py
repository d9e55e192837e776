"""The compiled training loop: exact minibatch semantics, zero-error stopping, reproducibility."""

import numpy as np
import pytest

from tfflat import models
from tfflat.models.fcn import fcn
from tfflat.data import Splits
from tfflat.errors import UserError
from tfflat.training import Trainer, train
from tfflat.training import optimizers


def _tiny_splits(n=10, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    e = rng.normal(size=(4, d)).astype(np.float32)
    return Splits(x, y, np.zeros((0, d), np.float32), np.zeros(0, np.int64), e, (e[:, 0] > 0).astype(np.int64))


def _numpy_epoch(weights, x, y, batches, lr):
    """Plain SGD on a 1-hidden-layer ReLU net in numpy, mean sigmoid CE per minibatch."""
    w1, b1, w2, b2 = [w.astype(np.float64) for w in weights]
    for idx in batches:
        xb, yb = x[idx].astype(np.float64), y[idx]
        h_pre = xb @ w1 + b1
        h = np.maximum(h_pre, 0)
        z = (h @ w2 + b2).ravel()
        dz = (1 / (1 + np.exp(-z)) - yb) / len(idx)
        gw2, gb2 = h.T @ dz[:, None], dz.sum(keepdims=True)
        dh = dz[:, None] @ w2.T * (h_pre > 0)
        gw1, gb1 = xb.T @ dh, dh.sum(0)
        w1, b1, w2, b2 = w1 - lr * gw1, b1 - lr * gb1, w2 - lr * gw2, b2 - lr * gb2
    return [w1, b1, w2, b2]


@pytest.mark.parametrize("batch_size", [4, 10])   # 10 = 4 + 4 + 2 (masked partial batch) / full batch
def test_epoch_equals_plain_sgd_with_same_order(batch_size):
    s = _tiny_splits()
    model = fcn((3,), (5,), seed=0)
    w0 = model.get_weights()
    tr = Trainer(model, optimizers.make("sgd", 0.5), s.x_fit, s.y_fit, batch_size, seed=7)
    # the order the epoch visits S ∪ A: numpy's permutation from the shuffling seed
    perm = np.random.default_rng(7).permutation(10)
    batches = [perm[i:i + batch_size] for i in range(0, 10, batch_size)]
    tr.epoch()
    expected = _numpy_epoch(w0, s.x_fit, s.y_fit, batches, 0.5)
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_allclose(got, want.reshape(got.shape), rtol=2e-4, atol=2e-6)


def test_trains_to_zero_error_and_records_history(mnist_small):
    model = models.build(models.model_spec("fcn", "mnist", (28, 28)), seed=0)
    r = train(model, mnist_small, "sgd", learning_rate=0.05, max_epochs=300, seed=0)
    assert r.zero_error_epoch is not None and r.history[r.zero_error_epoch]["acc_S"] == 1.0
    assert all(h["acc_S"] < 1.0 for h in r.history[:r.zero_error_epoch])   # the *first* such epoch
    assert r.history[0]["epoch"] == 0 and r.epochs == r.zero_error_epoch
    assert r.gradient_evaluations == r.epochs * 4                           # 120 examples, batch 32
    assert 0.5 < r.test_accuracy <= 1.0


def test_overtrain_and_stop_on_sa(mnist_small):
    spec = models.model_spec("fcn", "mnist", (28, 28))
    r = train(models.build(spec, 0), mnist_small, "sgd", learning_rate=0.05, max_epochs=500, overtrain=3, seed=0)
    assert r.epochs == r.zero_error_epoch + 3
    r2 = train(models.build(spec, 0), mnist_small, "sgd", learning_rate=0.05, max_epochs=500, stop_on="SA", seed=0)
    assert r2.final["acc_A"] == 1.0 and r2.zero_error_epoch >= r.zero_error_epoch


def test_same_seed_same_numbers(mnist_small):
    spec = models.model_spec("fcn", "mnist", (28, 28))
    runs = [train(models.build(spec, s), mnist_small, "adam", max_epochs=5, seed=s).history for s in (1, 1, 2)]
    assert runs[0] == [dict(h, seconds=None) | {"seconds": h["seconds"]} for h in runs[0]]
    strip = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert strip(runs[0]) == strip(runs[1])
    assert strip(runs[0]) != strip(runs[2])


def test_cap_without_zero_error(mnist_small):
    model = models.build(models.model_spec("fcn", "mnist", (28, 28)), seed=0)
    r = train(model, mnist_small, "sgd", learning_rate=1e-6, max_epochs=2)
    assert r.zero_error_epoch is None and r.epochs == 2 and len(r.history) == 3


def test_bad_arguments(mnist_small):
    model = fcn((28, 28), seed=0)
    with pytest.raises(UserError, match="stop_on"):
        train(model, mnist_small, stop_on="E")
    with pytest.raises(UserError, match="unknown optimizer"):
        train(model, mnist_small, "lbfgs")
    with pytest.raises(UserError, match="no argument"):
        train(model, mnist_small, "adam", opt_args={"betta": 1})
    with pytest.raises(UserError, match="batch-size"):
        train(model, mnist_small, batch_size=0)


def test_parse_opt_args():
    assert optimizers.parse_opt_args(["beta_1=0.8", "nesterov=true", "x=3"]) == {"beta_1": 0.8, "nesterov": True, "x": 3}
    with pytest.raises(UserError, match="KEY=VALUE"):
        optimizers.parse_opt_args(["beta_1"])


def test_the_trainer_takes_the_head_as_its_loss():
    """A 3-class head: one epoch equals plain numpy SGD on the mean softmax cross-entropy."""
    import keras

    from tfflat.models.heads import named

    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 3)).astype(np.float32)
    y = rng.integers(0, 3, 9)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    w, b = [v.astype(np.float64) for v in model.get_weights()]
    tr = Trainer(model, optimizers.make("sgd", 0.3), x, y, 4, seed=2, head=named("logits", 3))
    perm = np.random.default_rng(2).permutation(9)
    for idx in (perm[i:i + 4] for i in range(0, 9, 4)):
        z = x[idx] @ w + b
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        dz = (p - np.eye(3)[y[idx]]) / len(idx)
        w, b = w - 0.3 * x[idx].T @ dz, b - 0.3 * dz.sum(0)
    tr.epoch()
    np.testing.assert_allclose(model.get_weights()[0], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.get_weights()[1], b, rtol=1e-5, atol=1e-6)
