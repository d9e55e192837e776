"""Which measures survive α-rescaling: on a ReLU FCN trained on real MNIST, every measure's measured
invariance (layer-wise and neuron-wise on the last hidden layer, α ∈ {0.2, 5.9}) is the one its
definition predicts, with a wide margin between float rounding (invariant) and a real change (not).
(The last hidden layer is the one that tells relative flatness apart; test_relative.py rescales the first.)"""

import numpy as np
import pytest

from tfflat.errors import UserError
from tfflat.flatness import MEASURES
from tfflat.flatness.invariance import format_table, invariance_table, relative_change

# lean settings (the table evaluates every measure 5 times). The magnitude-aware PAC-Bayes measures
# are run without Jiang et al.'s ε, where they are exactly invariant; with ε > 0 they move by an
# amount set by ε/(σ|w|) (test_pac_bayes_flatness.py), too close to float rounding for a margin here.
LEAN = {"keskar_sharpness": {"epochs": 3}, "hessian_trace": {"probes": 20}, "hessian_log10_top_product": {"top_k": 5},
        "layer_hessian_trace": {"probes": 20}, "hessian_density": {"steps": 16, "probes": 1},
        "adaptive_sharpness_avg": {"draws": 10}, "steps": 5, "draws": 5, "rtol": 1e-5, "epsilon": 0.0}


@pytest.fixture(scope="module")
def trained(mnist_small):
    """A 784-10-10-1 ReLU FCN trained to zero error on real MNIST (|S| = 100, |A| = 20)."""
    from tfflat import models
    from tfflat.training import train

    model = models.build(models.model_spec("fcn:10,10", "mnist", (28, 28)), seed=0)
    r = train(model, mnist_small, "sgd", learning_rate=0.05, max_epochs=500, seed=0)
    assert r.zero_error_epoch is not None
    return model, mnist_small


@pytest.fixture(scope="module")
def table(trained):
    model, s = trained
    before = [w.copy() for w in model.get_weights()]
    rows = invariance_table(model, s.x_train, s.y_train, layers=[2], settings=LEAN)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    return rows


def test_measured_invariance_is_the_derived_one(table):
    assert [r["measure"] for r in table] == list(MEASURES)
    mag = [r for r in table if r["measure"] in ("pac_bayes_mag_flatness", "pac_bayes_mag_sharpness")]
    assert all(r["expected_layerwise"] and r["expected_neuronwise"] for r in mag)         # ε = 0
    bad = [(r["measure"], r["expected_layerwise"], r["max_change_layerwise"], r["expected_neuronwise"],
            r["max_change_neuronwise"]) for r in table if not r["agrees"]]
    assert not bad, bad
    for r in table:
        for key in ("layerwise", "neuronwise"):
            change = r[f"max_change_{key}"]
            if r[f"expected_{key}"]:
                assert change < 1e-5, (r["measure"], key, change)          # float rounding
            else:
                assert change > 1e-3, (r["measure"], key, change)          # a real change
        assert len(r["changes"]) == 2 * 2                                 # kinds × α


def test_relative_flatness_changes_only_with_the_penultimate_units(table):
    row = next(r for r in table if r["measure"] == "relative_flatness")
    moved = {(c["kind"], c["layer"]) for c in row["changes"] if c["relative_change"] > 1e-3}
    assert moved == {("neuron", 2)}
    assert {c["alpha"] for c in row["changes"]} == {0.2, 5.9}


def test_format_table(table):
    text = format_table(table)
    lines = text.splitlines()
    assert len(lines) == 2 + len(MEASURES) and "adaptive_sharpness_linf" in text
    assert lines[2].split()[0] == "keskar_sharpness" and lines[2].split()[-1] == "yes"


def test_helpers_and_refusals(trained):
    import keras

    assert relative_change(2.0, 2.0) == 0.0 and relative_change(float("-inf"), float("-inf")) == 0.0
    assert relative_change(1.0, 1.5) == pytest.approx(1 / 3) and relative_change(1.0, float("inf")) == float("inf")
    inputs = keras.Input((4,))
    linear = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    x = np.zeros((4, 4), np.float32)
    with pytest.raises(UserError, match="no hidden ReLU Dense layer"):
        invariance_table(linear, x, np.zeros(4), measures="path_norm")
    model, s = trained
    with pytest.raises(UserError, match="unknown measure"):
        invariance_table(model, s.x_train, s.y_train, measures="nope")
