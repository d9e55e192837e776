"""Worker processes of the Boolean prior sampler: each one runs TensorFlow single-threaded, compiles
the evaluator once (:mod:`tfflat.boolean.evaluator`, with its ``XLA_FLAGS``) and counts the functions
of the sample ranges it is sent; :mod:`tfflat.boolean.sampling` merges the tables.

Why processes rather than threads in the caller's process: a compiled call run through TensorFlow's
intra-op thread pool pays a cross-thread hand-off per XLA thunk (~8 per step of 32 networks), which
costs ~40 % of a 7-40-40-1 step on this 2-core machine, and TensorFlow's threading and XLA's flags
can only be set before they are first used, i.e. per process. A child with one intra-op thread runs
the thunks inline.

Protocol: the parent writes one JSON line of settings, then one line ``lo hi`` per range; the
child answers each range with a JSON header line ``{"lo", "hi", "rows"}`` followed by the raw
little-endian keys (rows × n_words uint64) and counts (rows int64). Closing its stdin ends it; a
child whose parent died stops at the end of its current range (EOF or a broken pipe).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading

import numpy as np


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                     # not Linux
        return os.cpu_count() or 1


def worker_env() -> dict:
    """The environment of a worker: one TensorFlow thread, the evaluator's XLA flags (before the
    caller's own, which win), quiet logs."""
    from tfflat.boolean.evaluator import XLA_FLAGS

    one = "1"
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=one, TF_NUM_INTEROP_THREADS=one, OMP_NUM_THREADS=one,
               OPENBLAS_NUM_THREADS=one, MKL_NUM_THREADS=one, TF_CPP_MIN_LOG_LEVEL="3")
    env["XLA_FLAGS"] = " ".join([*XLA_FLAGS, os.environ.get("XLA_FLAGS", "")]).strip()    # the caller's win
    return env


class Pool:
    """``workers`` child processes evaluating and counting sample ranges for one set of settings.

    Args:
      workers: processes to start.
      settings: ``bits, widths, sigma_w, sigma_b, batch, block, seed`` (JSON-serialisable).
    Use as a context manager; :meth:`map` yields finished ranges in the order they finish.
    """

    def __init__(self, workers: int, settings: dict):
        self.settings = dict(settings)
        self._logs = [tempfile.TemporaryFile("w+b") for _ in range(workers)]
        self._procs = []
        self._queue: queue.Queue = queue.Queue()
        env = worker_env()
        for i, log in enumerate(self._logs):
            proc = subprocess.Popen([sys.executable, "-m", "tfflat.boolean.workers"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, env=env)
            proc.stdin.write((json.dumps(self.settings) + "\n").encode())
            proc.stdin.flush()
            self._procs.append(proc)
            threading.Thread(target=self._read, args=(i, proc.stdout), daemon=True).start()

    def _read(self, i: int, stream) -> None:
        """Reader thread of worker ``i``: frames → the queue, then ``(i, None)`` at its end."""
        try:
            while True:
                line = stream.readline()
                if not line:
                    break
                head = json.loads(line)
                rows, words = int(head["rows"]), int(head["words"])
                keys = np.frombuffer(_read_exactly(stream, 8 * rows * words), "<u8").reshape(rows, words)
                counts = np.frombuffer(_read_exactly(stream, 8 * rows), "<i8")
                self._queue.put((i, (int(head["lo"]), int(head["hi"]), keys.astype(np.uint64), counts.astype(np.int64))))
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self._queue.put((i, e))
        self._queue.put((i, None))

    def map(self, ranges, in_flight: int = 2):
        """Yield ``(lo, hi, keys, counts)`` for each ``(lo, hi)`` of ``ranges`` as workers finish them;
        each worker is kept ``in_flight`` ranges ahead so it never waits for the parent."""
        todo = iter(ranges)
        busy = [0] * len(self._procs)

        def give(i: int) -> None:
            r = next(todo, None)
            if r is not None:
                self._procs[i].stdin.write(f"{int(r[0])} {int(r[1])}\n".encode())
                self._procs[i].stdin.flush()
                busy[i] += 1

        for _ in range(in_flight):
            for i in range(len(self._procs)):
                give(i)
        while any(busy):
            i, item = self._queue.get()
            if item is None or isinstance(item, Exception):
                raise RuntimeError(self._failure(i, item))
            busy[i] -= 1
            give(i)
            yield item

    def _failure(self, i: int, error) -> str:
        proc = self._procs[i]
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        self._logs[i].seek(0)
        tail = [ln for ln in self._logs[i].read().decode(errors="replace").splitlines() if ln.strip()][-15:]
        why = f" ({error!r})" if error is not None else ""
        return (f"sampler worker {i + 1} stopped (exit {code}){why}; finished chunks are kept, rerun to resume. "
                "Its last messages:\n" + "\n".join(tail))

    def close(self) -> None:
        """End the workers: close their input (they exit), kill any still running after 10 s."""
        for proc in self._procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()

    def kill(self) -> None:
        """Stop the workers now (after an error or an interrupt)."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.kill()


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError(f"worker output ended after {len(data)} of {n} bytes")
    return data


def main() -> int:
    """Child process: settings, then ranges, from stdin; tables to stdout."""
    from tfflat.boolean.evaluator import network

    s = json.loads(sys.stdin.readline())
    net = network(s["bits"], s["widths"], s["sigma_w"], s["sigma_b"], s["batch"], s["block"])
    out = sys.stdout.buffer
    for line in sys.stdin:
        lo, hi = map(int, line.split())
        keys, counts = net.count(s["seed"], lo, hi)
        out.write((json.dumps({"lo": lo, "hi": hi, "rows": len(counts), "words": keys.shape[1]}) + "\n").encode())
        out.write(np.ascontiguousarray(keys, "<u8").tobytes())
        out.write(np.ascontiguousarray(counts, "<i8").tobytes())
        out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:                    # the parent has gone
        sys.exit(1)
