"""What sweeps and temporal runs share: one loaded task, one model spec, one S + E (hence one
kernel for log P(f)), reusable compiled training functions, and the measurements of a network.

A :class:`Session` lives for the whole of a worker's share of an experiment, so TensorFlow starts,
the data loads, the kernel is computed and each (optimizer, |A|) training step is compiled once,
not once per point. Every point still equals a fresh ``tfflat train`` run with the same seed:
the model's weights are copied from ``models.build(spec, seed)`` and the training state is
reset exactly (see :meth:`Session.train`).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict

import numpy as np


TRAINER_CACHE = 2         # compiled (optimizer, |A|) training steps kept (points come grouped by |A|)


def reached_zero_error(rec: dict, stop_on: str) -> bool:
    """The zero-error test of :func:`tfflat.training.train` (accuracy 1 on S, or on S and A)."""
    return rec["acc_S"] == 1.0 and (stop_on == "S" or rec["acc_A"] in (None, 1.0))


class Session:
    """Task, splits, model and kernel for one experiment (see the module docstring).

    Args:
      exp: the validated :class:`~tfflat.experiments.config.Experiment`.
      task: the loaded task (default: loaded from ``exp.data``).
      kernel_cache: folder for the prior's kernel cache (``None``: no cache).
    """

    def __init__(self, exp, task=None, kernel_cache=None):
        from tfflat.experiments.config import check_data

        self.exp = exp
        self.task = check_data(exp, task)
        self.spec = exp.model_spec(self.task.input_shape)
        self._splits, self._trainers = {}, OrderedDict()
        self._model = None
        self._kernel, self.kernel_cache = None, kernel_cache
        self._logits_fn, self._gp = None, None
        self._rates = {}
        first = self.splits(exp.data.attack_sizes[0])
        self.x_se = np.concatenate([first.x_train, first.x_test])
        self.y_s, self.n_s, self.y_e = first.y_train, len(first.y_train), first.y_test

    # ------------------------------------------------------------ data
    def sample(self, seed: int) -> int | None:
        """The attack-set sample of a point with this seed: the seed with ``attack_resample``, else None."""
        return int(seed) if self.exp.data.attack_resample else None

    def indices(self, attack_size: int, seed: int = 0) -> dict:
        """S, A, E indices of the point (|A| = ``attack_size``, ``seed``); see :func:`attack_indices`."""
        return attack_indices(self.exp, self.task, attack_size, seed)

    def splits(self, attack_size: int, seed: int = 0):
        """S, A, E for ``|A| = attack_size`` (and, with ``attack_resample``, this seed's A).
        S and E are the same for every point."""
        from tfflat.data import take

        key = (attack_size, self.sample(seed))
        if key not in self._splits:
            self._splits[key] = take(self.task, self.indices(attack_size, seed))
        return self._splits[key]

    # ------------------------------------------------------------ model and training
    def model(self, seed: int):
        """The session's one Keras model, holding the initial weights of ``models.build(spec, seed)``."""
        from tfflat import models

        fresh = models.build(self.spec, seed=seed)
        if self._model is None:
            self._model = fresh
        else:
            self._model.set_weights(fresh.get_weights())
        return self._model

    def train(self, optimizer: str, attack_size: int, seed: int, overtrain: int = 0, callback=None):
        """Train from ``models.build(spec, seed)`` on S ∪ A exactly as ``train_run`` would with the
        point's :meth:`~tfflat.experiments.config.Experiment.run_config`.

        The compiled training step for (optimizer, |A|) is built once and reset between points.
        Returns (model, :class:`~tfflat.training.TrainResult`).
        """
        from tfflat.training.run import fit

        config = self.exp.run_config(optimizer, attack_size, seed, overtrain)
        model = self.model(seed)
        trainer = self._trainer(optimizer, attack_size, seed)
        return model, fit(model, self.splits(attack_size, seed), config, callback=callback, trainer=trainer)

    def _trainer(self, optimizer: str, attack_size: int, seed: int):
        """A cached :class:`~tfflat.training.Trainer` for (optimizer, |A|) (and the seed's A with
        ``attack_resample``: the data is part of the compiled step), or ``None`` when the optimizer
        keeps state a reset cannot restore (then ``train`` builds a fresh one)."""
        import keras

        from tfflat.training import Trainer, optimizers
        from tfflat.training.loop import eval_inputs

        key = (optimizer, attack_size, self.sample(seed))
        if key in self._trainers:
            self._trainers.move_to_end(key)
            return self._trainers[key]
        t = self.exp.train
        opt = optimizers.make(optimizer, t.learning_rate, **t.opt_args)
        if any(isinstance(v, keras.random.SeedGenerator) for v in vars(opt).values()):
            return None          # e.g. Entropy-SGD's Langevin noise: its stream is not reset
        splits = self.splits(attack_size, seed)
        batch = None if optimizer == "gd" else t.batch_size
        trainer = Trainer(self._model, opt, splits.x_fit, splits.y_fit, batch, seed, x_eval=eval_inputs(splits))
        self._trainers[key] = trainer
        while len(self._trainers) > TRAINER_CACHE:
            self._trainers.popitem(last=False)
        return trainer

    # ------------------------------------------------------------ stacks: many points trained at once
    def stack_rate(self, optimizer: str) -> float | None:
        """The SGD step if the points of ``optimizer`` can train as one stack
        (:func:`tfflat.training.batched.train_fcns`: a plain ReLU FCN with one logit, plain minibatch SGD,
        one A for all seeds); else ``None`` (the points train one by one)."""
        exp = self.exp
        if exp.data.attack_resample or self.spec.get("kind") != "fcn" or optimizer == "gd":
            return None
        if optimizer not in self._rates:
            from tfflat.training import batched, optimizers

            opt = optimizers.make(optimizer, exp.train.learning_rate, **exp.train.opt_args)
            if self._model is None:
                self.model(exp.train.seeds[0])
            self._rates[optimizer] = (float(opt.get_config()["learning_rate"])
                                      if batched.plain_sgd(self._model, opt) else None)
        return self._rates[optimizer]

    def train_stack(self, optimizer: str, members, overtrain) -> list:
        """Train the points ``members = [(|A|, seed), …]`` of ``optimizer`` as one stack, keeping the
        weights at every overtraining offset in ``overtrain``; each network equals :meth:`train`'s bit for
        bit. Returns :class:`tfflat.training.batched.MemberResult` per member. Needs :meth:`stack_rate`."""
        from tfflat.training import batched

        t = self.exp.train
        out, parts = [None] * len(members), {}
        for i, (a, _) in enumerate(members):     # |S ∪ A| below the batch size: that many per step
            parts.setdefault(min(t.batch_size, self.n_s + a), []).append(i)
        for part in parts.values():
            trained = batched.train_fcns(self.spec, self.splits(max(self.exp.data.attack_sizes)),
                                         [members[i] for i in part], learning_rate=self.stack_rate(optimizer),
                                         batch_size=t.batch_size, max_epochs=t.max_epochs, overtrain=overtrain,
                                         stop_on=t.stop_on)
            for i, r in zip(part, trained):
                out[i] = r
        return out

    def holding(self, weights):
        """The session's model holding ``weights`` (``get_weights()`` order)."""
        self._model.set_weights(weights)
        return self._model

    def sharpness_stack(self, weights: list, seeds: list) -> list | None:
        """:meth:`measure`'s sharpness fields (one list per ζ) of many FCNs at once
        (:func:`tfflat.flatness.batched.sharpness_fcns`, the networks of one seed side by side), equal
        to :meth:`measure`'s to float32 rounding; ``None`` when the sharpness is off or not ``sgd``."""
        sh = self.exp.sharpness
        if not sh.enabled or sh.method != "sgd" or not weights:
            return None
        from tfflat.flatness import batched

        x_s, out = self.x_se[:self.n_s], [[] for _ in weights]
        for zeta in sh.zeta:
            for k, r in enumerate(batched.sharpness_fcns(weights, x_s, self.y_s, zeta=zeta, lr=sh.lr, epochs=sh.epochs,
                                                         batch_size=sh.batch_size, seeds=seeds, rtol=sh.rtol,
                                                         window=sh.window, max_epochs=sh.max_epochs)):
                out[k].append(sharpness_fields(r, zeta, r.seconds))
        return out

    # ------------------------------------------------------------ measurements
    def logits_se(self, model) -> np.ndarray:
        """Inference-mode logits on S + E (dense networks: one compiled call, traced once per session)."""
        import tensorflow as tf

        from tfflat.training.loop import is_dense, predict_logits

        if not is_dense(model):
            return predict_logits(model, self.x_se, batch_size=256)
        if self._logits_fn is None or self._logits_fn[0] is not model:
            fn = tf.function(lambda x: tf.reshape(model(x, training=False), [-1]), jit_compile=True)
            self._logits_fn = (model, fn, tf.constant(self.x_se))
        _, fn, x = self._logits_fn
        return fn(x).numpy()

    def kernel(self) -> np.ndarray:
        """The prior's kernel on S + E (analytic NNGP for FCNs, empirical eq. 7 otherwise), computed once
        per session and kept in the content-keyed cache ``kernel_cache`` (shared by workers and sweeps)."""
        if self._kernel is None:
            from tfflat import prior

            self._kernel = prior.kernel_for(self.spec, self.x_se, task=self.exp.data.dataset,
                                            cache_dir=self.kernel_cache)
        return self._kernel

    def gp_fields(self) -> dict:
        """The GP's own error on E (``gp_test_error``): the EP classifier on the session's kernel, fitted
        on S's true labels, predicting E's (:func:`tfflat.prior.prior.gp_error`). It depends on S, E
        and the kernel only, so it is computed once per session and set beside every point's network."""
        if self._gp is None:
            from tfflat.prior.prior import gp_error

            p = self.exp.prior
            self._gp = gp_error(self.kernel(), self.y_s, self.y_e, self.n_s, p.likelihood) if len(self.y_e) else \
                {"gp_test_error": None}
        return self._gp

    def measure(self, model, seed: int = 0, sharpness: list | None = None) -> tuple[dict, list[dict]]:
        """Hessian measures, log P(f) and ``[flatness]``'s measures of the zoo (:func:`zoo_fields`) of
        ``model`` now, and its sharpness at every configured ζ (or ``sharpness``, those fields measured
        already, e.g. by :meth:`sharpness_stack`).

        f = the network's labels on S + E (on S these are the true labels once the training error is
        zero). Returns (flat dict, one flat dict per ζ); switched-off measurements are absent.
        """
        exp, sharp = self.exp, list(sharpness or [])
        f = (self.logits_se(model) >= 0).astype(np.int64)
        out = {"function_hash": function_hash(f), "function_errors_S": int(np.sum(f[:self.n_s] != self.y_s))}
        x_s, y_s = self.x_se[:self.n_s], self.y_s
        sh = exp.sharpness
        if sh.enabled and sharpness is None:
            from tfflat import flatness

            for zeta in sh.zeta:
                t0 = time.perf_counter()
                r = flatness.sharpness(model, x_s, y_s, zeta=zeta, method=sh.method, lr=sh.lr, epochs=sh.epochs,
                                       batch_size=sh.batch_size, seed=seed, rtol=sh.rtol, window=sh.window,
                                       max_epochs=sh.max_epochs)
                sharp.append(sharpness_fields(r, zeta, time.perf_counter() - t0))
        if exp.hessian.enabled:
            from tfflat import flatness

            t0 = time.perf_counter()
            h = flatness.hessian_measures(model, x_s, y_s, top_k=exp.hessian.top_k, seed=seed)
            out.update(spectral_norm=float(h.spectral_norm), log10_spectral_norm=_log10(h.spectral_norm),
                       log10_topk_product=float(h.log10_top_product), hessian_top_k=exp.hessian.top_k,
                       hessian_trace=float(h.trace), seconds_hessian=time.perf_counter() - t0)
        if exp.prior.enabled:
            from tfflat import prior

            t0 = time.perf_counter()
            r = prior.log_prior(self.kernel(), f, exp.prior.likelihood, train_size=self.n_s,
                                delta=exp.prior.delta, check=False)     # PSD by construction
            out.update(ln_prior=r["ln_prior"], log10_prior=r["log10_prior"], pac_bayes_bound=r["pac_bayes_bound"],
                       ep_sweeps=r["sweeps"], ep_converged=r["converged"])
            out.update({k: v for k, v in self.gp_fields().items() if k in GP_FIELDS})      # the GP's own error on E
            out["seconds_prior"] = time.perf_counter() - t0
        if exp.flatness.measures:
            from tfflat.flatness.measures import flatness_measures, plan

            settings = plan(exp.flatness.measures, seed, exp.flatness.settings, defaults=exp.zoo_defaults())
            res = flatness_measures(model, x_s, y_s, list(settings), seed, settings, errors="record")
            out.update(zoo_fields(res))
        return out, sharp


GP_FIELDS = ("gp_test_error", "gp_test_error_note")


def zoo_fields(results: dict) -> dict:
    """Results of :func:`tfflat.flatness.flatness_measures` as flat record fields: ``flatness_<name>``
    (the value; ``None`` with ``flatness_<name>_error`` when the measure does not apply; ±inf are
    written as the strings "inf"/"-inf", as every record's), ``flatness_<name>_seconds`` and each
    scalar detail as ``flatness_<name>_<detail>`` (lists, tables and the settings stay out: the
    settings are in the sidecar's config)."""
    skip = ("value", "settings", "invariant_layerwise", "invariant_neuronwise")
    out = {}
    for name, r in results.items():
        out[f"flatness_{name}"] = r["value"]
        out.update({f"flatness_{name}_{k}": v for k, v in r.items() if k not in skip
                    and (k == "error" or isinstance(v, (bool, int, float, np.number, np.bool_)))})
    return out


def sharpness_fields(r, zeta: float, seconds: float) -> dict:
    """A :class:`~tfflat.flatness.SharpnessResult` as record fields: the sharpness (Def. 2.1), whether
    the ascent converged (its maximum ceased to change and reached the first-order corner's loss,
    ``sharpness_converged``; ``sharpness_note`` says why not), the epochs it ran and whether the
    tolerance stopped it, the corner's own sharpness, the losses behind them, and the ascent's
    running maximum per epoch (Fig. S10)."""
    return {"zeta": zeta, "sharpness": float(r.sharpness), "log10_sharpness": float(r.log10_sharpness),
            "sharpness_converged": bool(r.converged), "sharpness_note": r.note,
            "sharpness_epochs": int(r.ascent_epochs),
            "sharpness_stopped": bool(r.stopped_by_tolerance), "corner_sharpness": float(r.corner_sharpness),
            "sharpness_loss": float(r.loss), "max_loss": float(r.max_loss), "corner_loss": float(r.corner_loss),
            "ascent_trace": [float(v) for v in np.asarray(r.trace, np.float64).ravel()],
            "seconds_sharpness": seconds}


def attack_indices(exp, task, attack_size: int, seed: int = 0) -> dict:
    """S, A, E indices of one point: A the first |A| of one fixed order, or — with
    ``[data] attack_resample`` — a new draw for this seed (:func:`tfflat.data.draw_indices`)."""
    from tfflat.data import draw_indices

    d = exp.data
    return draw_indices(task, d.train_size, attack_size, d.test_size, d.data_seed,
                        sample=int(seed) if d.attack_resample else None)


def function_hash(f: np.ndarray) -> str:
    """A short fingerprint of a 0/1 label vector (equal hashes: the same function on S + E)."""
    return hashlib.sha1(np.packbits(np.asarray(f, np.uint8)).tobytes()).hexdigest()[:12]


def _log10(v) -> float | None:
    v = float(v)
    return math.log10(v) if v > 0 else None
