"""`tfflat sharpness|hessian|prior|rescale MODEL` for Keras files, ModelCheckpoint folders and SavedModels,
with --data FILE.npz or --dataset; every bad input is one line, exit 2."""

import json

import keras
import numpy as np
import pytest


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A sigmoid MLP trained with model.fit (checkpointed every epoch), saved as m.keras, and its data d.npz."""
    root = tmp_path_factory.mktemp("anymodel")
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    xt = rng.normal(size=(30, 4)).astype(np.float32)
    yt = (xt[:, 0] + xt[:, 1] > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.02), "binary_crossentropy")
    ckpt = root / "ckpt"
    model.fit(x, y, epochs=3, verbose=0, callbacks=[keras.callbacks.ModelCheckpoint(str(ckpt / "e{epoch}.keras"))])
    model.save(root / "m.keras")
    np.savez(root / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    np.savez(root / "wide.npz", x_train=np.zeros((5, 5), np.float32), y_train=np.zeros(5))
    np.savez(root / "three.npz", x_train=x, y_train=y % 3 + (y > 0))
    return root


def one_line_error(code, err, needle):
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and needle in err, err


def test_sharpness_hessian_prior_of_a_keras_file(files, run_cli):
    from tfflat.flatness import hessian_measures, sharpness
    from tfflat.prior import log_prior_of_model
    from tfflat.runs import load_keras

    m, d = files / "m.keras", files / "d.npz"
    code, out, err = run_cli(["sharpness", m, "--data", d, "--json", "--epochs", "3", "--out", files / "s.json"])
    assert code == 0, err
    summary = json.loads(out)
    assert summary["head"] == "sigmoid" and summary["settings"]["epochs"] == 3 and summary["file"].endswith("s.json")
    model = load_keras(m)
    a = np.load(d)
    ref = sharpness(model, a["x_train"], a["y_train"], zeta=1e-4, lr=1e-3, epochs=3, batch_size=32)
    assert summary["log10_sharpness"] == pytest.approx(ref.log10_sharpness, rel=1e-6)
    assert json.loads((files / "s.json").read_text())["sharpness"] == summary["sharpness"]
    # 3 epochs do not reach the box's first-order corner here: the library's warning, in flags
    assert not ref.converged and not summary["converged"]
    assert "warning: the sharpness maximiser ended below" in err and "raise --lr or --epochs" in err

    code, out, err = run_cli(["hessian", m, "--data", d, "--json", "--top-k", "3", "--probes", "4"])
    assert code == 0, err
    hess = json.loads(out)
    ref = hessian_measures(model, a["x_train"], a["y_train"], top_k=3, probes=4)
    assert hess["spectral_norm"] == pytest.approx(ref.spectral_norm, rel=1e-6) and hess["head"] == "sigmoid"

    code, out, err = run_cli(["prior", m, "--data", d, "--json"])
    assert code == 0, err
    prior = json.loads(out)
    ref = log_prior_of_model(model, a["x_train"], a["y_train"], a["x_test"], a["y_test"])
    assert prior["log10_prior"] == pytest.approx(ref["log10_prior"], rel=1e-9) and prior["kernel"] == "analytic"
    assert prior["test_accuracy"] == pytest.approx(np.mean((model.predict(a["x_test"], verbose=0).ravel() >= 0.5)
                                                           == a["y_test"]))


def test_checkpoint_folder_uses_the_newest_keras_file(files, run_cli):
    import os
    import time

    newest = files / "ckpt" / "e3.keras"
    now = time.time()
    for i, p in enumerate(sorted((files / "ckpt").glob("*.keras"))):
        os.utime(p, (now - 100 + i, now - 100 + i))
    args = ["--data", files / "d.npz", "--json", "--epochs", "1"]
    code, out, err = run_cli(["sharpness", files / "ckpt", *args])
    assert code == 0, err
    _, direct, _ = run_cli(["sharpness", newest, *args])
    assert json.loads(out)["sharpness"] == json.loads(direct)["sharpness"]


def test_rescale_a_keras_file(files, run_cli):
    from tfflat.runs import load_keras

    out = files / "rescaled.keras"
    code, stdout, err = run_cli(["rescale", files / "m.keras", "--alpha", "4", "--layer", "1", "--out", out,
                                 "--data", files / "d.npz", "--json"])
    assert code == 0, err
    rec = json.loads(stdout)
    assert rec["max_rel_logit_change"] < 1e-5 and rec["labels_changed"] == 0 and rec["checked_on"] == 60
    old, new = load_keras(files / "m.keras"), load_keras(out)
    np.testing.assert_allclose(new.layers[0].kernel.numpy(), 4 * old.layers[0].kernel.numpy(), rtol=1e-6)
    code, _, err = run_cli(["rescale", files / "m.keras", "--alpha", "4", "--out", out])
    one_line_error(code, err, "already exists")


def test_bad_input_is_one_line_exit_2(files, run_cli, tmp_path):
    import tensorflow as tf

    m, d = files / "m.keras", files / "d.npz"
    keras.models.load_model(m).export(str(tmp_path / "sm"), verbose=False)
    tf.train.Checkpoint(v=tf.Variable(1.0)).save(str(tmp_path / "tfckpt" / "ck"))
    (tmp_path / "w").mkdir()
    keras.models.load_model(m).save_weights(str(tmp_path / "w" / "m.weights.h5"))
    cases = [
        (["sharpness", m], "m.keras is a Keras file; give --data"),
        (["prior", m], "give --data FILE.npz"),
        (["sharpness", m, "--data", files / "wide.npz"], "shape (5,)"),
        (["sharpness", m, "--data", files / "three.npz"], "needs labels 0 or 1"),
        (["sharpness", m, "--data", d, "--head", "softmax"], "needs K ≥ 2"),
        (["sharpness", m, "--data", d, "--zeta", "-1"], "(--zeta)"),
        (["hessian", m, "--data", d, "--top-k", "1000"], "--top-k must be between 1 and the number of parameters"),
        (["sharpness", m, "--data", d, "--dataset", "mnist"], "not both"),
        (["sharpness", tmp_path / "sm", "--data", d, "--head", "logit"], "is a SavedModel"),
        (["prior", tmp_path / "sm", "--data", d, "--head", "logit"], "is a SavedModel"),
        (["sharpness", tmp_path / "tfckpt", "--data", d], "tf.train.Checkpoint"),
        (["sharpness", tmp_path / "w", "--data", d], "only weights"),
        (["sharpness", tmp_path / "nothing.keras", "--data", d], "does not exist"),
        (["prior", m, "--data", d, "--kernel", "analytic", "--feature-layer", "dense"], "plain ReLU FCN"),
    ]
    for args, needle in cases:
        code, _, err = run_cli(args)
        one_line_error(code, err, needle)


@pytest.mark.slow
def test_real_mnist_end_to_end_with_a_keras_file(data_dir, mnist_small, tmp_path, run_cli):
    """A small CNN with a sigmoid output trained by model.fit on real MNIST (digit ≥ 5), saved as .keras,
    measured by the CLI from an .npz and from --dataset (which draws the same S and E as `tfflat train`)."""
    from tfflat.data.arrays import task_arrays

    keras.utils.set_random_seed(0)
    a = task_arrays("mnist", data_dir, 100, 100, seed=3)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Reshape((28, 28, 1)),
                              keras.layers.Conv2D(4, 5, strides=3, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    model.fit(a["x_train"], a["y_train"], epochs=15, batch_size=25, verbose=0)
    model.save(tmp_path / "cnn.keras")
    np.savez(tmp_path / "mnist.npz", **a)
    code, out, err = run_cli(["sharpness", tmp_path / "cnn.keras", "--data", tmp_path / "mnist.npz", "--json",
                              "--epochs", "2"])
    assert code == 0, err
    from_npz = json.loads(out)
    code, out, err = run_cli(["sharpness", tmp_path / "cnn.keras", "--dataset", "mnist", "--data-dir", data_dir,
                              "--train-size", "100", "--test-size", "100", "--data-seed", "3", "--json",
                              "--epochs", "2"])
    assert code == 0, err
    assert json.loads(out)["sharpness"] == from_npz["sharpness"] > 0
    code, out, err = run_cli(["prior", tmp_path / "cnn.keras", "--data", tmp_path / "mnist.npz", "--json",
                              "--samples", "5"])
    assert code == 0, err
    prior = json.loads(out)
    assert prior["kernel"] == "empirical" and prior["n"] == 200 and prior["log10_prior"] < 0
    assert prior["train_accuracy"] > 0.9 and 0.5 < prior["test_accuracy"] <= 1
