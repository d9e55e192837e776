"""Readers for the raw data sets: local files first, tensorflow-datasets as the fallback.

Each reader returns a dict ``pool name -> Pool`` ("train", "test"), where a Pool holds the labels
of every example and loads images lazily by index, so a run that uses 2,000 of 60,000 images
decodes only those.
"""

from __future__ import annotations

import gzip
import os
import pickle
import socket
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
def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read {path}: {err}; re-download the file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file; re-download it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
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
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise UserError(f"{images[0]} and {labels[0]} do not match (images {x.shape}, labels {y.shape})")
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


def cifar_batches(data_dir: Path) -> dict[str, Pool]:
    """The CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) in DIR or DIR/cifar-10-batches-py."""
    pools = {}
    for root in (data_dir, data_dir / "cifar-10-batches-py", data_dir / "cifar10" / "cifar-10-batches-py"):
        for split, names in (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"])):
            files = [root / n for n in names if (root / n).is_file()]
            if not files or split in pools:
                continue
            xs, ys = [], []
            for f in files:
                try:
                    with open(f, "rb") as fh:
                        d = pickle.load(fh, encoding="bytes")
                    xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                    ys.append(np.asarray(d[b"labels"], np.int64))
                except Exception as err:
                    raise UserError(f"cannot read CIFAR-10 batch {f}: {err}; re-download it") from None
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
