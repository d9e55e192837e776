"""`train` checkpoints and resumes (issue 12): a rerun after an interruption — Ctrl-C or kill -9 — ends
with the same history and weights as an uninterrupted run; --out onto another run refuses unless
--force, which removes the stale measures."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfflat import runs
from tfflat.errors import IncompleteError, UserError
from tfflat.training import checkpoint
from tfflat.training.run import TrainConfig, train_run

TFFLAT = [sys.executable, "-c", "from tfflat_cli.main import main; main()"]


def _history(run_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in runs.read_json(run_dir / "run.json")["history"]]


def _weights(run_dir):
    return runs.load(run_dir, data=False).model.get_weights()


def _same_run(a, b):
    assert _history(a) == _history(b)
    for x, y in zip(_weights(a), _weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("optimizer, opt_args", [("momentum", {}), ("adam", {"beta_1": 0.5})])
def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, optimizer, opt_args):
    """Optimizer slots (momentum, Adam moments and step count) and the shuffling RNG are restored: after a
    Ctrl-C at epoch 10 the rerun continues from the epoch-8 checkpoint to exactly the uninterrupted run."""
    cfg = TrainConfig(dataset="boolean", bits=5, train_size=24, test_size=8, batch_size=5, max_epochs=25,
                      optimizer=optimizer, opt_args=opt_args, learning_rate=1e-3, seed=2)
    with pytest.raises(IncompleteError):
        train_run(cfg, tmp_path / "ref")

    def interrupt(epoch, rec, model):
        if epoch == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "run", callback=interrupt, checkpoint_every=4)
    assert not (tmp_path / "run" / "run.json").exists() and checkpoint.load(tmp_path / "run").epoch == 8
    with pytest.raises(UserError, match="is an unfinished training run .*rerun its `tfflat train"):
        runs.open_model(tmp_path / "run")
    try:
        train_run(cfg, tmp_path / "run", checkpoint_every=4)
    except IncompleteError:
        pass
    _same_run(tmp_path / "ref", tmp_path / "run")
    assert not checkpoint.path_of(tmp_path / "run").exists()         # deleted once the run is saved
    with pytest.raises(IncompleteError):
        train_run(cfg, tmp_path / "run")                             # finished: kept as it is


def test_resume_needs_the_optimizer_state(tmp_path):
    cfg = TrainConfig(dataset="boolean", bits=5, train_size=24, test_size=8, batch_size=5, max_epochs=12,
                      optimizer="adam", learning_rate=1e-3, seed=2)

    def interrupt(epoch, rec, model):
        if epoch == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "run", callback=interrupt, checkpoint_every=6)
    ck = checkpoint.load(tmp_path / "run")
    ck.trainer["optimizer"] = [np.zeros_like(v) for v in ck.trainer["optimizer"]]       # Adam moments lost
    checkpoint.save(tmp_path / "run", ck)
    with pytest.raises(IncompleteError):
        train_run(cfg, tmp_path / "run")
    with pytest.raises(IncompleteError):
        train_run(cfg, tmp_path / "ref")
    assert _history(tmp_path / "run")[:7] == _history(tmp_path / "ref")[:7]
    assert _history(tmp_path / "run")[7:] != _history(tmp_path / "ref")[7:]


def test_kill_9_then_rerun_resumes(tmp_path):
    """`tfflat train` killed with SIGKILL mid-run; the same command rerun resumes from its last checkpoint
    and the run equals an uninterrupted one (history and weights, bit for bit)."""
    args = ["train", "--dataset", "boolean", "--bits", "5", "--train-size", "24", "--test-size", "8", "--batch-size",
            "4", "--optimizer", "momentum", "--lr", "1e-3", "--max-epochs", "60", "--checkpoint-every", "1"]
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    p = subprocess.Popen(TFFLAT + args + ["--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 500                  # TensorFlow's start-up is slow on a loaded machine
    while not checkpoint.path_of(out).exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    _, stderr = p.communicate()
    assert p.returncode == -signal.SIGKILL and checkpoint.path_of(out).exists(), stderr.decode()
    killed_at = checkpoint.load(out).epoch
    assert 1 <= killed_at < 60 and not (out / "run.json").exists()
    r = subprocess.run(TFFLAT + args + ["--out", str(out), "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "max-epochs" in r.stderr, r.stderr          # the cap: saved, reported
    meta = runs.read_json(out / "run.json")
    assert meta["epochs"] == 60 and len(meta["history"]) == 61
    ref = subprocess.run(TFFLAT + args + ["--out", str(tmp_path / "ref")], capture_output=True, text=True, env=env)
    assert ref.returncode == 1, ref.stderr                                    # the same command, uninterrupted
    _same_run(tmp_path / "ref", out)
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "run.json"]


def test_resumed_and_stored_status_on_the_command_line(tmp_path, run_cli):
    args = ["train", "--dataset", "boolean", "--bits", "4", "--train-size", "8", "--test-size", "8", "--lr", "0.05",
            "--out", tmp_path / "r", "--json"]
    code, out, err = run_cli(args)
    assert code == 0 and json.loads(out)["status"] == "trained", err
    before = (tmp_path / "r" / "run.json").stat().st_mtime_ns
    code, out, err = run_cli(args)
    summary = json.loads(out)
    assert code == 0 and summary["status"] == "stored" and (tmp_path / "r" / "run.json").stat().st_mtime_ns == before
    code, out, _ = run_cli(args[:-1])
    assert "already holds this run (same options): nothing to train" in out


def test_out_onto_another_run_refuses_and_force_removes_stale_measures(tmp_path, run_cli):
    r = tmp_path / "r"
    base = ["train", "--dataset", "boolean", "--bits", "4", "--train-size", "8", "--test-size", "8", "--out", r]
    assert run_cli(base + ["--lr", "0.05"])[0] == 0
    assert run_cli(["prior", r])[0] == 0 and run_cli(["hessian", r, "--top-k", "2", "--probes", "0"])[0] == 0
    (r / "notes.txt").write_text("the user's own file")
    code, _, err = run_cli(base + ["--lr", "0.07"])
    assert code == 2 and "already holds a trained run (--lr 0.05 there, 0.07 here)" in err, err
    assert "--force" in err and "flatness.json, prior.json" in err and err.count("\n") == 1
    code, out, err = run_cli(base + ["--lr", "0.07", "--force"])
    assert code == 0, err
    assert sorted(p.name for p in r.iterdir()) == ["model.keras", "notes.txt", "run.json"]
    assert runs.read_json(r / "run.json")["config"]["learning_rate"] == 0.07


def test_unfinished_run_of_another_config_or_a_corrupt_checkpoint_is_refused(tmp_path):
    cfg = TrainConfig(dataset="boolean", bits=4, train_size=8, test_size=8, max_epochs=9, learning_rate=1e-4)

    def stop(epoch, rec, model):
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "r", callback=stop, checkpoint_every=2)
    other = TrainConfig(**{**cfg.to_dict(), "seed": 5})
    with pytest.raises(UserError, match=r"unfinished run of another config \(`seed` 0 there, 5 here\)"):
        train_run(other, tmp_path / "r")
    checkpoint.path_of(tmp_path / "r").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UserError, match="cannot read the training checkpoint .*; delete it, or rerun with `force`"):
        train_run(cfg, tmp_path / "r")
    with pytest.raises(IncompleteError):
        train_run(cfg, tmp_path / "r", force=True)
    assert runs.read_json(tmp_path / "r" / "run.json")["epochs"] == 9


def test_measures_without_their_run_are_not_adopted(tmp_path):
    (tmp_path / "r").mkdir()
    runs.write_json(tmp_path / "r" / "prior.json", {"ln_prior": -3.0})
    cfg = TrainConfig(dataset="boolean", bits=3, train_size=4, test_size=4, max_epochs=0)
    with pytest.raises(UserError, match=r"holds measures of an earlier run \(prior.json\) but no run.json"):
        train_run(cfg, tmp_path / "r")
