"""The distributed heavy paths on two logical CPU devices (a subprocess, so the rest of the suite keeps one
device) equal the one-device numbers to float rounding: training (SGD, Adam; a reused, reset trainer),
the sharpness ascent (per-step tracking; the loss, gradient and corner that L-BFGS-B uses too) and Hessian-vector products. The kernel's
sharded rows are in tests/prior/test_kernel_sampling.py. Mixed precision (one device) trains a mixed copy
and leaves the model and every measure in float32."""

import numpy as np
import pytest
from two_devices import run_two_devices


def test_train_sharpness_and_hvp_on_two_devices_equal_one_device():
    out = run_two_devices("""
        from tfflat import devices, flatness, models
        from tfflat.flatness import hessian
        from tfflat.training import Trainer, optimizers
        rng = np.random.default_rng(0)
        two = devices.strategy("cpu:0,1")
        res = {"replicas": two.num_replicas_in_sync}
        # training: an FCN (no BatchNorm: its per-replica statistics are a different algorithm)
        x = rng.normal(size=(37, 6)).astype(np.float32)
        y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.float32)
        spec = {"kind": "fcn", "input_shape": [6], "widths": [16, 8], "sigma_w": 1.4, "sigma_b": 0.3}
        for opt in ("sgd", "adam"):
            weights = []
            for strat in (None, two):
                m = models.build(spec, seed=0)
                t = Trainer(m, optimizers.make(opt, 0.05), x, y, 7, seed=3, x_eval=x, strategy=strat)
                z = [t.epoch() for _ in range(2)][-1]
                m.set_weights(models.build(spec, seed=1).get_weights())    # a sweep's next point: reset, reuse
                t.reset(5)
                z2 = t.epoch()
                weights.append((np.concatenate([w.ravel() for w in m.get_weights()]), z, z2))
            (a, za, za2), (b, zb, zb2) = weights
            res[f"train/{opt}"] = float(np.max(np.abs(a - b)) / np.max(np.abs(a)))
            res[f"logits/{opt}"] = float(max(np.max(np.abs(za - zb)), np.max(np.abs(za2 - zb2))))
        # a BatchNorm convnet trains on both devices (moving statistics updated on every replica)
        xi = rng.normal(size=(45, 6, 6, 2)).astype(np.float32)
        yi = (xi[:, 0, 0, 0] > 0).astype(np.float32)
        keras.utils.set_random_seed(0)
        i = keras.Input((6, 6, 2))
        h = keras.layers.Conv2D(4, 3, activation="relu")(i)
        h = keras.layers.BatchNormalization(momentum=0.5)(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        cnn = keras.Model(i, keras.layers.Dense(1)(h))
        cnn(xi[:2])
        c2 = keras.models.clone_model(cnn)
        c2.set_weights(cnn.get_weights())
        bn0 = c2.layers[2].moving_mean.numpy().copy()
        Trainer(c2, optimizers.make("sgd", 0.1), xi, yi, 8, x_eval=xi, strategy=two).epoch()
        res["bn_moved"] = bool(np.any(c2.layers[2].moving_mean.numpy() != bn0))
        # sharpness and HVP of the convnet (inference mode)
        for track in ("step",):
            r = [flatness.sharpness(cnn, xi, yi, zeta=1e-2, lr=0.5, epochs=2, batch_size=8, track=track,
                                    eval_batch=10, strategy=s) for s in (None, two)]
            res[f"sharpness/{track}"] = [[q.loss, q.max_loss, q.corner_loss] + list(map(float, q.trace)) for q in r]
        v = rng.normal(size=sum(int(np.prod(w.shape)) for w in cnn.trainable_variables))
        hv = [hessian.hvp(cnn, xi, yi, eval_batch=10, strategy=s)(v) for s in (None, two)]
        res["hvp"] = float(np.max(np.abs(hv[0] - hv[1])) / np.max(np.abs(hv[0])))
        emit(**res)
    """)
    assert out["replicas"] == 2
    for opt in ("sgd", "adam"):
        assert out[f"train/{opt}"] < 1e-5 and out[f"logits/{opt}"] < 1e-4, out
    assert out["bn_moved"]
    for key in ("sharpness/step",):
        one, two = out[key]
        np.testing.assert_allclose(two, one, rtol=1e-5, err_msg=key)
    assert out["hvp"] < 1e-5


def test_mixed_precision_trains_a_mixed_copy_and_measures_in_float32(rng):
    import keras

    from tfflat import models
    from tfflat.training import Trainer, optimizers
    from tfflat.training.replicas import check_precision, working_copy

    x = rng.normal(size=(40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    spec = {"kind": "fcn", "input_shape": [6], "widths": [32], "sigma_w": 1.4, "sigma_b": 0.3}
    copy = working_copy(models.build(spec, seed=0), precision="mixed_bfloat16")
    policies = {l.name: l.dtype_policy.name for l in copy.layers if l.weights}
    assert policies == {"dense_0": "mixed_bfloat16", "logit": "float32"}
    assert all(w.dtype == "float32" for w in copy.weights)
    runs = {}
    for precision in ("float32", "mixed_bfloat16", "mixed_float16"):
        m = models.build(spec, seed=0)
        t = Trainer(m, optimizers.make("sgd", 0.1), x, y, 8, seed=1, x_eval=x, precision=precision)
        z = [t.epoch() for _ in range(2)][-1]
        runs[precision] = (np.concatenate([w.ravel() for w in m.get_weights()]), z)
        assert all(w.dtype == "float32" for w in m.weights) and z.dtype == np.float32
    assert isinstance(t.optimizer, keras.optimizers.LossScaleOptimizer)
    ref, z32 = runs["float32"]
    for precision in ("mixed_bfloat16", "mixed_float16"):
        w, z = runs[precision]
        rel = np.max(np.abs(w - ref)) / np.max(np.abs(ref))
        assert 0 < rel < 0.05, (precision, rel)           # trained in low precision, close to float32
    # the evaluation is the float32 model's (m: the mixed_float16 run's model)
    np.testing.assert_allclose(runs["mixed_float16"][1], np.asarray(m(x, training=False)).ravel(), rtol=1e-6)
    with pytest.raises(Exception, match="precision"):
        check_precision("float16")
