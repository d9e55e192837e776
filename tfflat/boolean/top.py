"""Flatness of the most probable Boolean functions (paper §5.1, Fig. 2, S7, S8) and the GP check.

For each of the K most frequent functions of a sampled table, a freshly initialised network of the
same architecture and init distribution is trained with SGD on all 2ⁿ inputs labelled by f until
its first zero-error epoch (SPEC §3; A and E are empty); its function is then exactly f. There we
measure Keskar sharpness with Table 1's Boolean settings and the Hessian spectral norm (SPEC §4).
Table 1's ascent (10 epochs at lr 1e-3) stops short of the box's first-order corner for these
networks (measured: ``sharpness_converged`` is False for all 100 top functions of 10⁸ samples), so
the corner's sharpness is recorded beside it: a feasible point of C_ζ and, at ζ = 1e-4 where L is
nearly linear over the box, close to the maximum.
Beside the sampled log10 P(f), the GP approximation log10 P(f) from EP on the arc-cosine (NNGP)
kernel of all 2ⁿ inputs (SPEC §5) is recorded.

Caveat (measured, n = 7): SGD (lr 0.01, batch 32) reaches the constant functions after ~3 epochs at
a loss ≈ 0.5, where sharpness is dominated by the gradient, while functions with a few exceptions
take thousands of epochs and end at loss ≈ 0.005. So at the zero-error epoch the most probable
functions look *sharpest*; ``overtrain`` (e.g. 2000 epochs) trains every network further first,
and then they come out flattest, as in the paper's Fig. 2. The loss at measurement is in every row.

Each finished function is appended to a JSON-lines file at once, so a stopped run resumes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.errors import UserError

COLUMNS = ("rank", "function", "count", "log10_prior", "log10_prior_ep", "zero_error_epoch", "epochs", "loss",
           "sharpness", "log10_sharpness", "sharpness_converged", "corner_sharpness", "log10_corner_sharpness",
           "spectral_norm", "log10_spectral_norm", "seconds")


def function_seed(seed: int, key: str) -> int:
    """The initialisation/shuffling seed of the network trained on function ``key`` (independent per f)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def settings(bits: int, seed: int, widths=defaults.FCN_PRESETS["fcn"], learning_rate: float | None = None,
             batch_size: int = defaults.BATCH_SIZE, max_epochs: int = defaults.MAX_EPOCHS, overtrain: int = 0,
             sharpness: dict | None = None, likelihood: str = "heaviside") -> dict:
    """Everything that determines a row of the top-function table (stored with every row)."""
    sw, sb = defaults.SIGMAS["boolean"]
    return {"bits": int(bits), "widths": [int(w) for w in widths], "sigma_w": sw, "sigma_b": sb,
            "seed": int(seed), "optimizer": "sgd",
            "learning_rate": float(learning_rate or defaults.OPTIMIZERS["sgd"]["learning_rate"]),
            "batch_size": int(batch_size), "max_epochs": int(max_epochs), "overtrain": int(overtrain),
            "sharpness": dict(sharpness or defaults.SHARPNESS[("boolean", "fcn")]), "likelihood": likelihood}


def ep_log10_priors(keys, bits: int, widths=defaults.FCN_PRESETS["fcn"], likelihood: str = "heaviside") -> np.ndarray:
    """log10 P(f) of each function (hex keys) under the NNGP of the FCN, by EP on all 2ⁿ inputs."""
    from tfflat.data import boolean_inputs
    from tfflat.data.keys import parse_keys, unpack
    from tfflat.prior.ep import ep_log_prior
    from tfflat.prior.kernels import nngp_kernel

    sw, sb = defaults.SIGMAS["boolean"]
    k = nngp_kernel(boolean_inputs(bits), len(widths), sw, sb)
    ys = unpack(parse_keys(keys, bits), bits)
    return np.array([ep_log_prior(k, y, likelihood=likelihood).log10_p for y in ys], np.float64)


def measure(keys, counts, log10_priors, out, *, bits: int, seed: int = 0, widths=defaults.FCN_PRESETS["fcn"],
            learning_rate: float | None = None, batch_size: int = defaults.BATCH_SIZE,
            max_epochs: int = defaults.MAX_EPOCHS, overtrain: int = 0, likelihood: str = "heaviside",
            progress: Callable[[int, int, dict], None] | None = None) -> list[dict]:
    """Train on, and measure, each function; rows are appended to ``out`` (JSON lines) as they finish.

    Args:
      keys, counts, log10_priors: the K functions (hex keys), their sampled counts and log10 P(f).
      out: the JSON-lines file (rows already there with the same function and settings are reused).
      bits, widths: the architecture (σw, σb: ``defaults.SIGMAS["boolean"]``).
      seed: base seed; the network for f uses :func:`function_seed` (seed, f).
      learning_rate, batch_size, max_epochs, overtrain: SGD (defaults: lr 0.01, batch 32, SPEC §3).
      likelihood: EP likelihood for the GP check, ``"heaviside"`` (the exact prior of the sign of
        the GP, comparable to direct sampling) or ``"probit"``.
      progress: ``progress(done, total, row)`` after each function.
    Returns:
      The rows (dicts with :data:`COLUMNS` and ``settings``), in rank order.
    """
    from tfflat import models, runs
    from tfflat.data import Splits, boolean_inputs
    from tfflat.data.keys import parse_keys, unpack
    from tfflat.flatness import hessian_measures, sharpness
    from tfflat.models.fcn import reinitialize
    from tfflat.training import train

    if max_epochs < 1 or overtrain < 0 or batch_size < 1:
        raise UserError("need --max-epochs ≥ 1, --overtrain ≥ 0 and --batch-size ≥ 1")
    cfg = settings(bits, seed, widths, learning_rate, batch_size, max_epochs, overtrain, likelihood=likelihood)
    out = Path(out)
    old = {(r.get("function"), r.get("rank")): r for r in runs.read_jsonl(out) if r.get("settings") == cfg}
    rows = [old.get((k, i + 1)) for i, k in enumerate(keys)]
    todo = [i for i, r in enumerate(rows) if r is None]
    if todo:
        ep = ep_log10_priors([keys[i] for i in todo], bits, widths, likelihood)
        x = boolean_inputs(bits)
        empty_x, empty_y = np.zeros((0, bits), np.float32), np.zeros(0, np.int64)
        spec = models.model_spec("fcn", "boolean", (bits,), widths=widths)
        model = models.build(spec, seed=0)     # one model, re-drawn per f: flatness compiles once
        sharp = cfg["sharpness"]
        for j, i in enumerate(todo):
            t0 = time.perf_counter()
            y = unpack(parse_keys([keys[i]], bits), bits)[0].astype(np.int64)
            fs = function_seed(seed, keys[i])
            reinitialize(model, spec, fs)
            splits = Splits(x, y, empty_x, empty_y, empty_x, empty_y,
                            {"S": {"pool": "train", "indices": list(range(len(y)))},
                             "A": {"pool": "train", "indices": []}, "E": {"pool": "train", "indices": []}})
            res = train(model, splits, "sgd", learning_rate=cfg["learning_rate"], batch_size=batch_size,
                        max_epochs=max_epochs, overtrain=overtrain, seed=fs)
            row = {"rank": i + 1, "function": keys[i], "count": int(counts[i]),
                   "log10_prior": float(log10_priors[i]), "log10_prior_ep": float(ep[j]),
                   "zero_error_epoch": res.zero_error_epoch, "epochs": res.epochs,
                   "loss": res.final["loss_S"]}
            if res.zero_error_epoch is not None:
                s = sharpness(model, x, y, zeta=sharp["zeta"], lr=sharp["lr"], epochs=sharp["epochs"],
                              batch_size=sharp["batch_size"], seed=fs)
                h = hessian_measures(model, x, y, top_k=1, seed=fs, probes=0)
                corner = s.corner_sharpness
                row.update(sharpness=s.sharpness, log10_sharpness=s.log10_sharpness,
                           sharpness_converged=s.converged, corner_sharpness=corner,
                           log10_corner_sharpness=math.log10(corner) if corner > 0 else -math.inf,
                           spectral_norm=h.spectral_norm,
                           log10_spectral_norm=math.log10(h.spectral_norm) if h.spectral_norm > 0 else -math.inf)
            else:
                row.update({c: None for c in COLUMNS[COLUMNS.index("sharpness"):COLUMNS.index("seconds")]})
            row.update(seconds=time.perf_counter() - t0, settings=cfg)
            runs.append_jsonl(out, row)
            rows[i] = row
            if progress:
                progress(len(keys) - len(todo) + j + 1, len(keys), row)
    return rows


PAIRS = {"log10_prior~log10_sharpness": ("log10_prior", "log10_sharpness"),               # Fig. 2
         "log10_prior~log10_corner_sharpness": ("log10_prior", "log10_corner_sharpness"),
         "log10_prior~log10_spectral_norm": ("log10_prior", "log10_spectral_norm"),       # Fig. S8
         "log10_sharpness~log10_spectral_norm": ("log10_sharpness", "log10_spectral_norm"),  # Fig. S7
         "log10_prior~log10_prior_ep": ("log10_prior", "log10_prior_ep")}                 # GP check


def column(rows: list[dict], name: str) -> np.ndarray:
    """One column of the rows as floats (missing → NaN)."""
    return np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows], float)


def correlations(rows: list[dict]) -> dict:
    """Pearson, Spearman and Kendall correlations (with p-values) of the pairs in :data:`PAIRS`."""
    from tfflat.stats import correlations as corr

    return {name: corr(column(rows, a), column(rows, b)) for name, (a, b) in PAIRS.items()}


def write_csv(path, rows: list[dict]) -> None:
    """The top-function table as CSV (:data:`COLUMNS`)."""
    from tfflat import runs

    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, (float, np.floating)):
            return repr(float(v))          # lossless: the figures and the summary use the same numbers
        return str(v)

    lines = [",".join(COLUMNS)] + [",".join(fmt(r.get(c)) for c in COLUMNS) for r in rows]
    runs.atomic_write(path, "\n".join(lines) + "\n")
