"""`tfflat temporal`: measurements every k epochs, α-rescaling, ζ sweeps, TensorBoard, resume."""

import pandas as pd
import pytest

from tfflat import runs
from tfflat.experiments import config, temporal

CFG = """\
experiment = "temporal"
[data]
dataset = "mnist"
train_size = 50
test_size = 50
attack_sizes = [0]
[train]
seeds = [0]
[sharpness]
zeta = [1e-3, 1e-4]
epochs = 2
[temporal]
every = 100
overtrain = 12
rescale_after = 6
alpha = 5.0
rescale_direction = "inverse"
"""


def read_events(directory):
    """(tag, step, value) of every scalar in the TensorBoard event files under ``directory``."""
    from tfflat.experiments.tensorboard import read_scalars

    return [(tag, step, value) for _, tag, step, value in read_scalars(directory)]


@pytest.mark.slow
def test_temporal_run_with_rescaling(tmp_path, mnist, data_dir):
    p = tmp_path / "t.toml"
    p.write_text(CFG)
    exp = config.load(p, data_dir=data_dir)
    out, tb = tmp_path / "t.jsonl", tmp_path / "tb"
    summary = temporal.run(exp, out, tensorboard=str(tb), task=mnist)
    (traj,) = summary["trajectories"]
    zero, r = traj["zero_error_epoch"], traj["rescale_epoch"]
    assert r == zero + 6 and traj["last_epoch"] == zero + 12
    df = pd.DataFrame(runs.read_jsonl(out))
    common = df[df["zeta"] == 1e-4].sort_values(["epoch", "after_rescale"])
    expect = sorted(set(range(0, zero + 13, 100)) | {zero, r, zero + 12})
    twin = common["after_rescale"] & (common["epoch"] == r)        # the measurement just after rescaling
    assert sorted(common[~twin]["epoch"]) == expect and list(common[twin]["epoch"]) == [r]
    assert len(df) == 2 * (len(expect) + 1)                           # one row per ζ, plus the rescaled twin
    assert set(df.groupby("epoch")["zeta"].nunique()) == {2}

    at = common[common["epoch"] == r].set_index("after_rescale")
    before, after = at.loc[False], at.loc[True]
    # eq. 9 keeps the function: the same labels (accuracy, hash) and prior; the sharpness changes a lot
    # (W1/α on the first layer multiplies the influence of its many weights: a spike, as in Fig. 5)
    assert before["function_hash"] == after["function_hash"]
    assert before["train_accuracy"] == after["train_accuracy"] and before["test_accuracy"] == after["test_accuracy"]
    assert before["log10_prior"] == after["log10_prior"]
    assert after["sharpness"] > 2 * before["sharpness"]
    assert (common[common["epoch"] > r]["after_rescale"]).all() and not common[common["epoch"] < r]["after_rescale"].any()
    assert (df["alpha"] == 5.0).all() and (df[df["epoch"] >= zero]["rescale_epoch"] == r).all()
    assert (df["rescale_direction"] == "inverse").all() and (df["rescale_factor"] == 0.2).all()
    assert df["sharpness_converged"].map(type).eq(bool).all() and df["ascent_trace"].map(len).eq(2).all()
    assert (df["corner_sharpness"] > 0).all()

    events = read_events(tb)
    tags = {t for t, _, _ in events}
    assert {"log10_prior", "train_accuracy", "log10_sharpness/zeta=0.001", "log10_sharpness/zeta=0.0001",
            "corner_sharpness/zeta=0.001"} <= tags
    prior_steps = sorted(s for t, s, _ in events if t == "log10_prior")
    assert prior_steps == sorted(expect + [r])
    v = {s: val for t, s, val in events if t == "log10_sharpness/zeta=0.0001" and s == zero}
    assert v[zero] == pytest.approx(common[common["epoch"] == zero]["log10_sharpness"].iloc[0], rel=1e-6)

    # a rerun trains again but measures nothing new
    n = len(runs.read_jsonl(out))
    temporal.run(exp, out, task=mnist)
    assert len(runs.read_jsonl(out)) == n


@pytest.mark.slow
def test_rescaling_past_the_end_is_reported(tmp_path, mnist, data_dir, capsys):
    from tfflat_cli.main import main

    p = tmp_path / "t.toml"
    p.write_text(CFG.replace("rescale_after = 6", "rescale_epoch = 100000").replace("[sharpness]\n", "[sharpness]\nenabled = false\n")
                 .replace("[train]\n", "[train]\nmax_epochs = 3\n") + "[prior]\nenabled = false\n")
    with pytest.raises(SystemExit) as e:
        main(["temporal", str(p), "--data-dir", data_dir, "--out", str(tmp_path / "t.jsonl"), "--json"])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("incomplete: ") and "no zero-error epoch within 3 epochs" in err
    recs = runs.read_jsonl(tmp_path / "t.jsonl")
    assert [r["epoch"] for r in recs] == [0, 3] and "sharpness" not in recs[0]


@pytest.mark.parametrize("direction, factor", [("eq9", 5.9), ("inverse", 1 / 5.9)])
def test_rescaling_direction_is_eq9_or_its_inverse(direction, factor):
    """App. F eq. (9): "eq9" maps (W1, b1, W2) to (αW1, αb1, W2/α), "inverse" to (W1/α, b1/α, αW2)
    (the authors' Fig. 5); the other layers and the logits are unchanged."""
    import numpy as np

    from tfflat import models

    spec = models.model_spec("fcn", "mnist", (784,))
    model = models.build(spec, seed=0)
    before = [w.astype(np.float64) for w in model.get_weights()]
    x = np.random.default_rng(0).random((16, 784)).astype(np.float32)
    z = np.asarray(model(x)).ravel()
    t = config.Temporal(alpha=5.9, rescale_after=1, rescale_direction=direction)
    assert t.rescale_factor == pytest.approx(factor)
    temporal.apply_rescaling(model, t)
    after = model.get_weights()
    expect = [before[0] * factor, before[1] * factor, before[2] / factor] + before[3:]
    for a, e in zip(after, expect):
        assert np.allclose(a, e, rtol=1e-6, atol=0)
    assert np.allclose(np.asarray(model(x)).ravel(), z, rtol=1e-4, atol=1e-5)
    assert temporal.rescale_fields(t) == {"alpha": 5.9, "rescale_direction": direction, "rescale_layer": 1,
                                          "rescale_factor": pytest.approx(factor)}
