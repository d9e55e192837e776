"""FlatnessCallback in model.fit: measures every k epochs into History and TensorBoard event files."""

import math

import keras
import numpy as np
import pytest

import tfflat
from tfflat.errors import UserError


def test_measures_every_k_epochs_into_history_and_tensorboard(tmp_path):
    import tensorflow as tf

    from tfflat.keras import FlatnessCallback

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.float32)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy")
    cb = FlatnessCallback(x, y, every=5, measures=("sharpness", "hessian"), log_dir=tmp_path / "tb",
                          epochs=1, top_k=2, probes=0, zeta=1e-3)
    history = model.fit(x, y, epochs=10, batch_size=20, verbose=0, callbacks=[cb])
    h = history.history
    assert len(h["loss"]) == len(h["sharpness"]) == len(h["spectral_norm"]) == 10
    measured = [i for i, v in enumerate(h["sharpness"]) if not math.isnan(v)]
    assert measured == [4, 9] and [r["epoch"] for r in cb.records] == [5, 10]
    # the last measurement is that of the final weights
    final = tfflat.measure(model, x, y, measures=("sharpness", "hessian"), epochs=1, top_k=2, probes=0, zeta=1e-3)
    assert h["sharpness"][9] == pytest.approx(final["sharpness"], rel=1e-6)
    assert h["spectral_norm"][9] == pytest.approx(final["spectral_norm"], rel=1e-6)
    assert h["sharpness"][4] != h["sharpness"][9]
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events
    scalars, plugins = {}, set()
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
                plugins.add(value.metadata.plugin_data.plugin_name)
    # (no hessian_trace: probes=0 leaves it NaN, which is not written)
    assert set(scalars) == {"flatness/sharpness", "flatness/log10_sharpness", "flatness/spectral_norm",
                            "flatness/log10_top_product"}
    assert "scalars" in plugins                    # TensorBoard's scalar plugin reads them
    assert sorted(scalars["flatness/sharpness"]) == [5, 10]
    assert scalars["flatness/sharpness"][10] == pytest.approx(h["sharpness"][9], rel=1e-6)


def test_bad_arguments():
    from tfflat.keras import FlatnessCallback

    x = np.zeros((4, 2), np.float32)
    with pytest.raises(UserError, match="every"):
        FlatnessCallback(x, [0, 1, 0, 1], every=0)
    with pytest.raises(UserError, match="unknown measure"):
        FlatnessCallback(x, [0, 1, 0, 1], measures=("curvature",))
    with pytest.raises(UserError, match="`y` is missing"):
        FlatnessCallback(x)
