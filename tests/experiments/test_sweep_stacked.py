"""Sweeps trained and measured as stacks (`tfflat sweep`'s default for plain-SGD FCNs) against the
point-by-point path: which points stack, the same records to float rounding, resuming inside a stack."""

import re

import pytest

from tfflat import runs
from tfflat.experiments import config, sweep
from tfflat.experiments.session import Session

TOML = """\
experiment = "sweep"
[data]
dataset = "mnist"
train_size = 30
test_size = 20
attack_sizes = [0, 10]
attack_resample = {resample}
[train]
optimizers = {optimizers}
seeds = [0, 1]
overtrain_epochs = [0, 2]
[sharpness]
epochs = 2
max_epochs = 2      # fixed length: the stopping rule's stacked form is tested in test_sharpness_batched.py
[prior]
likelihood = "probit"
"""
# sharpness fields: float32 rounding of the ascent's sums (the stacked ascent orders them differently)
SHARP = {"sharpness", "log10_sharpness", "corner_sharpness", "sharpness_loss", "max_loss", "corner_loss"}


def same(got: dict, want: dict, key: str) -> None:
    """The same record to float rounding: the same fields, the sharpness to float32 rounding of the
    ascent's sums, the losses to float32 logits (rows of other products), everything else identical."""
    assert got.keys() == want.keys(), key
    for f, v in want.items():
        if f in SHARP:
            assert got[f] == pytest.approx(v, rel=2e-4, abs=1e-6), (key, f)
        elif f in ("ascent_trace", "train_loss"):
            assert got[f] == pytest.approx(v, rel=1e-6), (key, f)
        elif f == "sharpness_note" and v is not None:     # the same reason; its numbers as the fields above
            assert got[f] is not None and re.sub(r"[\d.]+", "#", got[f]) == re.sub(r"[\d.]+", "#", v), (key, f)
        elif not f.startswith("seconds"):           # epochs, accuracies, f, log P(f), status
            assert got[f] == v, (key, f)


def load(tmp_path, optimizers=("sgd",), resample="false", data_dir=None):
    p = tmp_path / "s.toml"
    p.write_text(TOML.format(optimizers=list(optimizers), resample=resample))
    return config.load(p, data_dir=data_dir)


def test_which_points_stack(tmp_path):
    exp = load(tmp_path, optimizers=("sgd", "adam"))
    points = sweep.grid(exp)
    units = sweep.batches(exp, points)
    assert [[p.name for p in b] for b in units] == [
        ["sgd/A0/seed0", "sgd/A10/seed0"], ["sgd/A0/seed1", "sgd/A10/seed1"],
        ["adam/A0/seed0"], ["adam/A0/seed1"], ["adam/A10/seed0"], ["adam/A10/seed1"]]
    assert [len(b) for b in sweep.batches(exp, points, pieces=2)] == [1] * 8     # a part per worker
    assert all(len(b) == 1 for b in sweep.batches(exp, points, stack=False))
    assert sweep.stackable(exp, "sgd") and not sweep.stackable(exp, "adam") and not sweep.stackable(exp, "gd")
    assert not sweep.stackable(load(tmp_path, resample="true"), "sgd")             # each seed its own A
    momentum = load(tmp_path)
    momentum.train.opt_args["momentum"] = 0.9
    assert not sweep.stackable(momentum, "sgd")


@pytest.mark.slow
def test_stacked_records_equal_point_by_point_and_resume(tmp_path, mnist, data_dir):
    exp = load(tmp_path, data_dir=data_dir)
    session = Session(exp, mnist)
    points = [p for p in sweep.grid(exp) if p.seed == 1]           # one stack: |A| = 0, 10 of seed 1
    single, stacked, resumed = (tmp_path / f"{n}.jsonl" for n in ("single", "stacked", "resumed"))
    for p in points:
        sweep.run_point(session, p, set(), single)
    done = set()
    sweep.run_batch(session, points, done, stacked)
    want = {r["key"]: r for r in runs.read_jsonl(single)}
    got = {r["key"]: r for r in runs.read_jsonl(stacked)}
    assert set(got) == set(want) == done and len(got) == 4
    for key, r in want.items():
        same(got[key], r, key)
        assert got[key]["status"] == "ok" and isinstance(got[key]["sharpness_converged"], bool)
    # a rerun that finds some records of the stack done appends only the others, the same numbers
    first = runs.read_jsonl(stacked)[:1]
    for r in first:
        runs.append_jsonl(resumed, r)
    done = {r["key"] for r in first}
    new = sweep.run_batch(session, points, done, resumed)
    assert {r["key"] for r in new} == set(want) - {first[0]["key"]}
    again = {r["key"]: r for r in runs.read_jsonl(resumed)}
    assert set(again) == set(want)
    for key, r in again.items():                # the stack of the ascent is narrower now: rounding again
        same(r, want[key], key)
    assert sweep.run_batch(session, points, done, resumed) == []
