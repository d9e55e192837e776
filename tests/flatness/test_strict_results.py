"""Measure results as strict JSON: non-finite numbers become null, the value's with a reason; plan()."""

import json
import math

import numpy as np
import pytest

from tfflat.errors import UserError
from tfflat.flatness.measures import MEASURES, plan, strict


def test_strict_nulls_non_finite_numbers_with_a_reason():
    results = {"hessian_log10_top_product": {"value": -math.inf, "eigenvalues": [-1.0, np.float32(-2.0)],
                                             "stderr": math.nan, "nested": {"x": (math.inf, 1)},
                                             "array": np.array([[1.0, np.nan]], np.float32)},
               "path_norm": {"value": None, "error": "the path norm needs ReLU or linear units"},
               "fisher_rao_norm": {"value": np.float64(0.5)}}
    out = strict(results)
    text = json.dumps(out, allow_nan=False)                        # strict JSON
    back = json.loads(text)
    top = back["hessian_log10_top_product"]
    assert top["value"] is None and top["stderr"] is None and top["nested"] == {"x": [None, 1]}
    assert top["array"] == [[1.0, None]]
    assert top["eigenvalues"] == [-1.0, -2.0] and "-inf" in top["reason"] and "no positive eigenvalue" in top["reason"]
    assert back["path_norm"] == {"value": None, "error": "the path norm needs ReLU or linear units",
                                 "reason": "the path norm needs ReLU or linear units"}
    assert back["fisher_rao_norm"] == {"value": 0.5}
    assert results["hessian_log10_top_product"]["value"] == -math.inf      # the input is not changed


def test_plan_layers_defaults_settings_seed():
    p = plan(["keskar_sharpness", "hessian_trace"], seed=3, settings={"probes": 7, "keskar_sharpness": {"lr": 0.5}},
             eval_batch=64, defaults={"keskar_sharpness": {"epochs": 10, "lr": 9.0}, "path_norm": {}})
    assert p["keskar_sharpness"] == {**MEASURES["keskar_sharpness"].settings(), "epochs": 10, "lr": 0.5, "seed": 3,
                                     "eval_batch": 64}
    assert p["hessian_trace"] == {"probes": 7, "seed": 3, "eval_batch": 64}
    assert plan("path_norm") == {"path_norm": {}}
    with pytest.raises(UserError, match="did you mean path_norm"):
        plan("pathnorm")
