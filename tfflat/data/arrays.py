"""The data a user holds, as numpy arrays: arrays, tensors, ``tf.data.Dataset``\\ s and ``.npz`` files.

Every measure accepts (x, y) as numpy arrays or tensors, or a finite ``tf.data.Dataset`` of (x, y)
pairs (batched or not; a third element, sample weights, is ignored) in place of x. ``.npz`` files
are read with ``allow_pickle=False``: nothing in a data file is ever executed.
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
BOOLEAN_SIZES = dict(train_size=64, test_size=64)


def example_shape(model) -> tuple | None:
    """The shape of one input example of a functional/Sequential model (None entries: any size)."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs or len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def as_arrays(x, y=None, *, model=None, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray | None]:
    """(x float32, y or None) from arrays, tensors or a ``tf.data.Dataset`` of (x, y) given as ``x``.

    Args:
      x: an array-like of inputs (n, …), or a finite dataset whose elements are ``(x, y)``,
        ``(x, y, weight)`` or ``x`` alone.
      y: labels (n, …), or None (a dataset carries its own).
      model: used to tell a batched dataset from an unbatched one by the rank of its elements.
    """
    if x is None:
        raise UserError(f"`{names[0]}` is missing")
    if _is_dataset(x):
        if y is not None:
            raise UserError(f"`{names[0]}` is a tf.data.Dataset: put the labels in it as (x, y) pairs and leave "
                            f"`{names[1]}` out")
        return dataset_arrays(x, model=model, what=names[0])
    try:
        xa = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise UserError(f"`{names[0]}` is not an array of inputs ({err})") from None
    if xa.dtype.kind not in "biuf":
        raise UserError(f"`{names[0]}` has {xa.dtype} entries; give numeric inputs")
    ya = None if y is None else np.asarray(y)
    return xa.astype(np.float32, copy=False), ya


def _is_dataset(obj) -> bool:
    tf = sys.modules.get("tensorflow")          # without TensorFlow loaded nothing can be a Dataset
    return tf is not None and isinstance(obj, tf.data.Dataset)


def dataset_arrays(ds, model=None, what: str = "x") -> tuple[np.ndarray, np.ndarray | None]:
    """All of a finite dataset as (x, y) arrays; batches are concatenated."""
    import tensorflow as tf

    if int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise UserError(f"`{what}` is an infinite tf.data.Dataset (repeat()); give a finite one")
    spec = ds.element_spec
    if isinstance(spec, dict):
        raise UserError(f"`{what}` yields dicts; give a dataset of (x, y) pairs")
    labelled = isinstance(spec, tuple)
    if labelled and len(spec) not in (2, 3):
        raise UserError(f"`{what}` yields tuples of {len(spec)}; give a dataset of (x, y) or (x, y, weight)")
    xspec = spec[0] if labelled else spec
    shape = example_shape(model) if model is not None else None
    if shape is not None:
        batched = len(xspec.shape) == len(shape) + 1
    else:
        batched = len(xspec.shape) > 0 and xspec.shape[0] is None
    xs, ys = [], []
    for element in ds.as_numpy_iterator():
        xe, ye = (element[0], element[1]) if labelled else (element, None)
        xs.append(np.asarray(xe))
        if ye is not None:
            ys.append(np.asarray(ye))
    if not xs:
        raise UserError(f"`{what}` is an empty dataset")
    join = np.concatenate if batched else np.stack
    try:
        x = join(xs)
        y = join(ys) if labelled else None
    except ValueError as err:
        raise UserError(f"the elements of `{what}` do not fit together ({err})") from None
    if x.dtype.kind not in "biuf":
        raise UserError(f"`{what}` yields {x.dtype} inputs; give numeric inputs")
    return x.astype(np.float32, copy=False), y


def check_inputs(x: np.ndarray, model=None, what: str = "x") -> None:
    """Finite inputs of one example shape that ``model`` takes, or a :class:`UserError` saying what differs."""
    if x.ndim < 1:
        raise UserError(f"`{what}` must be an array of examples (n, …), got a scalar")
    if x.size and not np.all(np.isfinite(x)):
        raise UserError(f"`{what}` contains NaN or infinite values")
    shape = example_shape(model) if model is not None else None
    if shape is None:
        return
    got = tuple(x.shape[1:])
    if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
        name = getattr(model, "name", "the model")
        raise UserError(f"`{what}` has examples of shape {got}, but model {name!r} takes inputs of shape "
                        f"{tuple(shape)}")


def load_npz(path) -> dict:
    """The arrays ``x_train``, ``y_train`` (required), ``x_test``, ``y_test`` (optional) of an ``.npz`` file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file {path} does not exist")
    if not zipfile.is_zipfile(p):
        raise UserError(f"cannot read {path} as an .npz file (it is not a zip archive); write it with "
                        "np.savez(path, x_train=…, y_train=…, x_test=…, y_test=…)")
    try:
        with np.load(p, allow_pickle=False) as z:
            files = list(z.files)
            out = {k: z[k] for k in NPZ_KEYS if k in files}
    except ValueError as err:
        if "allow_pickle" in str(err) or "Object arrays" in str(err):
            raise UserError(f"{path} holds object arrays (pickles), which tfflat never loads; save plain numeric "
                            "arrays with np.savez") from None
        raise UserError(f"cannot read {path} as an .npz file: {err}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"cannot read {path} as an .npz file ({err}); write it with np.savez(path, x_train=…, "
                        "y_train=…, x_test=…, y_test=…)") from None
    missing = [k for k in ("x_train", "y_train") if k not in out]
    if missing:
        have = ", ".join(files) or "no arrays"
        raise UserError(f"{path} has {have}; it needs x_train and y_train (and optionally x_test, y_test)")
    if "y_test" in out and "x_test" not in out:
        raise UserError(f"{path} has y_test but no x_test")
    for split in ("train", "test"):
        xk, yk = f"x_{split}", f"y_{split}"
        if xk in out and yk in out and len(out[xk]) != len(out[yk]):
            raise UserError(f"in {path}, {xk} has {len(out[xk])} examples but {yk} has {len(out[yk])} labels")
    return out


def task_arrays(name: str, data_dir=None, train_size: int | None = None, test_size: int | None = None,
                seed: int = 0) -> dict:
    """S and E of a tfflat task (``mnist``, ``cifar_cats_cars``, ``boolean``) as the arrays of :func:`load_npz`;
    sizes default to the paper's (64 and 64 for boolean), drawn with the data seed ``seed``."""
    from tfflat import validate
    from tfflat.data import draw_indices, load_task, take

    sizes = defaults.PAPER_SIZES.get(name, BOOLEAN_SIZES if name == "boolean" else {})
    train_size = validate.integer("train_size", sizes.get("train_size", 500) if train_size is None else train_size,
                                  least=1)
    test_size = validate.integer("test_size", sizes.get("test_size", 1000) if test_size is None else test_size,
                                 least=0)
    seed = validate.seed("data_seed", seed)
    task = load_task(name, data_dir)
    splits = take(task, draw_indices(task, train_size, 0, test_size, seed))
    return {"x_train": splits.x_train, "y_train": splits.y_train, "x_test": splits.x_test, "y_test": splits.y_test}
