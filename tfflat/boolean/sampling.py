"""Direct sampling of the prior P(f) over Boolean functions (paper §5.1, SPEC §5): the resumable run.

Draw the weights of an n-bit ReLU FCN from the initialisation distribution
(W ~ N(0, σw²/fan_in), b ~ N(0, σb²)), evaluate it on all 2ⁿ inputs, and count how often each
function f : {0,1}ⁿ → {0,1} (label 1 iff logit ≥ 0) comes out. P(f) ≈ count / samples.

The samples are split into chunks; the compiled evaluator (:mod:`tfflat.boolean.evaluator`) computes
blocks of each in a thread pool, the chunk's functions are counted with numpy ``unique``
(:func:`tfflat.boolean.table.count_rows`) while the pool computes the next blocks, and each finished
chunk's table is written atomically to ``STATE/chunks/`` so a stopped run resumes there. The weight
stream (:mod:`tfflat.boolean.stream`) makes sample ``s`` the same network however the run is
batched, chunked, threaded or interrupted: a resumed run gives the table of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from tfflat import defaults
from tfflat.boolean.evaluator import Network, default_batch, default_block, network
from tfflat.boolean.stream import RNG
from tfflat.boolean.table import Table, count_rows, merge
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


def sample(samples: int, bits: int = defaults.BOOLEAN_BITS, widths=defaults.FCN_PRESETS["fcn"], sigma_w: float | None = None,
           sigma_b: float | None = None, seed: int = 0, *, state_dir=None, chunk: int = 2 ** 20,
           batch: int | None = None, threads: int | None = None,
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
      threads: concurrent compiled calls (default: the number of CPUs).
      progress: ``progress(samples_done, samples)`` after every compiled call.
    Returns:
      :class:`Table`, most frequent function first. ``seconds`` is wall-clock time.
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
        net = network(bits, widths, sigma_w, sigma_b, batch, block)
        for (lo, hi, name), keys, counts, dt in _chunks(net, seed, todo, threads, progress, finished, samples):
            seconds += dt
            tables.append((keys, counts))
            if state_dir is not None:
                _save_chunk(state_dir / "chunks" / f"{name}.npz", keys, counts, dt)
    keys, counts = merge(tables)
    if len(counts) == 0:
        keys = np.zeros((0, n_words(bits)), np.uint64)
    order = np.argsort(-counts, kind="stable")
    return Table(int(bits), int(samples), keys[order], counts[order], seconds, config)


def _chunks(net: Network, seed: int, todo, threads, progress, finished: int, samples: int):
    """Yield ((lo, hi, name), keys, counts, wall seconds) per chunk of ``todo``, in order, while the
    thread pool already evaluates the next blocks (the compiled calls release the GIL)."""
    from collections import deque

    threads = int(threads or os.cpu_count() or 1)
    blocks = iter([(c, s) for c, (lo, hi, _) in enumerate(todo) for s in range(lo, hi, net.block)])
    pool = ThreadPoolExecutor(threads)
    pending: deque = deque()

    def refill():
        while len(pending) < 2 * threads:
            nxt = next(blocks, None)
            if nxt is None:
                return
            pending.append((nxt, pool.submit(net, seed, nxt[1])))

    try:
        refill()
        t0 = time.perf_counter()
        for c, (lo, hi, name) in enumerate(todo):
            parts = []
            while pending and pending[0][0][0] == c:
                (_, start), fut = pending.popleft()
                parts.append(fut.result()[:hi - start])
                refill()
                finished += len(parts[-1])
                if progress:
                    progress(finished, samples)
            keys, counts = count_rows(np.concatenate(parts))
            t1 = time.perf_counter()
            yield (lo, hi, name), keys, counts, t1 - t0
            t0 = t1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _save_chunk(path: Path, keys, counts, seconds: float) -> None:
    import io

    from tfflat import runs

    buf = io.BytesIO()
    np.savez(buf, keys=keys, counts=counts, seconds=np.float64(seconds))
    runs.atomic_write(path, buf.getvalue())
