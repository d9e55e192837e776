"""α-rescaling (App. F eq. 9): the function is unchanged, sharpness is not; bad layers are refused."""

import json

import keras
import numpy as np
import pytest

from tfflat import models
from tfflat.errors import UserError
from tfflat.rescale import parse_units, rescale_layer, rescale_neurons
from tfflat.training import predict_logits, train

ALPHAS = [1e-3, 0.5, 5.9, 1e3]


@pytest.fixture(scope="module")
def trained(mnist_small):
    """A 784-40-40-1 FCN trained to zero error on real MNIST (|S| = 100, |A| = 20)."""
    model = models.build(models.model_spec("fcn", "mnist", (28, 28)), seed=0)
    r = train(model, mnist_small, "sgd", learning_rate=0.05, max_epochs=300, seed=0)
    assert r.zero_error_epoch is not None
    return model, mnist_small


@pytest.fixture
def net(trained):
    """A fresh copy of the trained network (tests rescale in place)."""
    model, splits = trained
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    x = np.concatenate([splits.x_train, splits.x_test])                 # S + E
    return clone, x, splits


def assert_same_logits(before, after):
    scale = np.max(np.abs(before))
    assert np.max(np.abs(after - before)) / scale <= 1e-5
    np.testing.assert_array_equal(after >= 0, before >= 0)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("layer", [1, 2])
def test_layer_rescaling_keeps_logits(net, alpha, layer):
    model, x, _ = net
    w = model.get_weights()                                   # W0, b0, W1, b1, W2, b2
    before = predict_logits(model, x)
    rec = rescale_layer(model, layer, alpha)
    assert rec == {"kind": "layer", "layer": layer, "alpha": alpha, "units": None,
                   "layers": [model.layers[layer + 1].name, model.layers[layer + 2].name]}
    after = predict_logits(model, x)
    assert_same_logits(before, after)
    i = 2 * (layer - 1)
    new = model.get_weights()
    np.testing.assert_allclose(new[i], alpha * w[i], rtol=1e-6)
    np.testing.assert_allclose(new[i + 1], alpha * w[i + 1], rtol=1e-6)
    np.testing.assert_allclose(new[i + 2], w[i + 2] / alpha, rtol=1e-6)
    np.testing.assert_array_equal(new[i + 3], w[i + 3])      # b_{i+1} untouched


@pytest.mark.parametrize("alpha", ALPHAS)
def test_neuron_rescaling_keeps_logits(net, alpha):
    model, x, _ = net
    w = model.get_weights()
    before = predict_logits(model, x)
    units = [0, 7, 39]
    rec = rescale_neurons(model, 2, units, alpha)
    assert rec["units"] == units and rec["kind"] == "neuron"
    assert_same_logits(before, predict_logits(model, x))
    new = model.get_weights()
    others = [u for u in range(40) if u not in units]
    np.testing.assert_allclose(new[2][:, units], alpha * w[2][:, units], rtol=1e-6)
    np.testing.assert_allclose(new[3][units], alpha * w[3][units], rtol=1e-6)
    np.testing.assert_allclose(new[4][units], w[4][units] / alpha, rtol=1e-6)
    np.testing.assert_array_equal(new[2][:, others], w[2][:, others])
    np.testing.assert_array_equal(new[4][others], w[4][others])


def test_per_unit_alphas_and_composition(net):
    model, x, _ = net
    w = model.get_weights()
    before = predict_logits(model, x)
    alphas = np.random.default_rng(0).uniform(-3, 3, 40)
    rescale_neurons(model, 1, range(40), 10.0 ** alphas)
    assert_same_logits(before, predict_logits(model, x))
    rescale_neurons(model, 1, range(40), 10.0 ** -alphas)
    for a in ALPHAS:                                           # α then 1/α restores the weights
        rescale_layer(model, 1, a)
        rescale_layer(model, 1, 1 / a)
    for got, want in zip(model.get_weights(), w):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_rescaling_changes_sharpness(net):
    from tfflat.flatness import sharpness

    model, _, splits = net
    s = lambda: sharpness(model, splits.x_train, splits.y_train, zeta=1e-4, epochs=1).sharpness  # noqa: E731
    s0 = s()
    rescale_layer(model, 1, 1 / 5.9)
    s1 = s()
    rescale_layer(model, 1, 5.9 * 1e3)
    s2 = s()
    assert s1 > 2 * s0 and s2 > 100 * s0, (s0, s1, s2)


def test_rescaling_mid_training(net):
    """In a train() callback: the compiled epochs continue from the rescaled weights."""
    model, x, splits = net
    norms = {}

    def callback(epoch, rec, m):
        norms[epoch] = np.linalg.norm(m.layers[2].kernel.numpy())
        if epoch == 1:
            before = predict_logits(m, x)
            rescale_layer(m, 1, 5.9)
            assert_same_logits(before, predict_logits(m, x))
        return epoch == 3

    train(model, splits, "adam", max_epochs=10, overtrain=10, seed=0, callback=callback)   # already at zero error
    assert norms[2] / norms[1] == pytest.approx(5.9, rel=0.05)
    assert norms[3] / norms[1] == pytest.approx(5.9, rel=0.05)


@pytest.mark.parametrize("layer, alpha, match", [
    (0, 2.0, "out of range"), (3, 2.0, "is the output layer"), (4, 2.0, "out of range"),
    (1, 0.0, "> 0"), (1, -2.0, "> 0"), (1, float("nan"), "> 0"), (1, float("inf"), "> 0"),
])
def test_refuses_bad_layers_and_alphas(net, layer, alpha, match):
    model, _, _ = net
    w = model.get_weights()
    with pytest.raises(UserError, match=match):
        rescale_layer(model, layer, alpha)
    for got, want in zip(model.get_weights(), w):
        np.testing.assert_array_equal(got, want)


def test_refuses_non_relu_batchnorm_and_branches():
    inp = keras.Input((4,))
    tanh = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dense(3, activation="tanh")(inp)))
    with pytest.raises(UserError, match="activation 'tanh'"):
        rescale_layer(tanh, 1, 2.0)
    h = keras.layers.Dense(3, activation="relu")(inp)
    bn = keras.Model(inp, keras.layers.Dense(1)(keras.layers.BatchNormalization()(h)))
    with pytest.raises(UserError, match="BatchNormalization"):
        rescale_layer(bn, 1, 2.0)
    h = keras.layers.Dense(3, activation="relu")(inp)
    skip = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Concatenate()([h, keras.layers.Dense(3)(h)])))
    with pytest.raises(UserError, match="not a single Dense"):
        rescale_layer(skip, 1, 2.0)
    linear = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Dense(3)(inp)))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    before = predict_logits(linear, x)
    rescale_layer(linear, 1, 3.0)                              # linear units are homogeneous too
    np.testing.assert_allclose(predict_logits(linear, x), before, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("units, match", [([40], "0…39"), ([-1], "0…39"), ([1, 1], "distinct"), ([], "no units")])
def test_refuses_bad_units(net, units, match):
    with pytest.raises(UserError, match=match):
        rescale_neurons(net[0], 1, units, 2.0)


def test_parse_units():
    assert parse_units("0,3,5-7") == [0, 3, 5, 6, 7]
    with pytest.raises(UserError, match="unit indices"):
        parse_units("a-b")


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, data_dir):
    from tfflat.training.run import TrainConfig, train_run

    out = tmp_path_factory.mktemp("runs") / "a20"
    train_run(TrainConfig(data_dir=data_dir, train_size=100, attack_size=20, test_size=200, optimizer="adam",
                          max_epochs=300), out)
    return out


def _cli(args, capsys):
    from tfflat_cli.main import main

    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
@pytest.mark.parametrize("neuron_wise", [None, "0,3-5"])
def test_cli_rescale_writes_a_new_run(saved_run, tmp_path, capsys, neuron_wise):
    from tfflat import runs

    out = tmp_path / "rescaled"
    extra = [] if neuron_wise is None else ["--neuron-wise", neuron_wise]
    code, stdout, err = _cli(["rescale", str(saved_run), "--alpha", "5.9", "--layer", "1", "--out", str(out),
                              "--json", *extra], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["max_rel_logit_change"] <= 1e-5 and summary["labels_changed"] == 0
    old, new = runs.load(saved_run), runs.load(out)
    x = np.concatenate([old.splits.x_train, old.splits.x_test])
    assert_same_logits(predict_logits(old.model, x), predict_logits(new.model, x))
    rec = new.meta["rescale"][-1]
    assert rec["alpha"] == 5.9 and rec["layer"] == 1 and rec["from"] == str(saved_run)
    assert rec["units"] == (None if neuron_wise is None else [0, 3, 4, 5])
    assert new.meta["config"] == old.meta["config"] and new.meta["indices"] == old.meta["indices"]
    units = slice(None) if neuron_wise is None else [0, 3, 4, 5]
    np.testing.assert_allclose(new.model.layers[2].kernel.numpy()[:, units],
                               5.9 * old.model.layers[2].kernel.numpy()[:, units], rtol=1e-6)


@pytest.mark.parametrize("args, needle", [
    (["--layer", "3"], "is the output layer"), (["--alpha", "-1"], "> 0"),
    (["--neuron-wise", "x"], "unit indices"), (["--same-out"], "is the run being rescaled"),
])
def test_cli_rescale_errors(saved_run, tmp_path, capsys, args, needle):
    out = str(saved_run) if "--same-out" in args else str(tmp_path / "r")
    args = [a for a in args if a != "--same-out"]
    base = {"--alpha": "2", "--layer": "1"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    flat = [t for kv in base.items() for t in kv]
    code, _, err = _cli(["rescale", str(saved_run), *flat, "--out", out], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:") and needle in err


def test_cli_rescale_missing_run(tmp_path, capsys):
    code, _, err = _cli(["rescale", str(tmp_path / "nope"), "--alpha", "2", "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and "does not exist" in err
