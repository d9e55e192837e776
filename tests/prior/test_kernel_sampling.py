"""How the empirical kernel's samples are drawn (issue 17, item 6): He-normal initialisation in eval mode
(the authors' ResNet50 kernel) against the analytic NNGP kernel and against exact BatchNorm algebra,
BatchNorm in batch-statistics mode against numpy, the conditioning report against closed forms, and the
kernel sharded over two logical devices against one device."""

import json
import math

import keras
import numpy as np
import pytest
from two_devices import run_two_devices

from tfflat.prior import kernels
from tfflat.prior.kernels import batch_statistics, conditioning, empirical_kernel, he_redraw, nngp_kernel


def mlp(widths, d=8, bn=False, dropout=False, init="glorot_uniform"):
    inputs = keras.Input((d,))
    h = inputs
    for i, w in enumerate(widths):
        h = keras.layers.Dense(w, kernel_initializer=init, name=f"dense_{i}")(h)
        if bn:
            h = keras.layers.BatchNormalization(name=f"bn_{i}")(h)
        h = keras.layers.ReLU()(h)
        if dropout:
            h = keras.layers.Dropout(0.5)(h)
    return keras.Model(inputs, keras.layers.Dense(1, name="logit")(h))


def test_he_redraw_draws_kaiming_normal_fan_in_and_fresh_batchnorm():
    inputs = keras.Input((6, 6, 5))
    h = keras.layers.Conv2D(128, 3, bias_initializer="ones")(inputs)
    h = keras.layers.BatchNormalization(gamma_initializer="zeros", moving_variance_initializer="zeros")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(300, bias_initializer="ones")(h))
    he_redraw(model, 3)
    conv, bn, dense = (l for l in model.layers if l.weights)
    for layer, fan_in in ((conv, 3 * 3 * 5), (dense, 128)):
        w = layer.kernel.numpy().ravel()
        assert abs(w.mean()) < 4 * math.sqrt(2 / fan_in / w.size)
        assert w.std() == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)          # 5760 and 38 400 draws
        assert abs(np.mean(w ** 4) / w.var() ** 2 - 3) < 0.25                       # normal, not truncated
        np.testing.assert_array_equal(layer.bias.numpy(), 0)
    for name, value in (("gamma", 1), ("beta", 0), ("moving_mean", 0), ("moving_variance", 1)):
        np.testing.assert_array_equal(getattr(bn, name).numpy(), value)
    before = conv.kernel.numpy()
    he_redraw(model, 3)
    np.testing.assert_array_equal(conv.kernel.numpy(), before)
    he_redraw(model, 4)
    assert not np.allclose(conv.kernel.numpy(), before)


def test_he_kernel_of_a_wide_relu_net_is_the_nngp_kernel_with_zero_hidden_biases(rng):
    """He init = W ~ N(0, 2/fan_in), b = 0: the arc-cosine kernel with σw = √2, σb = 0 on the hidden layers
    (and the readout's σw, σb of eq. 7), within Monte-Carlo error: 12 single-sample kernels (sample m
    of an M-sample kernel uses seed + m), their standard error, and their mean = the 12-sample kernel."""
    x = rng.normal(size=(10, 8))
    net = mlp([1024, 1024])
    singles = np.array([empirical_kernel(x, net, 1, sigma_w=1.3, sigma_b=0.4, seed=s, init="he") for s in range(12)])
    np.testing.assert_allclose(empirical_kernel(x, net, 12, sigma_w=1.3, sigma_b=0.4, seed=0, init="he"),
                               singles.mean(0), rtol=1e-6)
    truth = nngp_kernel(x, 2, [math.sqrt(2), math.sqrt(2), 1.3], [0.0, 0.0, 0.4])
    mean, err = singles.mean(0), singles.std(0, ddof=1) / math.sqrt(len(singles))
    assert np.all(np.abs(mean - truth) <= 4 * err + 2e-3 * np.abs(truth))       # + the O(1/width) bias
    # the layers' own (Glorot) initialisation is another kernel: He is really used
    own = empirical_kernel(x, net, 6, sigma_w=1.3, sigma_b=0.4, seed=0)
    assert np.max(np.abs(own - truth) / truth) > 0.2


def test_fresh_batchnorm_in_eval_mode_is_the_identity_up_to_epsilon(rng):
    """Same draws with and without BatchNorm layers (the draws follow the Dense layers), so eval-mode BN
    only rescales each pre-activation by 1/√(1 + ε): the kernel's h·h' part by (1 + ε)⁻ᴸ, exactly."""
    x = rng.normal(size=(12, 8)).astype(np.float32)
    plain = empirical_kernel(x, mlp([32, 16]), 3, sigma_w=1.0, sigma_b=0.5, seed=7, init="he")
    with_bn = empirical_kernel(x, mlp([32, 16], bn=True), 3, sigma_w=1.0, sigma_b=0.5, seed=7, init="he")
    eps = keras.layers.BatchNormalization().epsilon
    np.testing.assert_allclose(with_bn - 0.25, (plain - 0.25) / (1 + eps) ** 2, rtol=2e-5)


def test_batch_statistics_mode_against_numpy(rng):
    x = rng.normal(size=(12, 8)).astype(np.float32)
    net = mlp([16], bn=True, dropout=True)
    copy = kernels.private_copy(net, x)
    he_redraw(copy, 1)
    batch_statistics(copy)
    feats = kernels._features_fn(copy)
    w, b = copy.get_layer("dense_0").kernel.numpy(), copy.get_layer("dense_0").bias.numpy()
    bn = copy.get_layer("bn_0")
    for part in (x[:6], x[6:]):
        z = part @ w + b
        want = np.maximum((z - z.mean(0)) / np.sqrt(z.var(0) + bn.epsilon), 0)      # γ = 1, β = 0
        np.testing.assert_allclose(np.asarray(feats(part)), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), 0)      # statistics not updated, dropout off:
    np.testing.assert_array_equal(np.asarray(feats(x[:6])), np.asarray(feats(x[:6])))
    # the kernel then depends on the batches (fixed, equal, in input order), and net itself is untouched
    k6 = empirical_kernel(x, net, 2, sigma_w=1.0, sigma_b=0.0, seed=1, init="he", batchnorm="batch", batch_size=6)
    k12 = empirical_kernel(x, net, 2, sigma_w=1.0, sigma_b=0.0, seed=1, init="he", batchnorm="batch", batch_size=12)
    assert not np.allclose(k6, k12)
    np.testing.assert_array_equal(k6, empirical_kernel(x, net, 2, sigma_w=1.0, sigma_b=0.0, seed=1, init="he",
                                                       batchnorm="batch", batch_size=6))
    assert [s.stop - s.start for s in kernels._batches(13, 6)] == [4, 5, 4]
    with pytest.raises(kernels.UserError, match="batchnorm"):
        empirical_kernel(x, net, 1, sigma_w=1.0, sigma_b=0.0, batchnorm="train")


def test_conditioning_of_a_constant_plus_diagonal_kernel():
    """K = a 11ᵀ + b I: every statistic in closed form."""
    n, a, b = 700, 3.0, 0.5
    k = a * np.ones((n, n)) + b * np.eye(n)
    c = conditioning(k, block=128)
    assert c["diagonal"] == {"min": a + b, "median": a + b, "max": a + b}
    assert c["off_diagonal"]["mean"] == pytest.approx(a) and c["off_diagonal"]["std"] == pytest.approx(0, abs=1e-6)
    assert c["correlation"]["mean"] == pytest.approx(a / (a + b))
    assert c["eigenvalue_min"] == pytest.approx(b) and c["eigenvalue_max"] == pytest.approx(n * a + b)
    assert c["condition_number"] == pytest.approx((n * a + b) / b)
    assert c["top_share"] == pytest.approx((n * a + b) / (n * (a + b)))
    json.dumps(c, allow_nan=False)
    singular = conditioning(np.ones((3, 3)))
    assert singular["condition_number"] is None and singular["correlation"]["min"] == pytest.approx(1)


def test_resnet50_prior_defaults_to_he_in_eval_mode_and_reports_conditioning(tmp_path, rng):
    from tfflat.prior import kernel_params
    from tfflat.prior.prior import kernel_conditioning

    p = kernel_params({"kind": "resnet50", "input_shape": [32, 32, 3]}, task="cifar_cats_cars", n=70)
    assert (p["init"], p["batchnorm"], p["samples"]) == ("he", "inference", 7)
    assert kernel_params({"kind": "resnet50"}, "empirical", batchnorm="batch")["batchnorm"] == "batch"
    with pytest.raises(kernels.UserError, match="init"):
        kernel_params({"kind": "resnet50"}, "empirical", init="lecun")
    x = rng.normal(size=(5, 3)).astype(np.float32)
    params = kernel_params({"kind": "fcn", "widths": [4], "sigma_w": 1.0, "sigma_b": 0.1}, "analytic")
    k = nngp_kernel(x, 1, 1.0, 0.1)
    from tfflat.prior.prior import cached_kernel

    cached_kernel(x, params, lambda: k, tmp_path)
    first = kernel_conditioning(k, x, params, tmp_path)
    side = next(tmp_path.glob("*.json"))
    assert json.loads(side.read_text())["conditioning"] == first
    assert kernel_conditioning(np.eye(5), x, params, tmp_path) == first        # read back, not recomputed


def test_kernel_sharded_over_two_devices_equals_one_device():
    """Forward batches sharded over two logical CPUs (an odd number of batches: a spare replica), in both
    BatchNorm modes, for a model instance and for a builder: the one-device numbers."""
    out = run_two_devices("""
        from tfflat.prior.kernels import empirical_kernel
        from tfflat import devices
        rng = np.random.default_rng(0)
        x = rng.normal(size=(15, 6, 6, 2)).astype(np.float32)
        def build(seed):
            keras.utils.set_random_seed(seed)
            i = keras.Input((6, 6, 2))
            h = keras.layers.Conv2D(8, 3, activation="relu")(i)
            h = keras.layers.BatchNormalization()(h)
            h = keras.layers.GlobalAveragePooling2D()(h)
            return keras.Model(i, keras.layers.Dense(1)(h))
        strat = devices.strategy("cpu:0,1")
        diffs = {}
        for bn in ("inference", "batch"):
            for init in ("he", "model"):
                kw = dict(sigma_w=1.2, sigma_b=0.3, seed=4, init=init, batchnorm=bn, batch_size=5)
                one = empirical_kernel(x, build, 3, **kw)
                two = empirical_kernel(x, build, 3, strategy=strat, **kw)
                diffs[f"{bn}/{init}"] = float(np.max(np.abs(one - two) / np.abs(one)))
        model = build(0)
        one = empirical_kernel(x, model, 2, sigma_w=1.0, sigma_b=0.0, init="he")
        two = empirical_kernel(x, model, 2, sigma_w=1.0, sigma_b=0.0, init="he", strategy="cpu:0,1")
        diffs["instance"] = float(np.max(np.abs(one - two) / np.abs(one)))
        emit(replicas=strat.num_replicas_in_sync, diffs=diffs)
    """)
    assert out["replicas"] == 2
    assert set(out["diffs"]) == {"inference/he", "inference/model", "batch/he", "batch/model", "instance"}
    assert max(out["diffs"].values()) < 1e-5, out["diffs"]
