"""Nothing from a data folder runs: CIFAR-10 python batches (pickles) are read by a restricted unpickler,
and a data path read from a run's run.json is validated before it is followed (issue 12)."""

import json
import os
import pickle
import struct

import numpy as np
import pytest

from tfflat.data import load_task
from tfflat.data.sources import cifar_files, read_cifar_batch
from tfflat.errors import UserError


def py2_batch(data, labels, label=b"training batch 1 of 5") -> bytes:
    """A CIFAR-10 batch exactly as the official files hold it: a Python 2 protocol-2 pickle (str keys and
    values as byte strings, the array through numpy.core.multiarray._reconstruct + ndarray.__setstate__)."""
    def s(b):
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)

    def i(n):
        return (b"K" + bytes([n])) if 0 <= n < 256 else (b"J" + struct.pack("<i", n))

    out = b"\x80\x02}(" + s(b"batch_label") + s(label)
    out += s(b"labels") + b"](" + b"".join(i(int(v)) for v in labels) + b"e"
    out += s(b"data") + b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b")
    out += b"\x87R(" + i(1) + i(len(data)) + i(3072) + b"\x86cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
    out += b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb\x89" + s(np.asarray(data, np.uint8).tobytes())
    out += b"tb" + s(b"filenames") + b"](" + b"".join(s(b"f%d.png" % k) for k in range(len(data))) + b"eu."
    return out


def test_official_python2_batches_are_read_exactly(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (6, 3072)), rng.integers(0, 256, (4, 3072))
    (tmp_path / "data_batch_1").write_bytes(py2_batch(train, [1, 3, 3, 5, 1, 0]))
    (tmp_path / "test_batch").write_bytes(pickle.dumps(        # a Python 3 re-pickle (str keys, protocol 5)
        {"data": test.astype(np.uint8), "labels": [3, 1, 2, 1]}, protocol=5))
    pools = cifar_files(tmp_path, ("automobile", "cat"))
    np.testing.assert_array_equal(pools["train"].labels, [1, 3, 3, 5, 1, 0])
    images = pools["train"].load(np.arange(6))
    np.testing.assert_array_equal(images[2, :, :, 1] * 255, train[2, 1024:2048].reshape(32, 32))   # channel 1 = G
    task = load_task("cifar_cats_cars", str(tmp_path))                    # automobile (1) → 0, cat (3) → 1
    np.testing.assert_array_equal(task.pools["train"].labels, [0, 1, 1, 0])
    np.testing.assert_array_equal(task.pools["test"].labels, [1, 0, 0])


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Exec:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


PAYLOADS = {
    "os.system p2": lambda m: pickle.dumps({b"data": _System(m), b"labels": []}, protocol=2),
    "os.system p5": lambda m: pickle.dumps({b"data": _System(m)}, protocol=5),
    "exec nested": lambda m: pickle.dumps({b"labels": [1, _Exec(m)], b"data": np.zeros((1, 3072), np.uint8)}, 4),
    "the dict itself": lambda m: pickle.dumps(_System(m), protocol=2),
    "ndarray called": lambda m: b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x7f\x85R.",      # ndarray((2**31,))
    "reconstruct abuse": lambda m: b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x7f\x85Ub\x87R.",
}


@pytest.mark.parametrize("make", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_pickle_payloads_are_refused_and_never_run(tmp_path, make):
    marker = tmp_path / "PWNED"
    (tmp_path / "data_batch_1").write_bytes(make(marker))
    with pytest.raises(UserError, match="CIFAR-10 batch .*data_batch_1") as info:
        read_cifar_batch(tmp_path / "data_batch_1")
    assert "\n" not in str(info.value) and "convert the data to image folders" in str(info.value)
    assert not marker.exists()


def test_object_arrays_are_refused(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": np.array([1, "a"], object), b"labels": [1, 2]}, 2))
    with pytest.raises(UserError, match="object array"):
        read_cifar_batch(tmp_path / "data_batch_1")


def _run_json(data_dir) -> dict:
    config = {"dataset": "cifar_cats_cars", "data_dir": None, "model": "fcn:2", "train_size": 2, "test_size": 1}
    from tfflat.training.run import TrainConfig

    return {"format_version": 1, "config": TrainConfig(**config).to_dict(),
            "model_spec": {"kind": "fcn", "input_shape": [32, 32, 3], "widths": [2], "sigma_w": 1.4, "sigma_b": 1.0},
            "source": {"dataset": "cifar_cats_cars", "data_dir": data_dir, "loader": "local files"},
            "indices": {"S": {"pool": "train", "indices": [0, 1]}, "A": {"pool": "train", "indices": []},
                        "E": {"pool": "test", "indices": [0]}}}


def test_shared_folder_attack_runs_nothing(tmp_path, run_cli, monkeypatch):
    """The issue's layout: a shared folder with runs/r1/run.json naming ../../cifar, whose data_batch_1 is a
    malicious pickle. Neither the relative path (refused: never resolved) nor the same folder given
    absolutely (read by the restricted unpickler) runs the payload, from any command."""
    from tfflat import models

    shared, marker = tmp_path / "shared", tmp_path / "PWNED"
    (shared / "cifar").mkdir(parents=True)
    (shared / "cifar" / "data_batch_1").write_bytes(pickle.dumps({b"data": _System(marker)}, protocol=2))
    model = models.build(_run_json(None)["model_spec"])
    for name, where in (("r1", "../../cifar"), ("r2", str(shared / "cifar"))):
        (shared / "runs" / name).mkdir(parents=True)
        (shared / "runs" / name / "run.json").write_text(json.dumps(_run_json(where)))
        model.save(shared / "runs" / name / "model.keras")
    monkeypatch.chdir(shared / "runs" / "r1")          # ../../cifar resolves to the payload from here too
    for name, needle in (("r1", "not an absolute path"), ("r2", "refuses to unpickle")):
        run = shared / "runs" / name
        for args in (["sharpness", run], ["hessian", run], ["prior", run], ["rescale", run, "--alpha", "2", "--out",
                                                                            tmp_path / "out"]):
            code, _, err = run_cli(args)
            assert code == 2 and needle in err and err.count("\n") == 1, (args, err)
    code, _, err = run_cli(["train", "--dataset", "cifar_cats_cars", "--data-dir", shared / "cifar", "--out",
                            tmp_path / "t"])
    assert code == 2 and "refuses to unpickle" in err, err
    assert not marker.exists()
