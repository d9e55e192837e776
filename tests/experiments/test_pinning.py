"""GPU-aware sweeps (issue 17): `--workers N` pins worker i to one GPU (CUDA_VISIBLE_DEVICES, round robin
over --devices), checked with pretend GPUs (the workers then run on the CPU); and `--devices` on every
heavy command reaches the library (a bad spec is one line, exit 2)."""

import json

import pytest

from tfflat import devices, runs
from tfflat.experiments import config, sweep

TINY = """\
experiment = "sweep"
[data]
dataset = "mnist"
train_size = 20
test_size = 20
attack_sizes = [0]
[train]
seeds = [0, 1]
[sharpness]
enabled = false
[prior]
enabled = false
"""


@pytest.mark.slow
def test_workers_are_pinned_one_per_gpu(tmp_path, monkeypatch, mnist, data_dir):
    (tmp_path / "tiny.toml").write_text(TINY)
    exp = config.load(tmp_path / "tiny.toml", data_dir=data_dir)
    monkeypatch.setattr(devices, "nvidia_present", lambda: True)
    monkeypatch.setattr(devices, "gpu_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")       # the parent's view: physical ids
    s = sweep.run(exp, tmp_path / "r.jsonl", workers=2, task=mnist, devices="gpu:1,3")
    assert s["workers"] == 2 and s["pinned"] == ["5", "7"] and s["records"] == 2
    assert {r["status"] for r in runs.read_jsonl(tmp_path / "r.jsonl")} == {"ok"}


def test_devices_option_on_every_heavy_command(run_cli):
    for command in ("train", "sharpness", "hessian", "prior", "sweep"):
        code, out, err = run_cli([command, "--help"])
        assert code == 0 and "--devices SPEC" in out, command
    code, out, err = run_cli(["train", "--help"])
    assert "--precision [float32|mixed_bfloat16|mixed_float16]" in out
    code, out, err = run_cli(["prior", "--kernel-file", "k.npy", "--labels", "y.npy", "--devices", "tpu:0"])
    assert code == 2 and err.startswith("error: unknown --devices 'tpu:0'") and len(err.strip().splitlines()) == 1


def test_library_default_is_the_callers_strategy_scope():
    import tensorflow as tf

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    with mirrored.scope():
        assert devices.strategy(None) is mirrored          # the CLI's `with devices.scope(spec)` relies on this
    assert devices.is_default(devices.strategy(None)) == (devices.gpu_count() <= 1)
    json.dumps(devices.describe(mirrored))
