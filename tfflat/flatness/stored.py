"""Flatness of a saved run: Table 1's settings for its task and model, and ``RUN/flatness.json`` as
the result cache.

``RUN/flatness.json`` holds ``{"sharpness": {"sgd": {...}, "lbfgsb": {...}}, "hessian": {...}}``; each
function re-reads the file and replaces only its own entry, atomically (:mod:`tfflat.runs`). An entry
records its settings, a hash of the weights it was measured on and the package versions; asking again
with the same settings on unchanged weights returns the stored entry (``force=True`` recomputes).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

from tfflat import defaults

FILE = "flatness"


def sharpness_of_run(run, method: str = "sgd", *, zeta: float | None = None, lr: float | None = None,
                     epochs: int | None = None, batch_size: int | None = None, track: str = "step", seed: int = 0,
                     maxiter: int = defaults.LBFGSB_MAXITER, force: bool = False, save: bool = True,
                     callback: Callable[[int, float], None] | None = None) -> dict:
    """Keskar sharpness of a run's network on its S, with Table 1's settings for whatever is not given.

    Args:
      run: a run directory or :class:`tfflat.runs.Run`.
      method, zeta, lr, epochs, batch_size, track, seed, maxiter: see :func:`tfflat.flatness.sharpness`;
        ``None`` takes Table 1's value for the run's task and model (:func:`~tfflat.flatness.sharpness.settings_for`).
      force: recompute even when ``RUN/flatness.json`` holds this result.
      save: write the result into ``RUN/flatness.json``.
      callback: progress, see :func:`tfflat.flatness.sharpness`.
    Returns:
      The :meth:`SharpnessResult.to_dict` record with ``weights_sha1``, ``computed``, ``versions``, and
      ``stored`` (True when read back from the file) and ``file``. A stored result that had not converged
      warns again (:class:`~tfflat.flatness.sharpness.NotConvergedWarning`).
    """
    from tfflat import validate
    from tfflat.flatness.sharpness import settings_for, sharpness, warn_not_converged

    seed = validate.seed("seed", seed)
    run = _load(run)
    config = run.meta["config"]
    settings = settings_for(method, config["dataset"], config["model"], zeta=zeta, lr=lr, epochs=epochs,
                            batch_size=batch_size, track=track, seed=seed, maxiter=maxiter)
    fingerprint = weights_hash(run.model)
    stored = read(run.path).get("sharpness", {}).get(method)
    if not force and same(stored, settings, fingerprint):
        if stored["max_loss"] < stored["corner_loss"] * (1 - 1e-6):
            warn_not_converged(method, stored["max_loss"], stored["corner_loss"])
        return {**stored, "stored": True, "file": str(path_of(run.path))}
    result = sharpness(run.model, run.splits.x_train, run.splits.y_train, method=method, callback=callback,
                       **settings)
    record = {**result.to_dict(), **provenance(fingerprint)}
    if save:
        write(run.path, "sharpness", record, method)
    return {**record, "stored": False, "file": str(path_of(run.path)) if save else None}


def hessian_of_run(run, top_k: int = defaults.HESSIAN_TOP_K, probes: int = defaults.HESSIAN_PROBES, seed: int = 0, *,
                   force: bool = False, save: bool = True, callback: Callable[[int], None] | None = None) -> dict:
    """Hessian measures of a run's network on its S (see :func:`tfflat.flatness.hessian_measures`), cached
    in ``RUN/flatness.json`` like :func:`sharpness_of_run`."""
    from tfflat.flatness.hessian import hessian_measures

    from tfflat import validate

    settings = {"top_k": validate.integer("top_k", top_k), "probes": validate.integer("probes", probes, least=0),
                "seed": validate.seed("seed", seed)}
    run = _load(run)
    fingerprint = weights_hash(run.model)
    stored = read(run.path).get("hessian")
    if not force and same(stored, settings, fingerprint):
        return {**stored, "stored": True, "file": str(path_of(run.path))}
    result = hessian_measures(run.model, run.splits.x_train, run.splits.y_train, top_k, seed, probes=probes,
                              callback=callback)
    record = {**result.to_dict(), **provenance(fingerprint)}
    if save:
        write(run.path, "hessian", record)
    return {**record, "stored": False, "file": str(path_of(run.path)) if save else None}


def _load(run):
    from tfflat import runs

    return run if hasattr(run, "splits") and run.splits is not None else runs.load(run)


def weights_hash(model) -> str:
    """SHA-1 of all the model's weights (trainable and not), to tell whether a stored result still applies."""
    h = hashlib.sha1()
    for w in model.get_weights():
        h.update(w.tobytes())
    return h.hexdigest()


def provenance(fingerprint: str) -> dict:
    from tfflat import runs

    return {"weights_sha1": fingerprint, "computed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "versions": runs.versions()}


def path_of(run_dir) -> Path:
    return Path(run_dir) / f"{FILE}.json"


def read(run_dir) -> dict:
    """``RUN/flatness.json`` (empty when absent); one that is not tfflat's is a :class:`UserError`."""
    from tfflat import runs
    from tfflat.errors import UserError

    path = path_of(run_dir)
    if not path.exists():
        return {}
    fix = "delete it to measure again (it only caches results)"
    data = runs.read_json(path, fix=fix)
    for measure in ("sharpness", "hessian"):
        if not isinstance(data.get(measure, {}), dict) or (
                measure == "sharpness" and not all(isinstance(v, dict) for v in data.get(measure, {}).values())):
            raise UserError(f"{path} is not a tfflat flatness file ({measure!r} is not an object of results); {fix}")
    return data


def write(run_dir, measure: str, record: dict, method: str | None = None) -> None:
    """Re-read ``RUN/flatness.json``, replace this measure's entry, write it back atomically."""
    from tfflat import runs

    data = read(run_dir)
    if method is None:
        data[measure] = record
    else:
        data.setdefault(measure, {})[method] = record
    runs.update(run_dir, FILE, data)


RESULT_KEYS = {"sharpness": ("sharpness", "log10_sharpness", "loss", "max_loss", "corner_loss", "seconds"),
               "hessian": ("eigenvalues", "spectral_norm", "log10_top_product", "positive", "trace", "trace_stderr",
                           "loss", "matvecs", "seconds")}


def same(stored: dict | None, settings: dict, fingerprint: str, required=None) -> bool:
    """A complete stored entry computed with these settings on these very weights (an incomplete one is
    measured again). ``required``: the keys a complete entry holds (default: those of ``sharpness`` or
    ``hessian``, told apart by their settings)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("settings"), dict):
        return False
    if required is None:
        required = RESULT_KEYS["hessian" if "eigenvalues" in stored or "top_k" in settings else "sharpness"]
    return stored.get("weights_sha1") == fingerprint and all(k in stored for k in required) and all(
        stored["settings"].get(k) == v for k, v in settings.items())


def zoo_defaults_of_run(run) -> dict[str, dict]:
    """The zoo's settings a run implies: Table 1's sharpness settings for its task and model (the
    ``keskar_sharpness`` entry), as :func:`sharpness_of_run` uses; none without a Table 1 row."""
    from tfflat.errors import UserError
    from tfflat.flatness.sharpness import table1

    config = run.meta["config"]
    try:
        return {"keskar_sharpness": table1(config["dataset"], config["model"])}
    except UserError:
        return {}


def flatness_measures_of_run(run, measures="all", seed: int = 0, settings: dict | None = None, *,
                             eval_batch: int | None = None, errors: str = "record", force: bool = False,
                             save: bool = True, callback: Callable[[str, dict], None] | None = None) -> dict:
    """Measures of the zoo (:func:`tfflat.flatness.flatness_measures`) of a run's network on its S,
    cached per measure in ``RUN/flatness.json`` under ``"measures"``.

    Args:
      run: a run directory or :class:`tfflat.runs.Run`.
      measures, seed, settings, eval_batch, errors: as for :func:`~tfflat.flatness.flatness_measures`;
        ``keskar_sharpness`` defaults to Table 1's settings for the run's task and model.
      force: recompute even the measures ``RUN/flatness.json`` holds for these settings and weights.
      save: write each result into ``RUN/flatness.json`` as soon as it is computed (an interrupted
        call keeps what it finished; a rerun computes only the rest).
      callback: ``callback(name, record)`` after each measure, computed or read back.
    Returns:
      ``{"measures": {name: record}, "file": path or None}`` in the order asked; each record is the
      measure's result as strict JSON (:func:`~tfflat.flatness.measures.strict`: non-finite numbers are
      ``null``, with a ``reason``) with ``weights_sha1``, ``computed``, ``versions`` and ``stored``
      (True when read back from the file).
    """
    from tfflat import runs
    from tfflat.flatness.measures import flatness_measures, plan, strict

    run = _load(run)
    planned = plan(measures, seed, settings, eval_batch, defaults=zoo_defaults_of_run(run))
    fingerprint = weights_hash(run.model)
    cached = read(run.path).get("measures", {}) if not force else {}
    file = str(path_of(run.path)) if save else None

    def key(s):                  # what decides the value (the chunk size only the speed), as JSON reads back
        return {k: v for k, v in runs._jsonable(s).items() if k != "eval_batch"}

    done = {name: {**cached[name], "stored": True} for name, used in planned.items()
            if same(cached.get(name), key(used), fingerprint, required=("value",))}
    for name in planned:
        if name in done and callback is not None:
            callback(name, done[name])

    def finished(name, res):
        record = {**strict({name: res})[name], **provenance(fingerprint)}
        if save:
            write(run.path, "measures", record, name)
        done[name] = {**record, "stored": False}
        if callback is not None:
            callback(name, done[name])

    todo = [name for name in planned if name not in done]
    if todo:
        flatness_measures(run.model, run.splits.x_train, run.splits.y_train, todo, seed,
                          {name: planned[name] for name in todo}, errors=errors, callback=finished)
    return {"measures": {name: done[name] for name in planned}, "file": file}


def invariance_of_run(run, measures="all", seed: int = 0, settings: dict | None = None, **options) -> list[dict]:
    """:func:`tfflat.flatness.invariance_table` of a run's network on its S, with the settings
    :func:`flatness_measures_of_run` uses (``options``: ``alphas``, ``layers``, ``rtol``, ``eval_batch``,
    ``callback``). Not cached: it measures rescaled copies, not the run's network."""
    from tfflat.flatness.invariance import invariance_table
    from tfflat.flatness.measures import plan

    run = _load(run)
    planned = plan(measures, seed, settings, options.get("eval_batch"), defaults=zoo_defaults_of_run(run))
    return invariance_table(run.model, run.splits.x_train, run.splits.y_train, list(planned), seed=seed,
                            settings=planned, **options)
