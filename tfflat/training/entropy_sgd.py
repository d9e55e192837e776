"""Entropy-SGD (Chaudhari et al. 2019, Algorithm 1) as a stateful Keras 3 optimizer."""

from __future__ import annotations

import random

import keras
import tensorflow as tf

from tfflat.errors import UserError


class EntropySGD(keras.optimizers.Optimizer):
    """Entropy-SGD (Chaudhari et al. 2019, "Entropy-SGD: biasing gradient descent into wide valleys",
    Algorithm 1) as a stateful Keras 3 optimizer: one :meth:`apply` call = one inner (Langevin) step.

    Algorithm 1, one outer step t (γ_t = γ₀(1 + γ₁)^t)::

        x_c, x′, μ ← x
        repeat L times, on a fresh minibatch each:
            g′ ← ∇f(x′) − γ_t (x_c − x′)
            x′ ← x′ − η′ g′ + √(c η′) ε N(0, I)          c = noise_factor (paper: 1)
            μ  ← (1 − α) μ + α x′
        x ← x_c − η G,  G = γ_t (x_c − μ)  (outer_gamma=True)  or  x_c − μ  (outer_gamma=False)

    The caller's training loop is unchanged: it computes the minibatch gradient at the model's current
    weights and calls ``apply``. During the inner loop the model variables hold x′; the L-th call
    performs the outer update and leaves x in the model variables, so a loop that runs whole multiples
    of :attr:`EntropySGD.inner_steps` (as :class:`tfflat.training.Trainer` does) always evaluates and
    stops at an outer iterate. x_c and μ are re-read from the model variables at the start of every outer
    step, so weights changed between outer steps (e.g. α-rescaling in a training callback) are honoured.
    Cost: one gradient evaluation per ``apply``, i.e. L per outer step.

    Where the authors' code (github.com/ucla-vision/entropy-sgd, Lua and PyTorch) differs from
    Algorithm 1, each difference is a parameter; the default follows the paper unless noted:

    * ``alpha``: the paper weights the *new* sample, μ ← (1−α)μ + αx′ with α = 0.75; the code keeps
      0.75 on the *old* average (μ ← 0.75μ + 0.25x′), i.e. ``alpha=0.25`` here.
    * ``noise_factor``: the paper's noise is √η′·ε·N(0, I); the code adds ε/√(η′/2)·N to the gradient
      before multiplying by η′, i.e. √(2η′)·ε·N (``noise_factor=2``, the usual SGLD convention).
    * ``outer_gamma``: Algorithm 1 writes the outer step as x ← x − ηγ(x − μ); the code uses
      x ← x − η(x − μ), and the published MNIST hyperparameters (η = 1, γ₀ = 1e-4; Lua train.lua)
      belong to that form. With γ in the step they move x 1e-4 of the way to μ per outer step (FCN on
      MNIST |S| = 500: train accuracy still 0.49 after 30 epochs), and since γ_t grows as (1 + γ₁)^t a
      fixed η tuned for γ₀ (η ≈ 1/γ₀) overshoots μ (ηγ_t > 2) after ~700 outer steps. **So the
      default is the code's ``outer_gamma=False``** (x ← μ at η = 1); ``outer_gamma=True`` is the
      paper's form.
    * ``inner_momentum``: the code applies Nesterov momentum (0.9) to the Langevin gradient, restarted
      every outer step; Algorithm 1 has none (default 0).
    * ``momentum``/``nesterov``: optional heavy-ball/Nesterov momentum on the outer gradient G (the
      PyTorch code uses 0.9, Nesterov; the Lua code used for the paper effectively uses none; default 0).
    * The code also evaluates one unused gradient at x per outer step (L + 1 evaluations); here L.

    Args:
      learning_rate: outer step size η.
      inner_steps: L, Langevin steps (= gradient evaluations) per outer step.
      inner_lr: Langevin step size η′.
      gamma0, gamma1: scope γ₀ and scoping rate γ₁ (γ_t = γ₀(1 + γ₁)^t, t = outer steps done).
      noise: thermal noise ε (0 turns the Langevin steps into plain coupled SGD steps).
      alpha: weight of the newest x′ in the average μ.
      outer_gamma: multiply the outer gradient by γ_t (paper) or not (reference code).
      noise_factor: c in the noise standard deviation ε√(c η′).
      momentum, nesterov: momentum on the outer gradient.
      inner_momentum: Nesterov momentum on the Langevin gradient (reset every outer step).
      seed: noise seed (``None``: drawn from Python's global RNG, which ``train`` seeds).
    """

    def __init__(self, learning_rate=1.0, inner_steps=20, inner_lr=0.1, gamma0=1e-4, gamma1=1e-3,
                 noise=1e-4, alpha=0.75, outer_gamma=False, noise_factor=1.0, momentum=0.0,
                 nesterov=False, inner_momentum=0.0, seed=None, name="entropy_sgd", **kwargs):
        checks = [(int(inner_steps) == inner_steps and inner_steps >= 1, "inner_steps must be an integer ≥ 1"),
                  (inner_lr > 0, "inner_lr must be > 0"), (gamma0 >= 0, "gamma0 must be ≥ 0"),
                  (gamma1 >= 0, "gamma1 must be ≥ 0"), (noise >= 0, "noise must be ≥ 0"),
                  (0 < alpha <= 1, "alpha must be in (0, 1]"), (noise_factor > 0, "noise_factor must be > 0"),
                  (0 <= momentum < 1, "momentum must be in [0, 1)"),
                  (0 <= inner_momentum < 1, "inner_momentum must be in [0, 1)"),
                  (not nesterov or momentum > 0, "nesterov needs momentum > 0")]
        for ok, message in checks:
            if not ok:
                raise UserError(f"entropy-sgd: {message}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.inner_steps = int(inner_steps)
        self.inner_lr, self.gamma0, self.gamma1 = float(inner_lr), float(gamma0), float(gamma1)
        self.noise, self.alpha, self.noise_factor = float(noise), float(alpha), float(noise_factor)
        self.outer_gamma, self.nesterov = bool(outer_gamma), bool(nesterov)
        self.momentum, self.inner_momentum = float(momentum), float(inner_momentum)
        # noise of step k, variable i = stateless Philox draw keyed by (seed, k·n + i): a function of
        # the step counter alone, so resetting `iterations` replays the noise
        self.seed = int(seed) if seed is not None else random.randint(0, 2 ** 31 - 1)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.anchors = self.add_optimizer_variables(variables, "anchor")     # x_c
        self.averages = self.add_optimizer_variables(variables, "average")   # μ
        self.velocities = self.add_optimizer_variables(variables, "velocity") if self.momentum else []
        self.inner_velocities = (self.add_optimizer_variables(variables, "inner_velocity")
                                 if self.inner_momentum else [])

    def gamma(self, t=None):
        """γ_t = γ₀(1 + γ₁)^t, t = outer steps completed (default: now)."""
        t = tf.cast(self.iterations // self.inner_steps if t is None else t, tf.float32)
        return self.gamma0 * tf.exp(t * tf.math.log1p(self.gamma1))

    def update_step(self, gradient, variable, learning_rate):
        """One Langevin step on ``variable`` (= x′); on the L-th step, the outer update."""
        dtype = variable.dtype
        i = self._get_variable_index(variable)
        anchor, average = self.anchors[i], self.averages[i]
        k = self.iterations % self.inner_steps
        first, last = tf.equal(k, 0), tf.equal(k, self.inner_steps - 1)
        x = tf.convert_to_tensor(variable)
        # start of an outer step: x_c ← x, μ ← x (read from the model, so outside edits count)
        x_c = tf.where(first, x, tf.convert_to_tensor(anchor))
        mu = tf.where(first, x, tf.convert_to_tensor(average))
        gamma = tf.cast(self.gamma(), dtype)

        g = tf.cast(gradient, dtype) - gamma * (x_c - x)
        if self.inner_momentum:
            v = self.inner_velocities[i]
            v_new = self.inner_momentum * tf.where(first, tf.zeros_like(x), tf.convert_to_tensor(v)) + g
            self.assign(v, v_new)
            g = g + self.inner_momentum * v_new
        x_new = x - self.inner_lr * g
        if self.noise:
            std = self.noise * (self.noise_factor * self.inner_lr) ** 0.5
            counter = tf.cast(self.iterations, tf.int64) * len(self._trainable_variables) + i
            seed = tf.stack([tf.constant(self.seed, tf.int64), counter])
            # Philox: XLA's default (ThreeFry) is ~10x slower on CPU
            x_new = x_new + std * tf.random.stateless_normal(tf.shape(x), seed, dtype=dtype, alg="philox")
        mu = (1.0 - self.alpha) * mu + self.alpha * x_new

        # outer step: x ← x_c − η G, G = [γ](x_c − μ), optionally with (Nesterov) momentum
        step = (gamma if self.outer_gamma else 1.0) * (x_c - mu)
        if self.momentum:
            v = self.velocities[i]
            v_new = tf.where(last, self.momentum * tf.convert_to_tensor(v) + step, tf.convert_to_tensor(v))
            self.assign(v, v_new)
            step = step + self.momentum * v_new if self.nesterov else v_new
        x_outer = x_c - tf.cast(learning_rate, dtype) * step

        self.assign(variable, tf.where(last, x_outer, x_new))
        self.assign(anchor, x_c)
        self.assign(average, mu)

    def get_config(self):
        config = super().get_config()
        config.update(inner_steps=self.inner_steps, inner_lr=self.inner_lr, gamma0=self.gamma0,
                      gamma1=self.gamma1, noise=self.noise, alpha=self.alpha, outer_gamma=self.outer_gamma,
                      noise_factor=self.noise_factor, momentum=self.momentum, nesterov=self.nesterov,
                      inner_momentum=self.inner_momentum, seed=self.seed)
        return config
