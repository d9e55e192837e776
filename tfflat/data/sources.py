"""Readers for the raw data sets: local files first, tensorflow-datasets as the fallback.

Nothing in a data folder is ever executed: IDX files and images are parsed, and the CIFAR-10 python
batches (pickles) are read by an unpickler that builds only plain data (:func:`read_cifar_batch`).

Each reader returns a dict ``pool name -> Pool`` ("train", "test"), where a Pool holds the labels
of every example and loads images lazily by index, so a run that uses 2,000 of 60,000 images
decodes only those.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Pool:
    """All examples of one source split: labels up front, images (float32, in [0, 1]) on demand."""

    labels: np.ndarray                         # (N,) int64 original class ids
    load: Callable[[np.ndarray], np.ndarray]   # indices -> (k, H, W[, C]) float32

    def __len__(self) -> int:
        return len(self.labels)


def _array_pool(images: np.ndarray, labels: np.ndarray) -> Pool:
    return Pool(np.asarray(labels, np.int64), lambda idx: images[np.asarray(idx)].astype(np.float32) / 255.0)


# ---------------------------------------------------------------- MNIST IDX files
MAX_FILE_BYTES = 256 * 2 ** 20     # larger than any MNIST IDX file (47 MB) or CIFAR-10 batch (31 MB)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"cannot read {path}: {err}; the file is corrupt, re-download it") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"{path} is larger than {MAX_FILE_BYTES >> 20} MB, more than any MNIST file; it is not one")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file; re-download it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path} is truncated (its header is incomplete); re-download it")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + math.prod(shape):
        raise UserError(f"{path} is truncated or corrupt (expected shape {shape}); re-download it")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _find(data_dir: Path, subdirs: tuple[str, ...], pattern: str) -> list[Path]:
    for sub in ("",) + subdirs:
        hits = sorted((data_dir / sub).glob(pattern)) if (data_dir / sub).is_dir() else []
        if hits:
            return hits
    return []


def mnist_files(data_dir: Path) -> dict[str, Pool]:
    """``train-*`` / ``t10k-*`` IDX files in DIR or DIR/mnist."""
    pools = {}
    for name, prefix in (("train", "train"), ("test", "t10k")):
        images = _find(data_dir, ("mnist", "MNIST"), f"{prefix}-images-idx3-ubyte*")
        labels = _find(data_dir, ("mnist", "MNIST"), f"{prefix}-labels-idx1-ubyte*")
        if images and labels:
            x, y = read_idx(images[0]), read_idx(labels[0])
            if x.ndim != 3 or x.shape[1:] != (28, 28):
                raise UserError(f"{images[0]} holds an array of shape {x.shape}, not 28×28 MNIST images; re-download it")
            if y.ndim != 1 or len(x) != len(y):
                raise UserError(f"{images[0]} and {labels[0]} do not match (images {x.shape}, labels {y.shape})")
            if len(y) and y.max() > 9:
                raise UserError(f"{labels[0]} holds label {int(y.max())}; MNIST labels are digits 0-9, re-download it")
            pools[name] = _array_pool(x, y)
    if not pools:
        raise UserError(f"no MNIST IDX files (*-images-idx3-ubyte[.gz], *-labels-idx1-ubyte[.gz]) in {data_dir} "
                        "or its mnist/ folder; point --data-dir at the folder that holds them")
    return pools


# ---------------------------------------------------------------- CIFAR-10
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _decode_images(paths: list[Path]) -> np.ndarray:
    from PIL import Image  # matplotlib's dependency

    out = np.empty((len(paths), 32, 32, 3), np.float32)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"), np.float32)
        except Exception as err:  # PIL raises many types for corrupt files
            raise UserError(f"cannot decode image {p}: {err}; replace or delete the file") from None
        if arr.shape != (32, 32, 3):
            raise UserError(f"image {p} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32 CIFAR images")
        out[i] = arr / 255.0
    return out


def cifar_folders(data_dir: Path, classes: tuple[str, ...]) -> dict[str, Pool]:
    """Image folders ``train|test/<class>/*.{png,jpg}`` (in DIR or DIR/cifar10)."""
    pools = {}
    for root in (data_dir, data_dir / "cifar10", data_dir / "cifar-10"):
        for split in ("train", "test"):
            paths, labels = [], []
            for cls in classes:
                folder = root / split / cls
                if folder.is_dir():
                    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                    paths += files
                    labels += [CIFAR10_CLASSES.index(cls)] * len(files)
            if paths and split not in pools:
                pools[split] = Pool(np.asarray(labels, np.int64),
                                    lambda idx, paths=paths: _decode_images([paths[i] for i in np.asarray(idx)]))
        if pools:
            return pools
    return pools


class _Refused(Exception):
    pass


_NDARRAY = object()                              # stands for numpy.ndarray: only as _reconstruct's first argument
_RECONSTRUCT = np.zeros(0).__reduce__()[0]        # numpy's own array reconstructor
_SCALAR = np.float64(0).__reduce__()[0]


def _reconstruct(cls, shape, typecode):
    """numpy's ``_reconstruct`` as array pickles call it: an empty ndarray, filled by its ``__setstate__``."""
    if cls is not _NDARRAY or tuple(shape) != (0,) or typecode not in (b"b", "b"):
        raise _Refused("numpy _reconstruct with other arguments than numpy writes")
    return _RECONSTRUCT(np.ndarray, (0,), b"b")


def _frombuffer(buf, dtype, shape, order):
    """numpy's ``_frombuffer`` as protocol-5 array pickles call it (plain, non-object dtypes only)."""
    if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)) or not isinstance(dtype, np.dtype) \
            or dtype.hasobject or order not in ("C", "F"):
        raise _Refused("numpy _frombuffer with other arguments than numpy writes")
    return np.frombuffer(buf, dtype).reshape(shape, order=order).copy()


def _encode_latin1(text, encoding="latin1"):
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2 (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused("_codecs.encode with another codec than latin-1")
    return text.encode("latin1")


_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct, ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _SCALAR, ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer, ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode_latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler for the CIFAR-10 python batches that can build only what they hold — a dict of bytes,
    strings, ints, lists and numpy arrays — and nothing that runs code: every other global is refused."""

    def find_class(self, module, name):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None

    def persistent_load(self, pid):
        raise _Refused("a persistent id")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 32, 32, 3) uint8, labels (N,)) of one CIFAR-10 python batch, read without executing anything.

    The batch is a pickle; :class:`_CifarUnpickler` builds only plain data (bytes, str, int, lists, numeric
    numpy arrays). A file that asks for anything else is refused with one line, and nothing in it runs.
    """
    convert = "convert the data to image folders train|test/<class>/*.png, or re-download the official batches"
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UserError(f"CIFAR-10 batch {path} is {size >> 20} MB, larger than any real batch (31 MB); {convert}")
        with open(path, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="bytes").load()
    except UserError:
        raise
    except _Refused as what:
        raise UserError(f"CIFAR-10 batch {path} asks to build {what}, which tfflat refuses to unpickle (nothing from a "
                        f"data folder is executed): it is not a plain CIFAR-10 batch; {convert}") from None
    except Exception as err:  # noqa: BLE001 - a corrupt pickle raises many types
        raise UserError(f"cannot read CIFAR-10 batch {path}: {type(err).__name__}: {str(err)[:80]}; {convert}") from None
    if not isinstance(d, dict):
        raise UserError(f"CIFAR-10 batch {path} holds a {type(d).__name__}, not the batch dict; {convert}")
    get = lambda key: d.get(key.encode(), d.get(key))  # noqa: E731 - Python 2 batches have bytes keys
    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "ui" or data.ndim != 2 or data.shape[1] != 3072:
        what = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"CIFAR-10 batch {path}: 'data' is a {what}, not N×3072 bytes; {convert}")
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "ui":
        labels = labels.tolist()
    if (not isinstance(labels, list) or len(labels) != len(data)
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 9 for v in labels)):
        raise UserError(f"CIFAR-10 batch {path}: 'labels' is not a list of {len(data)} class ids 0-9; {convert}")
    if data.size and (data.min() < 0 or data.max() > 255):
        raise UserError(f"CIFAR-10 batch {path}: pixel values outside 0-255; {convert}")
    images = np.asarray(data, np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(labels, np.int64)


def cifar_batches(data_dir: Path) -> dict[str, Pool]:
    """The CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) in DIR or DIR/cifar-10-batches-py,
    read with :func:`read_cifar_batch` (no code in them runs)."""
    pools = {}
    for root in (data_dir, data_dir / "cifar-10-batches-py", data_dir / "cifar10" / "cifar-10-batches-py"):
        for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
            files = [root / n for n in names if (root / n).is_file()]
            if not files or split in pools:
                continue
            xs, ys = zip(*(read_cifar_batch(f) for f in files))
            pools[split] = _array_pool(np.concatenate(xs), np.concatenate(ys))
        if pools:
            return pools
    return pools


def cifar_files(data_dir: Path, classes: tuple[str, ...]) -> dict[str, Pool]:
    pools = cifar_folders(data_dir, classes) or cifar_batches(data_dir)
    if not pools:
        raise UserError(f"no CIFAR-10 data in {data_dir}: expected train|test/<class>/*.png|jpg folders "
                        "or the python batches (data_batch_1..5, test_batch); point --data-dir at them")
    return pools


# ---------------------------------------------------------------- tensorflow-datasets
def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def tfds_pools(name: str, tfds_dir: str | None = None) -> dict[str, Pool]:
    """Load ``name`` with tensorflow-datasets; fail fast (no 200 s of retries) when offline."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=tfds_dir)
    prepared = Path(builder.data_dir).is_dir() and any(Path(builder.data_dir).glob("*.tfrecord*"))
    if not prepared:
        if os.environ.get("TFFLAT_OFFLINE") or not _online():
            raise UserError(f"{name} is not downloaded and there is no network; pass --data-dir DIR "
                            "with local files (see the README, 'Data')")
        builder.download_and_prepare()
    pools = {}
    for split in ("train", "test"):
        ds = builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
        x, y = tfds.as_numpy(ds)
        pools[split] = _array_pool(np.asarray(x), np.asarray(y))
    return pools
