"""Readers for local data files (real MNIST / CIFAR from ../shared/data, generated corrupt files)."""

import gzip
import pickle
import time

import numpy as np
import pytest

from tfflat.data import load_task, sources
from tfflat.errors import UserError


def test_mnist_idx_real(mnist):
    pool = mnist.pools["test"]
    assert len(pool) == 10000
    # class counts from the data README: 980 1135 1032 1010 982 | 892 958 1028 974 1009
    assert int(pool.labels.sum()) == 892 + 958 + 1028 + 974 + 1009
    x = pool.load(np.arange(5))
    assert x.shape == (5, 28, 28) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9


def _write_idx(path, arr, gz=True):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def test_idx_roundtrip_plain_and_gz(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (7, 28, 28))
    _write_idx(tmp_path / "train-images-idx3-ubyte", imgs, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(7) % 10)
    task = load_task("mnist", str(tmp_path))
    assert list(task.pools) == ["train"]
    np.testing.assert_allclose(task.pools["train"].load([3])[0], imgs[3] / 255.0, rtol=1e-6)
    assert task.pools["train"].labels.tolist() == [0, 0, 0, 0, 0, 1, 1]


@pytest.mark.parametrize("damage", ["truncate", "magic", "gzip"])
def test_corrupt_idx_is_one_clear_error(tmp_path, damage):
    imgs = np.zeros((4, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    f = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = gzip.open(f).read()
    if damage == "truncate":
        gzip.open(f, "wb").write(raw[:-10])
    elif damage == "magic":
        gzip.open(f, "wb").write(b"\x01" + raw[1:])
    else:
        f.write_bytes(b"not a gzip file at all")
    with pytest.raises(UserError, match="t10k-images"):
        load_task("mnist", str(tmp_path))


def test_missing_files_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="--data-dir"):
        load_task("mnist", str(tmp_path))
    with pytest.raises(UserError, match="not a directory"):
        load_task("mnist", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="unknown dataset"):
        load_task("svhn", str(tmp_path))


def test_cifar_folders_real(data_dir):
    task = load_task("cifar_cats_cars", data_dir)
    assert set(task.pools) == {"train", "test"}
    assert len(task.pools["train"]) == 10000 and len(task.pools["test"]) == 2000
    assert task.pools["train"].labels.mean() == 0.5          # automobile 0, cat 1, 5000 each
    x = task.pools["test"].load([0, 1999])
    assert x.shape == (2, 32, 32, 3) and 0 <= x.min() and x.max() <= 1


def test_cifar_python_batches(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    labels = {}
    for name in ["data_batch_1", "data_batch_2", "test_batch"]:
        data = rng.integers(0, 256, (6, 3072), dtype=np.uint8)
        labels[name] = [1, 3, 3, 5, 1, 0]
        pickle.dump({b"data": data, b"labels": labels[name]}, open(root / name, "wb"))
    task = load_task("cifar_cats_cars", str(tmp_path))
    assert len(task.pools["train"]) == 8 and len(task.pools["test"]) == 4   # only classes 1 and 3 kept
    assert task.pools["test"].labels.tolist() == [0, 1, 1, 0]                 # automobile → 0, cat → 1
    img = task.pools["test"].load([1])[0]
    raw = pickle.load(open(root / "test_batch", "rb"), encoding="bytes")[b"data"][1]
    np.testing.assert_allclose(img, raw.reshape(3, 32, 32).transpose(1, 2, 0) / 255.0, rtol=1e-6)


def test_corrupt_image_names_the_file(tmp_path):
    d = tmp_path / "train" / "cat"
    d.mkdir(parents=True)
    (d / "0001.jpg").write_bytes(b"garbage")
    task = load_task("cifar_cats_cars", str(tmp_path))
    with pytest.raises(UserError, match="0001.jpg"):
        task.pools["train"].load([0])


def test_tfds_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("TFFLAT_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="--data-dir"):
        sources.tfds_pools("mnist", str(tmp_path))
    assert time.perf_counter() - t0 < 30
