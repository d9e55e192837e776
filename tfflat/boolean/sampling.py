"""Direct sampling of the prior P(f) over Boolean functions (paper §5.1, SPEC §5): the resumable run.

Draw the weights of an n-bit ReLU FCN from the initialisation distribution
(W ~ N(0, σw²/fan_in), b ~ N(0, σb²)), evaluate it on all 2ⁿ inputs, and count how often each
function f : {0,1}ⁿ → {0,1} (label 1 iff logit ≥ 0) comes out. P(f) ≈ count / samples.

The samples are split into chunks (the unit of checkpointing) and the chunks into pieces (the unit
of work). Large runs send the pieces to single-threaded worker processes
(:mod:`tfflat.boolean.workers`), which evaluate them with the compiled evaluator
(:mod:`tfflat.boolean.evaluator`) and count their functions; small runs do the same in this
process. Each chunk's pieces are merged (:func:`tfflat.boolean.table.merge`) and written atomically
to ``STATE/chunks/``, so a stopped run resumes there. The weight stream
(:mod:`tfflat.boolean.stream`) makes sample ``s`` the same network however the run is batched,
chunked, split between workers or interrupted: a resumed run gives the table of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.boolean.evaluator import default_batch, default_block, network
from tfflat.boolean.stream import RNG
from tfflat.boolean.table import Table, merge
from tfflat.boolean.workers import Pool, default_workers
from tfflat.data.keys import n_words
from tfflat.errors import UserError


def check_settings(bits: int, samples: int, widths=defaults.FCN_PRESETS["fcn"],
                   sigma_w: float = defaults.SIGMAS["boolean"][0], sigma_b: float = defaults.SIGMAS["boolean"][1]) -> None:
    """Raise :class:`UserError` for settings that cannot be sampled."""
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= defaults.BOOLEAN_MAX_BITS:
        raise UserError(f"--bits must be an integer between 1 and {defaults.BOOLEAN_MAX_BITS}, got {bits}")
    if not isinstance(samples, (int, np.integer)) or samples < 0:
        raise UserError(f"--samples must be a non-negative integer, got {samples}")
    if not widths or min(int(w) for w in widths) < 1:
        raise UserError(f"hidden widths must be positive integers, got {tuple(widths)}")
    if not (sigma_w > 0 and sigma_b >= 0 and math.isfinite(sigma_w) and math.isfinite(sigma_b)):
        raise UserError(f"need σw > 0 and σb ≥ 0, got σw = {sigma_w}, σb = {sigma_b}")


PIECE = 2 ** 16                # samples per unit of work (rounded to whole blocks)
WORKERS_FROM = 2 ** 19         # default: runs with at least this many samples to draw use worker processes


def sample(samples: int, bits: int = defaults.BOOLEAN_BITS, widths=defaults.FCN_PRESETS["fcn"], sigma_w: float | None = None,
           sigma_b: float | None = None, seed: int = 0, *, state_dir=None, chunk: int = 2 ** 20,
           batch: int | None = None, workers: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> Table:
    """Sample ``samples`` networks' functions and count them (paper §5.1: 10⁸ samples, 7-40-40-1).

    Args:
      samples: weight samples to draw.
      bits: n, the number of Boolean inputs (1 … 20).
      widths: hidden layer widths.
      sigma_w, sigma_b: initialisation scales (default: ``defaults.SIGMAS["boolean"]`` = 1, 0.1).
      seed: the weight stream; sample s of a seed is the same network in every run.
      state_dir: where finished chunks are kept (``state_dir/chunks/*.npz`` + ``state.json``); a run
        with the same settings resumes from them. ``None``: keep nothing.
      chunk: samples per chunk (the unit of checkpointing and counting; rounded to whole blocks).
      batch: networks per step of the compiled loop (default :func:`default_batch`).
      workers: worker processes (0: compute in this process). Default: one per CPU when at least
        ``WORKERS_FROM`` samples are left to draw (they start in a few seconds), else 0.
      progress: ``progress(samples_done, samples)`` after every piece of ``PIECE`` samples.
    Returns:
      :class:`Table`, most frequent function first. ``seconds`` is wall-clock time (start-up included).
    """
    from tfflat import runs

    sw, sb = defaults.SIGMAS["boolean"]
    sigma_w, sigma_b = float(sw if sigma_w is None else sigma_w), float(sb if sigma_b is None else sigma_b)
    widths = tuple(int(w) for w in widths)
    check_settings(bits, samples, widths, sigma_w, sigma_b)
    batch = int(batch or default_batch(bits, widths))
    block = min(default_block(bits, widths, batch), max(batch, int(chunk) // batch * batch))
    chunk = max(block, int(chunk) // block * block)
    config = {"bits": int(bits), "widths": list(widths), "sigma_w": sigma_w, "sigma_b": sigma_b,
              "seed": int(seed), "generator": RNG, "chunk": chunk}
    done = {}
    if state_dir is not None:
        state_dir = Path(state_dir)
        runs.ensure_dir(state_dir / "chunks")
        state_file = state_dir / "state.json"
        if state_file.exists():
            old = runs.read_json(state_file).get("config")
            if old != config:
                diff = ", ".join(f"{k} {old.get(k)!r} → {v!r}" for k, v in config.items() if (old or {}).get(k) != v)
                raise UserError(f"{state_dir} holds samples drawn with other settings ({diff}); "
                                "use another --out or delete that directory")
        else:
            runs.write_json(state_file, {"config": config, "versions": runs.versions()})
        done = {p.stem: p for p in (state_dir / "chunks").glob("*.npz")}
    plan = [(lo, min(lo + chunk, samples)) for lo in range(0, samples, chunk)]
    tables, seconds = [], 0.0
    todo = []
    for lo, hi in plan:
        name = f"{lo:013d}-{hi:013d}"
        if name in done:
            with np.load(done[name]) as z:
                tables.append((z["keys"], z["counts"]))
                seconds += float(z["seconds"])
        else:
            todo.append((lo, hi, name))
    finished = samples - sum(hi - lo for lo, hi, _ in todo)
    if progress:
        progress(finished, samples)
    if todo:
        left = sum(hi - lo for lo, hi, _ in todo)
        if workers is None:
            workers = default_workers() if left >= WORKERS_FROM else 0
        if not isinstance(workers, (int, np.integer)) or workers < 0:
            raise UserError(f"workers must be a non-negative integer, got {workers!r}")
        settings = {"bits": int(bits), "widths": list(widths), "sigma_w": sigma_w, "sigma_b": sigma_b,
                    "batch": batch, "block": block, "seed": int(seed)}
        for (lo, hi, name), keys, counts, dt in _chunks(settings, todo, int(workers), progress, finished, samples):
            seconds += dt
            tables.append((keys, counts))
            if state_dir is not None:
                _save_chunk(state_dir / "chunks" / f"{name}.npz", keys, counts, dt)
    keys, counts = merge(tables)
    if len(counts) == 0:
        keys = np.zeros((0, n_words(bits)), np.uint64)
    order = by_count(counts)
    return Table(int(bits), int(samples), keys[order], counts[order], seconds, config)


def by_count(counts: np.ndarray) -> np.ndarray:
    """``np.argsort(-counts, kind="stable")`` for counts ≥ 1, sorting only the counts above 1 (at 10⁸
    samples 2 % of the rows; the rest keep their order)."""
    many = np.flatnonzero(counts > 1)
    return np.concatenate([many[np.argsort(-counts[many], kind="stable")], np.flatnonzero(counts <= 1)])


def _chunks(settings: dict, todo, workers: int, progress, finished: int, samples: int):
    """Yield ((lo, hi, name), keys, counts, wall seconds) per chunk of ``todo`` as its pieces are
    counted, by ``workers`` processes or (0) in this process. A chunk's seconds run from the previous
    chunk's end (the first from the start, worker start-up included)."""
    block = settings["block"]
    piece = max(block, PIECE // block * block)
    pieces = [(s, min(s + piece, hi)) for lo, hi, _ in todo for s in range(lo, hi, piece)]
    owner = {}
    for c, (lo, hi, _) in enumerate(todo):
        for s in range(lo, hi, piece):
            owner[s] = c
    parts: dict = {c: [] for c in range(len(todo))}
    left = {c: len(range(lo, hi, piece)) for c, (lo, hi, _) in enumerate(todo)}
    t0 = time.perf_counter()
    workers = min(workers, len(pieces))
    pool = Pool(workers, settings) if workers > 0 else None
    try:
        if pool is None:
            net = network(settings["bits"], settings["widths"], settings["sigma_w"], settings["sigma_b"],
                          settings["batch"], block)
            results = ((lo, hi, *net.count(settings["seed"], lo, hi)) for lo, hi in pieces)
        else:
            results = pool.map(pieces)
        for lo, hi, keys, counts in results:
            c = owner[lo]
            parts[c].append((keys, counts))
            left[c] -= 1
            finished += hi - lo
            if progress:
                progress(finished, samples)
            if left[c] == 0:
                keys, counts = merge(parts.pop(c))
                t1 = time.perf_counter()
                yield todo[c], keys, counts, t1 - t0
                t0 = t1
        if pool is not None:
            pool.close()
    except BaseException:
        if pool is not None:
            pool.kill()
        raise


def _save_chunk(path: Path, keys, counts, seconds: float) -> None:
    import io

    from tfflat import runs

    buf = io.BytesIO()
    np.savez(buf, keys=keys, counts=counts, seconds=np.float64(seconds))
    runs.atomic_write(path, buf.getvalue())
