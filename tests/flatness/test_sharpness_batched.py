"""The written-out FCN ascent (one network or a stack) against the generic path and a float64 truth."""

import numpy as np
import pytest
from flatness_helpers import loss64, tiny_data, tiny_fcn
from test_sharpness import reference_ascent

from tfflat.errors import UserError
from tfflat.flatness import batched, sharpness

N, BS = 20, 8


@pytest.fixture(scope="module")
def data():
    x, y = tiny_data(N, d=4)
    x[:, 2] = 0.0                                  # an input that is zero on all of S: dropped, Δ stays 0
    return x, y


def same_to_rounding(a, b):
    """Equal losses to float32 rounding; the sharpness 100 (max − loss)/(1 + loss) then to 100× that."""
    for key in ("loss", "max_loss", "corner_loss"):
        assert getattr(a, key) == pytest.approx(getattr(b, key), rel=2e-5), key
    assert a.sharpness == pytest.approx(b.sharpness, abs=100 * 4e-5 * b.max_loss)


def nets(k):
    return [tiny_fcn(d=4, seed=s) for s in range(k)]


@pytest.mark.parametrize("track", ["step", "epoch"])
def test_fast_path_equals_the_generic_path(data, track, monkeypatch):
    x, y = data
    model = nets(1)[0]
    settings = dict(zeta=1e-3, lr=0.05, epochs=3, batch_size=BS, seed=5, track=track)
    fast = sharpness(model, x, y, **settings)
    monkeypatch.setattr(batched, "plain_fcn", lambda t: False)           # the generic (Keras) path
    generic = sharpness(model, x, y, **settings)
    same_to_rounding(fast, generic)
    np.testing.assert_allclose(fast.trace, generic.trace, rtol=1e-6)


def test_stack_equals_one_network_at_a_time_and_the_float64_truth(data):
    x, y = data
    models = nets(3)
    weights = [m.get_weights() for m in models]
    seeds = [4, 9, 4]                                   # two groups: the seed-4 pair shares its minibatches
    many = batched.sharpness_fcns(weights, x, y, zeta=1e-3, lr=0.05, epochs=3, batch_size=BS, seeds=seeds,
                                  max_epochs=3)
    for m, w, s, got in zip(models, weights, seeds, many):
        one = sharpness(m, x, y, zeta=1e-3, lr=0.05, epochs=3, batch_size=BS, seed=s, max_epochs=3)
        same_to_rounding(got, one)
        np.testing.assert_allclose(got.trace, one.trace, rtol=1e-6)
        assert got.loss == pytest.approx(loss64(w, x, y), rel=1e-6)
        # a float32 ascent against a float64 one (9 steps of lr 0.05 into a box of ζ = 1e-3)
        assert got.max_loss == pytest.approx(reference_ascent(w, x, y, 1e-3, 0.05, 3, BS, s), rel=3e-5)
        assert got.settings["seed"] == s and got.settings["steps"] == 9


def test_stack_stops_each_network_by_the_rule_as_it_would_alone(data):
    """Under the stopping rule the networks of a stack stop at different epochs; each one's result and
    epoch count are those of its ascent alone."""
    x, y = data
    models = nets(3)
    many = batched.sharpness_fcns([m.get_weights() for m in models], x, y, zeta=1e-3, lr=0.01, epochs=2,
                                  batch_size=BS, seeds=[4, 4, 4], window=3, rtol=1e-3, max_epochs=60)
    alone = [sharpness(m, x, y, zeta=1e-3, lr=0.01, epochs=2, batch_size=BS, seed=4, window=3, rtol=1e-3,
                       max_epochs=60) for m in models]
    assert [r.ascent_epochs for r in many] == [r.ascent_epochs for r in alone]
    assert [r.stopped_by_tolerance for r in many] == [r.stopped_by_tolerance for r in alone]
    assert len({r.ascent_epochs for r in alone}) > 1                  # they really stop apart
    for got, one in zip(many, alone):
        same_to_rounding(got, one)
        assert len(got.trace) == got.ascent_epochs


def test_stack_requests():
    x, y = tiny_data(N, d=4)
    assert batched.sharpness_fcns([], x, y) == []
    w = nets(1)[0].get_weights()
    with pytest.raises(UserError, match="seeds"):
        batched.sharpness_fcns([w, w], x, y, seeds=[1, 2, 3])
    with pytest.raises(UserError, match="architecture"):
        batched.sharpness_fcns([w, tiny_fcn(d=4, widths=(5, 3)).get_weights()], x, y)
    with pytest.raises(UserError, match="ζ"):
        batched.sharpness_fcns([w], x, y, zeta=0.0)
