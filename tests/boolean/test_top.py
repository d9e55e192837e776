"""Top functions: training to zero error, flatness, the EP check, resume, correlations, figures."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from tfflat import runs
from tfflat.boolean import plots, top
from tfflat.data.keys import parse_keys, unpack


def test_measure_trains_to_f_and_resumes(tmp_path):
    keys = ["0", "e"]                     # 2 bits: constant 0, and OR (all ones but input 0)
    rows = top.measure(keys, [50, 5], [-0.3, -1.3], tmp_path / "top.jsonl", bits=2, seed=1)
    assert [r["rank"] for r in rows] == [1, 2] and [r["function"] for r in rows] == keys
    for r in rows:
        assert r["zero_error_epoch"] is not None
        assert r["sharpness"] > 0 and r["spectral_norm"] > 0
        assert math.isclose(r["log10_sharpness"], math.log10(r["sharpness"]))
        assert r["corner_sharpness"] > 0
        assert math.isclose(r["log10_corner_sharpness"], math.log10(r["corner_sharpness"]))
        assert r["log10_prior_ep"] < 0
    # EP on the NNGP kernel: the constant function is the more probable one, by a margin
    assert rows[0]["log10_prior_ep"] > rows[1]["log10_prior_ep"] + 0.5
    again = top.measure(keys, [50, 5], [-0.3, -1.3], tmp_path / "top.jsonl", bits=2, seed=1)
    assert again == json.loads(json.dumps(rows, default=float))    # read back, nothing retrained
    assert len(runs.read_jsonl(tmp_path / "top.jsonl")) == 2


def test_ep_on_two_bits_matches_the_exact_orthant_probability():
    """n = 2: 4 inputs, so P(f) under the NNGP is a 4-d orthant probability scipy computes exactly."""
    from tfflat import defaults
    from tfflat.data import boolean_inputs
    from tfflat.prior.kernels import nngp_kernel

    sw, sb = defaults.SIGMAS["boolean"]
    k = nngp_kernel(boolean_inputs(2), 2, sw, sb)
    for key in ("0", "f", "1", "6"):
        y = unpack(parse_keys([key], 2), 2)[0]
        s = 2.0 * y - 1
        exact = stats.multivariate_normal.cdf(np.zeros(4), mean=np.zeros(4), cov=k * np.outer(s, s),
                                              allow_singular=True, abseps=1e-7, releps=1e-6)
        ep = top.ep_log10_priors([key], 2)[0]
        assert abs(ep - math.log10(exact)) < 0.15, (key, ep, math.log10(exact))


def test_correlations_and_figures(tmp_path):
    rng = np.random.default_rng(0)
    logp = -np.sort(rng.uniform(1, 4, 12))
    rows = [{"rank": i + 1, "function": f"{i:02x}", "log10_prior": p, "log10_sharpness": -p + rng.normal(0, .1),
             "log10_corner_sharpness": -p, "log10_spectral_norm": -2 * p, "log10_prior_ep": p + 0.2, "loss": 0.01}
            for i, p in enumerate(logp)]
    c = top.correlations(rows)
    assert c["log10_prior~log10_spectral_norm"]["pearson_r"] == pytest.approx(-1.0)
    assert c["log10_prior~log10_prior_ep"]["spearman_rho"] == pytest.approx(1.0)
    assert c["log10_prior~log10_sharpness"]["n"] == 12
    assert c["log10_prior~log10_corner_sharpness"]["pearson_r"] == pytest.approx(-1.0)
    top.write_csv(tmp_path / plots.TOP, rows)
    runs.write_json(tmp_path / plots.SUMMARY, {"bits": 3, "widths": [40, 40], "samples": 100})
    written = plots.plot_boolean(tmp_path)
    names = {p.name for p in written}
    assert {"fig2_prior_vs_flatness.png", "fig2_prior_vs_corner_flatness.png", "figS7_sharpness_vs_hessian.pdf",
            "figS8_prior_vs_hessian.png", "ep_vs_sampled.png"} <= names
    assert all(p.stat().st_size > 1000 for p in written)
    back = plots.read_top(tmp_path / plots.TOP)
    np.testing.assert_array_equal(top.column(back, "log10_prior"), logp)      # the CSV is lossless
