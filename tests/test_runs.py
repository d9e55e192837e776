"""Run directories: atomic writes, save/load round trip, clear errors."""

import json

import numpy as np
import pytest

from tfflat import runs
from tfflat.errors import IncompleteError, UserError
from tfflat.training import predict_logits
from tfflat.training.run import TrainConfig, train_run


def test_atomic_write_leaves_no_temporaries(tmp_path):
    runs.write_json(tmp_path / "a.json", {"x": np.float32(1.5), "y": np.arange(3), "z": float("nan")})
    assert json.loads((tmp_path / "a.json").read_text()) == {"format_version": runs.FORMAT_VERSION, "x": 1.5,
                                                             "y": [0, 1, 2], "z": None, "z_nonfinite": "nan"}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == runs.file_mode() == 0o644


def test_jsonl_ignores_torn_last_line(tmp_path):
    p = tmp_path / "r.jsonl"
    runs.append_jsonl(p, {"a": 1})
    runs.append_jsonl(p, {"a": 2})
    with open(p, "a") as fh:
        fh.write('{"a": 3, "b"')               # a crash mid-line
    assert runs.read_jsonl(p) == [{"a": 1}, {"a": 2}]


def test_train_run_roundtrip(tmp_path, data_dir):
    cfg = TrainConfig(data_dir=data_dir, train_size=60, attack_size=10, test_size=30, max_epochs=400,
                      learning_rate=0.05, seed=3, data_seed=1)
    model, meta, splits = train_run(cfg, tmp_path / "run")
    run = runs.load(tmp_path / "run")
    assert run.meta["config"] == cfg.to_dict() and run.meta["zero_error_epoch"] == meta["zero_error_epoch"]
    assert run.meta["versions"]["tensorflow"] and run.meta["versions"]["tfflat"]
    for a, b in [(run.splits.x_train, splits.x_train), (run.splits.y_attack, splits.y_attack),
                 (run.splits.x_test, splits.x_test)]:
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(predict_logits(run.model, splits.x_test), predict_logits(model, splits.x_test),
                               rtol=1e-6)
    assert run.meta["train_accuracy"] == 1.0


def test_incomplete_run_is_saved_then_reported(tmp_path, data_dir):
    cfg = TrainConfig(data_dir=data_dir, train_size=60, test_size=10, max_epochs=1, learning_rate=1e-7)
    with pytest.raises(IncompleteError, match="max-epochs"):
        train_run(cfg, tmp_path / "r")
    assert runs.load(tmp_path / "r", data=False).meta["zero_error_epoch"] is None


def test_not_a_run(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        runs.check(tmp_path / "missing")
    with pytest.raises(UserError, match="not a tfflat run"):
        runs.check(tmp_path)


def test_unknown_config_keys():
    with pytest.raises(UserError, match="lerning_rate"):
        TrainConfig.from_dict({"lerning_rate": 0.1})
