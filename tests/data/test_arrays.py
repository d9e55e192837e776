"""User data as arrays: tensors and tf.data (batched or not), .npz files read without pickles."""

import keras
import numpy as np
import pytest

from tfflat.data.arrays import as_arrays, check_inputs, load_npz
from tfflat.errors import UserError


def test_tensors_and_datasets_give_the_same_arrays():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 3, 2)).astype(np.float32), rng.integers(0, 2, 10)
    model = keras.Sequential([keras.Input((3, 2)), keras.layers.Flatten(), keras.layers.Dense(1)])
    for given in [(tf.constant(x), tf.constant(y)), (x.tolist(), y.tolist()),
                  (tf.data.Dataset.from_tensor_slices((x, y)), None),
                  (tf.data.Dataset.from_tensor_slices((x, y)).batch(4), None),
                  (tf.data.Dataset.from_tensor_slices((x, y, np.ones(10))).batch(5, drop_remainder=True), None)]:
        xa, ya = as_arrays(*given, model=model)
        assert xa.dtype == np.float32
        np.testing.assert_array_equal(xa, x)
        np.testing.assert_array_equal(ya, y)
    xa, ya = as_arrays(tf.data.Dataset.from_tensor_slices(x))
    assert ya is None and xa.shape == x.shape
    with pytest.raises(UserError, match="infinite"):
        as_arrays(tf.data.Dataset.from_tensor_slices((x, y)).repeat())
    with pytest.raises(UserError, match="leave `y` out"):
        as_arrays(tf.data.Dataset.from_tensor_slices((x, y)), y)
    with pytest.raises(UserError, match=r"shape \(6,\)"):
        check_inputs(x.reshape(10, 6), model)
    x[0, 0, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        check_inputs(x, model)


def test_npz_files(tmp_path):
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])
    np.savez(tmp_path / "ok.npz", x_train=x, y_train=y, x_test=x[:2], extra=y)
    out = load_npz(tmp_path / "ok.npz")
    assert set(out) == {"x_train", "y_train", "x_test"}
    np.testing.assert_array_equal(out["y_train"], y)
    np.savez(tmp_path / "obj.npz", x_train=np.array([{"a": 1}] * 4, dtype=object), y_train=y)
    np.savez(tmp_path / "missing.npz", x=x, y=y)
    np.savez(tmp_path / "short.npz", x_train=x, y_train=y[:3])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name, needle in [("obj.npz", "pickles"), ("missing.npz", "needs x_train and y_train"),
                         ("short.npz", "3 labels"), ("junk.npz", "cannot read"), ("none.npz", "does not exist")]:
        with pytest.raises(UserError, match=needle):
            load_npz(tmp_path / name)
