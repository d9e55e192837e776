"""Entropy-SGD against an independent numpy transcription of Algorithm 1 (Chaudhari et al. 2019)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfflat.data import Splits
from tfflat.errors import UserError
from tfflat.training import train
from tfflat.training.entropy_sgd import EntropySGD

# Tiny quadratic with K = 2 "minibatches": f_k(W, b) = ½ Σ a (W − C_k)² + ½ Σ d (b − e_k)².
RNG = np.random.default_rng(0)
A, D = RNG.uniform(0.5, 2.0, (2, 3)), RNG.uniform(0.5, 2.0, 3)
C, E = RNG.normal(size=(2, 2, 3)), RNG.normal(size=(2, 3))
W0, B0 = RNG.normal(size=(2, 3)), RNG.normal(size=3)


def algorithm1(n_steps, L, lr, inner_lr, gamma0, gamma1, alpha, outer_gamma=False, momentum=0.0,
               nesterov=False, inner_momentum=0.0, **_):
    """Algorithm 1 written out in float64; returns (W, b) after each gradient evaluation."""
    x = [W0.copy(), B0.copy()]
    v = [np.zeros_like(p) for p in x]
    out, evals, t = [], 0, 0
    while evals < n_steps:
        gamma = gamma0 * (1 + gamma1) ** t
        xc, xp, mu = [p.copy() for p in x], [p.copy() for p in x], [p.copy() for p in x]
        vi = [np.zeros_like(p) for p in x]
        for step in range(L):
            k = evals % 2
            grads = [A * (xp[0] - C[k]), D * (xp[1] - E[k])]      # ∇f_k(x′): one evaluation
            evals += 1
            for j in range(2):
                g = grads[j] - gamma * (xc[j] - xp[j])
                if inner_momentum:
                    vi[j] = inner_momentum * vi[j] + g
                    g = g + inner_momentum * vi[j]
                xp[j] = xp[j] - inner_lr * g
                mu[j] = (1 - alpha) * mu[j] + alpha * xp[j]
            if step < L - 1:
                out.append([p.copy() for p in xp])
        for j in range(2):
            G = (gamma if outer_gamma else 1.0) * (xc[j] - mu[j])
            if momentum:
                v[j] = momentum * v[j] + G
                G = G + momentum * v[j] if nesterov else v[j]
            x[j] = xc[j] - lr * G
        out.append([p.copy() for p in x])
        t += 1
    return out


def run_keras(opt, n_steps, jit=True):
    """Drive ``opt`` with autodiff gradients of f_k in a compiled step (XLA: ``jit``); count evaluations."""
    w, b = tf.Variable(W0, dtype=tf.float32), tf.Variable(B0, dtype=tf.float32)
    evals = tf.Variable(0, dtype=tf.int64)
    opt.build([w, b])

    a, d, c, e = (tf.constant(t, tf.float32) for t in (A, D, C, E))

    @tf.function(jit_compile=jit)
    def step(k):
        with tf.GradientTape() as tape:
            loss = 0.5 * tf.reduce_sum(a * (w - c[k]) ** 2) + 0.5 * tf.reduce_sum(d * (b - e[k]) ** 2)
        evals.assign_add(1)
        opt.apply(tape.gradient(loss, [w, b]), [w, b])

    out = []
    for s in range(n_steps):
        step(tf.constant(s % 2))
        out.append([w.numpy(), b.numpy()])
    return out, int(evals.numpy())


SETTINGS = dict(L=3, lr=0.7, inner_lr=0.1, gamma0=0.5, gamma1=0.1, alpha=0.75)


@pytest.mark.parametrize("variant", [{}, {"outer_gamma": True, "lr": 1.5}, {"alpha": 0.25},
                                     {"momentum": 0.9, "nesterov": True}, {"momentum": 0.5},
                                     {"inner_momentum": 0.9}],
                         ids=["paper", "outer_gamma", "ref_alpha", "nesterov", "momentum", "inner_momentum"])
def test_matches_algorithm1_every_step(variant):
    cfg = {**SETTINGS, **variant}
    opt = EntropySGD(learning_rate=cfg["lr"], inner_steps=cfg["L"], inner_lr=cfg["inner_lr"],
                     gamma0=cfg["gamma0"], gamma1=cfg["gamma1"], alpha=cfg["alpha"], noise=0.0,
                     **{k: v for k, v in variant.items() if k not in ("lr", "alpha")})
    n = 4 * cfg["L"]                                   # four outer steps (γ grows between them)
    got, evals = run_keras(opt, n, jit=not variant or "nesterov" in variant)   # XLA twice, to save time
    want = algorithm1(n, **cfg)
    for s, (g, w) in enumerate(zip(got, want)):
        for gj, wj in zip(g, w):
            np.testing.assert_allclose(gj, wj, rtol=2e-5, atol=2e-6, err_msg=f"after evaluation {s + 1}")
    # L gradient evaluations per outer step: the model holds an outer iterate exactly after every L-th
    assert evals == n == int(opt.iterations.numpy())
    assert float(opt.gamma()) == pytest.approx(cfg["gamma0"] * (1 + cfg["gamma1"]) ** 4, rel=1e-6)


def test_one_outer_step_by_hand():
    """L = 1, one minibatch, γ₁ = 0: x′ = x − η′(∇f(x) − 0), μ = (1−α)x + αx′, x⁺ = x − ηγ(x − μ)."""
    x0 = np.array([1.0, -2.0], np.float32)
    a = np.array([3.0, 0.5], np.float32)
    v = tf.Variable(x0)
    opt = EntropySGD(learning_rate=2.0, inner_steps=1, inner_lr=0.1, gamma0=0.5, gamma1=0.0, noise=0.0,
                     alpha=0.75, outer_gamma=True)
    opt.apply([tf.constant(a * x0)], [v])                        # ∇ ½ Σ a x² = a x
    xp = x0 - 0.1 * a * x0
    mu = 0.25 * x0 + 0.75 * xp
    np.testing.assert_allclose(v.numpy(), x0 - 2.0 * 0.5 * (x0 - mu), rtol=1e-6)   # = x0 − 0.075·a·x0
    np.testing.assert_allclose(v.numpy(), x0 * (1 - 0.075 * a), rtol=1e-6)


def test_counts_L_gradient_evaluations_per_outer_step_in_train():
    """Every forward pass in training mode is one gradient evaluation; count them in the model."""

    class Count(keras.layers.Layer):
        def build(self, shape):
            self.n = self.add_weight(shape=(), initializer="zeros", trainable=False, name="n")

        def call(self, x, training=False):
            if training:
                self.n.assign_add(1.0)
            return x

    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    splits = Splits(x, y, x[:0], y[:0], x[:4], y[:4])
    inp = keras.Input((3,))
    counter = Count()
    model = keras.Model(inp, keras.layers.Dense(1)(counter(keras.layers.Dense(5, activation="relu")(inp))))
    L = 5
    opt = EntropySGD(inner_steps=L, inner_lr=0.05)
    seen = []
    r = train(model, splits, opt, batch_size=4, max_epochs=3,
              callback=lambda e, rec, m: seen.append((int(counter.n.numpy()), rec["gradient_evaluations"])))
    # 10 examples in batches of 4 = 3 minibatches, rounded up to one whole outer step (L = 5) per epoch
    assert [s[0] for s in seen] == [L * e for e in range(r.epochs + 1)]
    assert [s[1] for s in seen] == [L * e for e in range(r.epochs + 1)]
    assert int(opt.iterations.numpy()) == r.gradient_evaluations == L * r.epochs


def _first_step(n, seed=0, jit=False, **kw):
    v = tf.Variable(tf.zeros([n]))
    opt = EntropySGD(inner_steps=2, inner_lr=0.1, seed=seed, **kw)
    tf.function(lambda: opt.apply([tf.zeros([n])], [v]), jit_compile=jit)()
    return v.numpy()


@pytest.mark.parametrize("factor", [1.0, 2.0])
def test_noise_scale(factor):
    """With ∇f = 0, the first Langevin step moves x′ by ε√(c η′) N(0, I) (c = noise_factor)."""
    n, eps = 200_000, 1e-2
    d = _first_step(n, jit=factor == 1.0, noise=eps, noise_factor=factor)
    assert np.std(d) == pytest.approx(eps * np.sqrt(factor * 0.1), rel=0.01)
    assert abs(np.mean(d)) < 4 * eps * np.sqrt(factor * 0.1) / np.sqrt(n)


def test_noise_is_seeded():
    d = _first_step(1000, seed=3)
    np.testing.assert_array_equal(d, _first_step(1000, seed=3))
    assert not np.array_equal(d, _first_step(1000, seed=4))


def test_weights_changed_between_outer_steps_are_the_new_anchor():
    """An edit between outer steps (e.g. α-rescaling in a callback) is not pulled back."""
    v = tf.Variable([1.0, 2.0])
    opt = EntropySGD(inner_steps=2, gamma0=0.5, noise=0.0)
    for _ in range(2):
        opt.apply([tf.zeros(2)], [v])
    np.testing.assert_allclose(v.numpy(), [1.0, 2.0])
    v.assign([10.0, 20.0])
    for _ in range(2):
        opt.apply([tf.zeros(2)], [v])
    np.testing.assert_allclose(v.numpy(), [10.0, 20.0])


@pytest.mark.parametrize("bad", [{"inner_steps": 0}, {"inner_steps": 2.5}, {"alpha": 0.0}, {"alpha": 1.5},
                                 {"inner_lr": 0.0}, {"noise": -1.0}, {"momentum": 1.0},
                                 {"nesterov": True}])
def test_rejects_bad_hyperparameters(bad):
    with pytest.raises(UserError, match="entropy-sgd"):
        EntropySGD(**bad)


def test_get_config_from_config_round_trip():
    """As Keras' optimizer tests: the optimizer rebuilt from its config (directly, and through Keras'
    serialization) gives the same updates, noise included. Every hyperparameter is off its default,
    so one left out of ``get_config`` changes them."""
    settings = dict(learning_rate=0.7, inner_steps=3, inner_lr=0.05, gamma0=0.5, gamma1=0.1, noise=1e-2,
                    alpha=0.5, outer_gamma=True, noise_factor=2.0, momentum=0.5, nesterov=True,
                    inner_momentum=0.3, seed=7)
    opt = EntropySGD(**settings)
    config = opt.get_config()
    assert {k: config[k] for k in settings} == pytest.approx(settings)
    clone = EntropySGD.from_config(config)
    assert clone.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(opt),
                                                    custom_objects={"EntropySGD": EntropySGD})
    assert type(revived) is EntropySGD and revived.get_config() == config
    want, _ = run_keras(opt, 7, jit=False)
    for other in (clone, revived):
        got, _ = run_keras(other, 7, jit=False)
        for g, w in zip(got, want):
            for gj, wj in zip(g, w):
                np.testing.assert_array_equal(gj, wj)
