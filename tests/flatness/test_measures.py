"""The measure registry: names, settings, results, and agreement with the measures it wraps."""

import json

import numpy as np
import pytest
from flatness_helpers import tiny_data, tiny_fcn

from tfflat.errors import UserError
from tfflat.flatness import MEASURES, flatness_measures, measure_info
from tfflat.flatness.measures import names, resolve_settings

# small settings so every measure runs in well under a second on a tiny net
FAST = {"keskar_sharpness": {"epochs": 2}, "hessian_trace": {"probes": 10}, "hessian_log10_top_product": {"top_k": 5},
        "layer_hessian_trace": {"probes": 10}, "hessian_density": {"steps": 10, "probes": 1},
        "adaptive_sharpness_avg": {"draws": 5}, "steps": 4, "draws": 5, "rtol": 1e-3, "loss": "ce"}


@pytest.fixture(scope="module")
def tiny():
    x, y = tiny_data()
    return tiny_fcn(), x, y


@pytest.fixture(scope="module")
def everything(tiny):
    model, x, y = tiny
    before = [w.copy() for w in model.get_weights()]
    seen = []
    out = flatness_measures(model, x, y, "all", seed=1, settings=FAST, callback=lambda n, r: seen.append(n))
    return out, before, seen


def test_every_measure_runs_and_leaves_the_model_alone(tiny, everything):
    model, _, _ = tiny
    out, before, seen = everything
    assert list(out) == list(MEASURES) == seen and len(MEASURES) == 19
    for name, res in out.items():
        assert isinstance(res["value"], float) and np.isfinite(res["value"]), name
        assert res["seconds"] >= 0 and set(MEASURES[name].settings()) <= set(res["settings"]), name
        assert (res["invariant_layerwise"], res["invariant_neuronwise"]) == MEASURES[name].expected(), name
    assert out["hessian_density"]["settings"]["steps"] == 10
    assert out["adaptive_sharpness_linf"]["settings"]["steps"] == 4
    assert out["hessian_trace"]["settings"]["seed"] == 1
    json.dumps(out, allow_nan=False)                                          # strict JSON
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_registry_entries_equal_the_functions_they_wrap(tiny, everything):
    from tfflat.flatness import hessian_measures, hvp, sharpness
    from tfflat.flatness.norms import path_norm

    model, x, y = tiny
    out, _, _ = everything
    s = sharpness(model, x, y, zeta=1e-4, lr=1e-3, epochs=2, batch_size=32, seed=1)
    assert out["keskar_sharpness"]["value"] == pytest.approx(s.sharpness, rel=1e-6)
    h = hessian_measures(model, x, y, top_k=5, seed=1, probes=10)
    assert out["hessian_spectral_norm"]["value"] == pytest.approx(h.spectral_norm, rel=1e-5)
    assert out["hessian_log10_top_product"]["value"] == pytest.approx(h.log10_top_product, rel=1e-5)
    assert out["hessian_trace"]["value"] == pytest.approx(h.trace, rel=1e-5)
    assert out["path_norm"]["value"] == path_norm(model)["value"]
    # the per-layer traces add up to the trace; every block's norm is at most ‖H‖₂
    lt = flatness_measures(model, x, y, "layer_hessian_trace", settings={"probes": 100})["layer_hessian_trace"]
    assert all(v["exact"] for v in lt["layers"].values())
    assert lt["value"] == pytest.approx(np.trace(hvp(model, x, y).dense()), rel=1e-5)
    assert out["layer_hessian_spectral_norm"]["max"] <= out["hessian_spectral_norm"]["value"] * (1 + 1e-5)


def test_names_and_settings():
    assert names("all") == list(MEASURES)
    assert names("path_norm, fisher_rao_norm") == ["path_norm", "fisher_rao_norm"]
    assert names(["m_sharpness", "m_sharpness"]) == ["m_sharpness"]
    with pytest.raises(UserError, match="unknown measure"):
        names("flatness")
    with pytest.raises(UserError, match="no measure"):
        names([])
    sel = ["adaptive_sharpness_linf", "m_sharpness", "path_norm"]
    per = resolve_settings(sel, {"rho": 0.2, "m_sharpness": {"rho": 0.7, "m": 4}})
    assert per == {"adaptive_sharpness_linf": {"rho": 0.2}, "m_sharpness": {"rho": 0.7, "m": 4}, "path_norm": {}}
    with pytest.raises(UserError, match="no selected measure has a setting 'zeta'"):
        resolve_settings(sel, {"zeta": 1e-3})
    with pytest.raises(UserError, match="m_sharpness has no setting zeta"):
        resolve_settings(sel, {"m_sharpness": {"zeta": 1e-3}})


def test_metadata():
    info = measure_info()
    assert set(info) == set(MEASURES)
    for name, m in info.items():
        assert m["paper"] and m["definition"] and m["why"], name
        assert isinstance(m["invariant_layerwise"], bool) and isinstance(m["invariant_neuronwise"], bool)
    expected = {n: (m["invariant_layerwise"], m["invariant_neuronwise"]) for n, m in info.items()}
    for n in ("adaptive_sharpness_linf", "adaptive_sharpness_l2", "adaptive_sharpness_avg", "fisher_rao_norm",
              "path_norm"):
        assert expected[n] == (True, True), n
    assert expected["spectral_norm_product"] == expected["relative_flatness"] == (True, False)
    for n in ("keskar_sharpness", "hessian_spectral_norm", "pac_bayes_flatness", "pac_bayes_sharpness", "m_sharpness"):
        assert expected[n] == (False, False), n
    # the magnitude-aware ones are exactly invariant only without Jiang et al.'s ε
    assert MEASURES["pac_bayes_mag_flatness"].expected() == (False, False)
    assert MEASURES["pac_bayes_mag_flatness"].expected({"epsilon": 0.0}) == (True, True)


def test_errors_are_raised_or_recorded(tiny):
    import keras

    model, x, y = tiny
    inputs = keras.Input((3,))
    h = keras.layers.BatchNormalization()(keras.layers.Dense(4, activation="relu")(inputs))
    bn = keras.Model(inputs, keras.layers.Dense(1)(h))
    with pytest.raises(UserError, match="path norm"):
        flatness_measures(bn, x, y, "path_norm")
    out = flatness_measures(bn, x, y, "path_norm,fisher_rao_norm", errors="record")
    assert out["path_norm"]["value"] is None and "BatchNormalization" in out["path_norm"]["error"]
    assert np.isfinite(out["fisher_rao_norm"]["value"])
    with pytest.raises(UserError, match="errors must"):
        flatness_measures(model, x, y, "path_norm", errors="ignore")


def test_batchnorm_cnn_in_padded_chunks_equals_one_pass():
    """A conv + BatchNorm network (inference mode): the measures summed over padded chunks of 8 examples
    equal those of one pass over all 30; keyword settings work as the settings mapping does."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(3, 3, name="conv")(inputs))
    h = keras.layers.Activation("relu")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, keras.layers.Dense(1, name="logit")(h))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6, 6, 1)).astype(np.float32)
    y = (rng.random(30) < 0.5).astype(np.float32)
    chosen = "fisher_rao_norm,adaptive_sharpness_l2,adaptive_sharpness_avg,layer_hessian_trace"   # every primitive
    whole = flatness_measures(model, x, y, chosen, steps=3, draws=4, probes=5)
    chunked = flatness_measures(model, x, y, chosen, settings={"steps": 3, "draws": 4, "probes": 5}, eval_batch=8)
    for name in whole:
        assert chunked[name]["value"] == pytest.approx(whole[name]["value"], rel=1e-5, abs=1e-6), name   # float32 sums
    assert set(whole["layer_hessian_trace"]["layers"]) == {"conv", "bn", "logit"}
