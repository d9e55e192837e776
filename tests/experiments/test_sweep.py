"""`tfflat sweep`: records, equality with single runs, shards, and resuming after Ctrl-C / kill -9."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfflat import runs
from tfflat.errors import UserError
from tfflat.experiments import config, results, sweep

TINY = """\
experiment = "sweep"
[data]
dataset = "mnist"
train_size = {s}
test_size = {e}
attack_sizes = {a}
[train]
seeds = {seeds}
overtrain_epochs = {over}
"""
MEASURE = "[sharpness]\nepochs = 2\nmax_epochs = 2\n[prior]\nlikelihood = \"probit\"\n"
NO_MEASURE = "[sharpness]\nenabled = false\n[prior]\nenabled = false\n"


def tiny(tmp_path, s=50, e=50, a=(0, 25), seeds=(0, 1), over=(0,), extra=MEASURE, name="tiny.toml"):
    p = tmp_path / name
    p.write_text(TINY.format(s=s, e=e, a=list(a), seeds=list(seeds), over=list(over)) + extra)
    return p


RECORD_KEYS = {"key", "experiment", "quick", "dataset", "model", "optimizer", "attack_size", "seed", "status",
               "overtrain", "epoch", "zero_error_epoch", "attack_resample",
               "train_accuracy", "attack_accuracy", "test_accuracy", "generalization_error", "train_loss",
               "sharpness", "log10_sharpness", "zeta", "sharpness_converged", "corner_sharpness", "sharpness_loss",
               "max_loss", "corner_loss", "ascent_trace", "sharpness_epochs", "sharpness_stopped", "gp_test_error",
               "log10_prior", "ln_prior", "pac_bayes_bound",
               "function_hash", "function_errors_S", "seconds_train", "seconds_sharpness", "seconds_prior", "seconds"}


def corner_truth(model, x, y, zeta):
    """L(w) and L at the first-order corner Δ_i = ζ(|w_i| + 1)·sign(∂L/∂w_i), in float64, from the
    FCN's weights with plain TensorFlow ops (not tfflat's objective)."""
    import tensorflow as tf

    ws = [tf.constant(w.astype(np.float64)) for w in model.get_weights()]
    x, y = tf.constant(x.reshape(len(x), -1), tf.float64), tf.constant(y, tf.float64)

    def loss(ws):
        h = x
        for i in range(0, len(ws) - 2, 2):
            h = tf.nn.relu(h @ ws[i] + ws[i + 1])
        z = tf.reshape(h @ ws[-2] + ws[-1], [-1])
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))

    with tf.GradientTape() as tape:
        tape.watch(ws)
        base = loss(ws)
    grads = tape.gradient(base, ws)
    corner = [w + zeta * (tf.abs(w) + 1) * tf.sign(g) for w, g in zip(ws, grads)]
    return float(base), float(loss(corner))


@pytest.mark.slow
def test_tiny_sweep_matches_single_runs(tmp_path, mnist, data_dir):
    """4 points (|A| ∈ {0, 25} × seeds {0, 1}) with reused compiled steps equal fresh `tfflat train` runs."""
    from tfflat.flatness import sharpness
    from tfflat.prior import ep, kernels
    from tfflat.training.run import TrainConfig, train_run

    from tfflat.experiments.tensorboard import read_scalars

    exp = config.load(tiny(tmp_path, over=(0, 3)), data_dir=data_dir)
    out, tb = tmp_path / "r.jsonl", tmp_path / "tb"
    summary = sweep.run(exp, out, task=mnist, tensorboard=str(tb))
    assert summary["points"] == 4 and summary["run"] == 4 and summary["records"] == 8
    df = pd.read_json(out, lines=True)
    assert len(df) == 8 and RECORD_KEYS <= set(df.columns)
    at_zero = df[df["overtrain"] == 0]
    assert (df["status"] == "ok").all() and (at_zero["train_accuracy"] == 1.0).all()
    assert (at_zero["function_errors_S"] == 0).all()     # f on S = the true labels at the zero-error epoch
    assert np.allclose(df["generalization_error"], 1 - df["test_accuracy"])
    assert (df["epoch"] == df["zero_error_epoch"] + df["overtrain"]).all()
    meta = runs.read_json(results.meta_path(out))
    assert meta["config"]["data"]["attack_sizes"] == [0, 25] and meta["versions"]["tensorflow"]
    assert len(meta["indices"]["A"]["indices"]) == 25 and len(meta["indices"]["S"]["indices"]) == 50

    # the last point ran on a reused model and compiled training step: compare with a fresh run
    rec = {r["key"]: r for r in runs.read_jsonl(out)}["sgd/A25/seed1/over0"]     # exact floats
    model, m, splits = train_run(TrainConfig(data_dir=data_dir, train_size=50, test_size=50, attack_size=25,
                                             seed=1, overtrain=0), task=mnist)
    assert m["zero_error_epoch"] == rec["zero_error_epoch"]
    assert m["test_accuracy"] == rec["test_accuracy"] and m["history"][-1]["loss_S"] == rec["train_loss"]
    assert splits.indices["S"] == meta["indices"]["S"] and splits.indices["E"] == meta["indices"]["E"]
    sh = sharpness(model, splits.x_train, splits.y_train, zeta=1e-4, lr=1e-3, epochs=2, batch_size=32, seed=1,
                   max_epochs=2)
    # the sweep measured the networks of seed 1 side by side (a stack): float32 sums in another order,
    # amplified by the difference max_loss − loss in the sharpness (compare tests/flatness/test_sharpness_batched.py)
    assert sh.sharpness == pytest.approx(rec["sharpness"], rel=1e-4)
    # the convergence fields against an independent float64 corner and the record's own numbers
    loss, corner = corner_truth(model, splits.x_train, splits.y_train, 1e-4)
    assert rec["sharpness_loss"] == pytest.approx(loss, rel=1e-5) and rec["corner_loss"] == pytest.approx(corner, rel=1e-5)
    assert rec["corner_sharpness"] == pytest.approx(100 * (corner - loss) / (1 + loss), rel=1e-3)
    trace = rec["ascent_trace"]
    assert len(trace) == 2 and np.all(np.diff(trace) >= 0) and trace[-1] == rec["max_loss"]
    assert rec["sharpness"] == pytest.approx(100 * (rec["max_loss"] - loss) / (1 + loss), rel=1e-4)
    assert rec["sharpness_converged"] == (rec["max_loss"] >= rec["corner_loss"] * (1 - 1e-6)
                                          and rec["sharpness_stopped"]) == (rec["sharpness_note"] is None)
    assert rec["sharpness_epochs"] == 2 and rec["sharpness_stopped"] == sh.stopped_by_tolerance
    for r in runs.read_jsonl(out):
        assert isinstance(r["sharpness_converged"], bool) and len(r["ascent_trace"]) == 2
    x_se = np.concatenate([splits.x_train, splits.x_test])
    k = kernels.nngp_kernel(x_se, 2, 2 ** 0.5, 1.0)
    f = np.concatenate([splits.y_train, (np.asarray(model(splits.x_test)).ravel() >= 0).astype(int)])
    assert ep.ep_log_prior(k, f, "probit").ln_z == pytest.approx(rec["ln_prior"], rel=1e-9)
    # the GP's own error on E: the EP classifier fitted on S's true labels, on the same kernel's blocks
    from tfflat.prior import EPClassifier

    pred = EPClassifier(k[:50, :50], "probit").fit(splits.y_train).predict(k[50:, :50], np.diagonal(k)[50:])
    assert rec["gp_test_error"] == pytest.approx(np.mean(pred != splits.y_test), abs=1e-12)
    assert len({r["gp_test_error"] for r in runs.read_jsonl(out)}) == 1          # S, E, kernel: one GP
    assert rec["pac_bayes_bound"] == pytest.approx((np.log(1 / 0.05) - rec["ln_prior"]) / 50)

    # TensorBoard: one run per (optimizer, seed, overtraining epoch), step = |A|, one point per record
    events = [(tag, step, v) for _, tag, step, v in read_scalars(tb)]
    assert {p.name for p in tb.iterdir()} == {"sgd_seed0", "sgd_seed1", "sgd_seed0_over3", "sgd_seed1_over3"}
    by_tag = {}
    for tag, step, v in events:
        by_tag.setdefault(tag, []).append((step, v))
    assert sorted(s for s, _ in by_tag["log10_prior"]) == [0, 0, 0, 0, 25, 25, 25, 25]
    assert {"test_accuracy", "log10_sharpness/zeta=0.0001", "corner_sharpness/zeta=0.0001",
            "sharpness_converged/zeta=0.0001", "zero_error_epoch"} <= set(by_tag)
    v = {(r["key"]): r["log10_prior"] for r in runs.read_jsonl(out)}
    assert sorted(v for _, v in by_tag["log10_prior"]) == pytest.approx(sorted(v.values()), rel=1e-6)

    # a rerun does nothing; a different config refuses the file
    assert sweep.run(exp, out, task=mnist)["run"] == 0
    assert len(runs.read_jsonl(out)) == 8
    other = config.load(tiny(tmp_path, seeds=(0, 2), over=(0, 3), name="other.toml"), data_dir=data_dir)
    with pytest.raises(UserError, match=r"different config \(\[train\] seeds differs\)"):
        sweep.run(other, out, task=mnist)


def test_shards_cover_the_grid_exactly_once(tmp_path):
    p = tmp_path / "g.toml"
    p.write_text((TINY.format(s=50, e=50, a=[0, 10, 20, 30], seeds=[0, 1, 2], over=[0]) + MEASURE)
                 .replace("[train]\n", '[train]\noptimizers = ["sgd", "adam"]\n'))
    exp = config.load(p)
    points = sweep.grid(exp)
    assert len(points) == 2 * 4 * 3 == len(set(points))
    for n in range(1, 9):
        shares = [sweep.shard(points, i, n) for i in range(1, n + 1)]
        flat = [q for s in shares for q in s]
        assert sorted(flat, key=points.index) == points and len(flat) == len(set(flat))
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert sweep.parse_shard("2/8") == (2, 8) and sweep.parse_shard(None) == (1, 1)
    for bad in ("0/4", "5/4", "1-4", "a/b", "1/0"):
        with pytest.raises(UserError, match="--shard"):
            sweep.parse_shard(bad)


@pytest.mark.slow
def test_failed_point_is_recorded_not_retried(tmp_path, mnist, data_dir):
    p = tmp_path / "f.toml"
    p.write_text((TINY.format(s=50, e=50, a=[25], seeds=[0], over=[0, 5]) + NO_MEASURE)
                 .replace("[train]\n", "[train]\nmax_epochs = 2\n"))
    exp = config.load(p, data_dir=data_dir)
    out = tmp_path / "f.jsonl"
    sweep.run(exp, out, task=mnist)
    recs = runs.read_jsonl(out)
    assert [r["status"] for r in recs] == ["no_zero_error", "no_zero_error"]
    assert recs[0]["zero_error_epoch"] is None and recs[0]["epoch"] == 2 and "sharpness" not in recs[0]
    assert sweep.run(exp, out, task=mnist)["run"] == 0


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return [sys.executable, "-m", "tfflat_cli.main", *args], env


def _wait_for_records(path: Path, n: int, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if path.exists() and len(runs.read_jsonl(path)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"sweep ended early with {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no records appeared")


def _workers_of(out: Path) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"tfflat.experiments.sweep" in cmd and str(out).encode() in cmd:
                pids.append(int(d.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and kill -9")
def test_killed_sweep_resumes_without_loss_or_repeats(tmp_path, data_dir, capsys):
    """kill -9 of a 2-worker sweep mid-way (its workers die with it), then a rerun to the end."""
    cfg = tiny(tmp_path, s=30, e=30, a=(0, 10, 20), seeds=(0, 1, 2), extra=NO_MEASURE)
    out = tmp_path / "r.jsonl"
    base = ["sweep", str(cfg), "--data-dir", data_dir, "--out", str(out)]

    cmd, env = _cli(*base, "--workers", "2")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_records(out, 2, proc)
    workers = _workers_of(out)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    alive = [p for p in workers if Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]
    assert len(workers) == 2 and not alive
    first = out.read_text()
    assert 2 <= len(first.splitlines()) < 9

    from tfflat_cli.main import main

    main([*base, "--json"])                                       # the rerun, in this process
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == len(first.splitlines()) and summary["run"] == 9 - summary["skipped"]
    keys = [r["key"] for r in runs.read_jsonl(out)]
    assert len(keys) == len(set(keys)) == 9                       # nothing lost, nothing repeated
    assert sorted(keys) == sorted(p.key(0) for p in sweep.grid(config.load(cfg)))
    assert out.read_text().startswith(first)                      # earlier records untouched


@pytest.mark.slow
def test_reused_adam_trainer_equals_a_fresh_run(tmp_path, mnist, data_dir):
    """Adam's moments and iteration count are reset between the points of one session."""
    from tfflat.experiments.session import Session
    from tfflat.training.run import TrainConfig, train_run

    p = tmp_path / "adam.toml"
    p.write_text((TINY.format(s=30, e=30, a=[10], seeds=[0, 1], over=[0]) + NO_MEASURE)
                 .replace("[train]\n", '[train]\noptimizers = ["adam"]\n'))
    session = Session(config.load(p, data_dir=data_dir), mnist)
    session.train("adam", 10, 0)
    assert session._trainer("adam", 10, 1) is not None           # the compiled step is reused …
    model, result = session.train("adam", 10, 1)
    fresh, meta, _ = train_run(TrainConfig(data_dir=data_dir, train_size=30, test_size=30, attack_size=10, seed=1,
                                           optimizer="adam"), task=mnist)
    assert result.zero_error_epoch == meta["zero_error_epoch"]   # … and the run is the fresh one, bit for bit
    assert [h["loss"] for h in result.history] == [h["loss"] for h in meta["history"]]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), fresh.get_weights()))


def test_attack_resample_draws_a_new_A_per_sample(mnist):
    """S and E never change; A is nested by default and a fresh, reproducible subset per sample."""
    from tfflat.data import draw_indices

    def ids(d, k):
        return d[k]["indices"]

    big, small = draw_indices(mnist, 40, 30, 40, 0), draw_indices(mnist, 40, 10, 40, 0)
    assert ids(small, "A") == ids(big, "A")[:10]                          # one order: nested subsets
    if len(mnist.pools) == 1:                                             # the local MNIST: one pool, S | E | A
        order = np.random.default_rng(0).permutation(len(next(iter(mnist.pools.values())))).tolist()
        assert (ids(big, "S"), ids(big, "E"), ids(big, "A")) == (order[:40], order[40:80], order[80:110])
    draws = {(a, k): draw_indices(mnist, 40, a, 40, 0, sample=k) for a in (10, 30) for k in (0, 1)}
    for d in draws.values():
        assert ids(d, "S") == ids(big, "S") and ids(d, "E") == ids(big, "E")
        assert len(set(ids(d, "A"))) == len(ids(d, "A")) and not set(ids(d, "A")) & set(ids(d, "S"))
        if d["A"]["pool"] == d["E"]["pool"]:
            assert not set(ids(d, "A")) & set(ids(d, "E"))
    assert ids(draws[10, 0], "A") != ids(draws[10, 1], "A") and ids(draws[10, 0], "A") != ids(small, "A")
    assert draws[30, 1] == draw_indices(mnist, 40, 30, 40, 0, sample=1)   # reproducible
    with pytest.raises(UserError, match="sample must be an integer"):
        draw_indices(mnist, 40, 10, 40, 0, sample=-1)


@pytest.mark.slow
def test_resampled_sweep_trains_each_seed_on_its_own_A(tmp_path, mnist, data_dir):
    """With attack_resample each point's A is in the sidecar, and the point equals a fresh training
    run on exactly those indices."""
    from tfflat import models
    from tfflat.data import take
    from tfflat.training.run import fit

    p = tmp_path / "rs.toml"
    p.write_text(TINY.format(s=30, e=30, a=[10], seeds=[0, 1], over=[0]).replace(
        "attack_sizes", "attack_resample = true\nattack_sizes") + NO_MEASURE)
    exp = config.load(p, data_dir=data_dir)
    out = tmp_path / "rs.jsonl"
    sweep.run(exp, out, task=mnist)
    meta = runs.read_json(results.meta_path(out))
    a0, a1 = meta["attack_indices"]["A10/seed0"], meta["attack_indices"]["A10/seed1"]
    assert meta["attack_resample"] is True and len(a0) == len(a1) == 10 and a0 != a1
    recs = {r["key"]: r for r in runs.read_jsonl(out)}
    assert all(r["attack_resample"] is True for r in recs.values())
    indices = {**meta["indices"], "A": {"pool": meta["indices"]["A"]["pool"], "indices": a1}}
    model = models.build(exp.model_spec(mnist.input_shape), seed=1)
    result = fit(model, take(mnist, indices), exp.run_config("sgd", 10, 1))
    rec = recs["sgd/A10/seed1/over0"]
    assert result.zero_error_epoch == rec["zero_error_epoch"] and result.history[-1]["loss_S"] == rec["train_loss"]


def test_points_claimed_by_another_sweep_are_not_run_twice(tmp_path, mnist, data_dir):
    """Another process sweeping into the same file holds points 0 and 1: this sweep runs only point 2;
    once that process is gone (killed: the kernel drops its claims) a rerun runs the other two."""
    cfg = config.load(tiny(tmp_path, s=30, e=30, a=(0,), seeds=(0, 1, 2), extra=NO_MEASURE), data_dir=data_dir)
    out = tmp_path / "r.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(out) + '.claims'!r}, os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 2, 0, os.SEEK_SET)\n"
        "print('ready', flush=True); time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        first = sweep.run(cfg, out, task=mnist)
        assert (first["run"], first["elsewhere"], first["skipped"]) == (1, 2, 0)
        assert [r["seed"] for r in runs.read_jsonl(out)] == [2]
    finally:
        holder.kill()
        holder.wait()
    second = sweep.run(cfg, out, task=mnist)
    assert (second["run"], second["elsewhere"], second["skipped"]) == (2, 0, 1)
    assert sorted(r["seed"] for r in runs.read_jsonl(out)) == [0, 1, 2]
