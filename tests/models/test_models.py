"""Model builders: FCN initialisation statistics (SPEC §2), presets, ResNet50 head."""

import math

import numpy as np
import pytest

from tfflat import models
from tfflat.errors import UserError


def test_fcn_init_matches_prior_distribution():
    spec = models.model_spec("fcn:400,300", "mnist", (28, 28))
    m = models.build(spec, seed=1)
    dense = [l for l in m.layers if l.__class__.__name__ == "Dense"]
    assert [l.kernel.shape[1] for l in dense] == [400, 300, 1]
    for layer, fan_in in zip(dense[:2], (784, 400)):
        w, b = layer.kernel.numpy(), layer.bias.numpy()
        # std of a sample of ≥ 1e5 normals: relative error ≈ 1/√(2N) < 0.3 %
        assert w.std() == pytest.approx(math.sqrt(2) / math.sqrt(fan_in), rel=0.01)
        assert abs(w.mean()) < 0.01 * w.std()
        assert b.std() == pytest.approx(1.0, rel=0.15)


def test_presets_and_sigmas():
    s = models.model_spec("fcn", "boolean", (7,))
    assert s["widths"] == [40, 40] and (s["sigma_w"], s["sigma_b"]) == (1.0, 0.1)
    assert models.model_spec("fcn-small", "mnist", (28, 28))["widths"] == [10, 40]
    m = models.build(models.model_spec("fcn", "cifar_cats_cars", (32, 32, 3)), seed=0)
    assert m.count_params() == 3072 * 40 + 40 + 40 * 40 + 40 + 41
    assert m(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 1)


def test_same_seed_same_weights():
    spec = models.model_spec("fcn", "mnist", (28, 28))
    a, b, c = models.build(spec, 5), models.build(spec, 5), models.build(spec, 6)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


def test_bad_model_specs():
    with pytest.raises(UserError, match="unknown model"):
        models.model_spec("vgg", "mnist", (28, 28))
    with pytest.raises(UserError, match="integer widths"):
        models.model_spec("fcn:a,b", "mnist", (28, 28))
    with pytest.raises(UserError, match="32×32×3"):
        models.model_spec("resnet50", "mnist", (28, 28))


def test_resnet50_is_keras_resnet50_with_one_logit():
    m = models.build(models.model_spec("resnet50", "cifar_cats_cars", (32, 32, 3)), seed=0)
    assert m.output_shape == (None, 1)
    assert m.get_layer("logit").kernel.shape == (2048, 1)
    assert 23_000_000 < m.count_params() < 24_000_000        # ResNet50 trunk (23.6 M) + 2049
