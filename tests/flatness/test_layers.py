"""Per-layer Hessian blocks against the exact Hessian of a tiny network (float64 nested autodiff)."""

import numpy as np
import pytest
from flatness_helpers import exact_derivatives, tiny_data, tiny_fcn

from tfflat.errors import UserError
from tfflat.flatness import layers as layer_measures
from tfflat.flatness.layers import layer_hessian_norms, layer_hessian_traces

# tiny_fcn (3-4-3-1): dense_0 = K(3×4) + b(4), dense_1 = K(4×3) + b(3), logit = K(3×1) + b(1)
BLOCKS = {"dense_0": slice(0, 16), "dense_1": slice(16, 31), "logit": slice(31, 35)}


@pytest.fixture(scope="module")
def tiny():
    x, y = tiny_data()
    model = tiny_fcn()
    _, hess = exact_derivatives(model.get_weights(), x, y)
    return model, x, y, hess


def test_spectral_norms_of_the_blocks(tiny, monkeypatch):
    model, x, y, hess = tiny
    exact = {k: np.abs(np.linalg.eigvalsh(hess[s, s])).max() for k, s in BLOCKS.items()}
    res = layer_hessian_norms(model, x, y)                                   # dense blocks (≤ 64 parameters)
    assert set(res["layers"]) == set(BLOCKS)
    for name, value in exact.items():
        assert res["layers"][name]["spectral_norm"] == pytest.approx(value, rel=1e-5), name
        assert res["layers"][name]["parameters"] == BLOCKS[name].stop - BLOCKS[name].start
    assert res["value"] == pytest.approx(sum(exact.values()), rel=1e-5)
    assert res["max"] == pytest.approx(max(exact.values()), rel=1e-5)
    assert res["max"] <= np.abs(np.linalg.eigvalsh(hess)).max() * (1 + 1e-6)
    monkeypatch.setattr(layer_measures, "DENSE_LIMIT", 0)                    # ARPACK on every block
    arpack = layer_hessian_norms(model, x, y)
    for name, value in exact.items():
        assert arpack["layers"][name]["spectral_norm"] == pytest.approx(value, rel=1e-4), name


def test_traces_of_the_blocks(tiny):
    model, x, y, hess = tiny
    res = layer_hessian_traces(model, x, y, probes=15)     # exact: dense_1 (15), logit (4); Hutchinson: dense_0 (16)
    assert res["layers"]["dense_1"]["exact"] and res["layers"]["logit"]["exact"]
    for name in ("dense_1", "logit"):
        s = BLOCKS[name]
        assert res["layers"][name]["trace"] == pytest.approx(np.trace(hess[s, s]), rel=1e-5, abs=1e-7)
    # Hutchinson on dense_0 (block 0: seed + 0) with the documented Rademacher probes
    s = BLOCKS["dense_0"]
    rng = np.random.default_rng(0)
    probes = [rng.integers(0, 2, 16) * 2.0 - 1.0 for _ in range(15)]
    values = [v @ hess[s, s] @ v for v in probes]
    got = res["layers"]["dense_0"]
    assert not got["exact"] and got["trace"] == pytest.approx(np.mean(values), rel=1e-5)
    assert got["stderr"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(15), rel=1e-4)
    exact_all = layer_hessian_traces(model, x, y, probes=100)              # every block exact: Σ = Tr H
    assert exact_all["value"] == pytest.approx(np.trace(hess), rel=1e-5) and exact_all["stderr"] == 0.0


def test_bad_probes(tiny):
    model, x, y, _ = tiny
    with pytest.raises(UserError, match="probes"):
        layer_hessian_traces(model, x, y, probes=0)
