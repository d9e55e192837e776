"""Attack-set sweeps (Figs. 3, 4, S9, S16–S24): the grid |A| × seeds (× optimizers).

Each point trains an FCN (or ResNet50) on S ∪ A to the zero-error epoch (§5.2) and measures the
sharpness (Def. 2.1), the Hessian measures (App. E, when asked) and log P(f) (§2.3, one kernel for
the whole sweep since S + E is shared) there and, optionally, at later overtraining epochs
(Figs. S16–S21). One flat JSON record per measurement is appended atomically to the results file
(see :mod:`tfflat.experiments.results`); a rerun skips what is there. A record names its experiment
(config name, ``quick``, dataset, model, sizes, ``attack_resample``) and point (optimizer, |A|,
seed, overtraining epoch), and keeps the sharpness ascent's convergence: ``sharpness_converged``,
``corner_sharpness``, the losses and the ``ascent_trace`` (Fig. S10). With ``attack_resample`` each
seed of an |A| trains on its own A (recorded in the sidecar).

Parallelism: ``shard=(i, n)`` runs every n-th point (cluster job arrays; :mod:`tfflat.experiments.shards`
merges their files); ``workers=k`` starts k worker processes on this machine that take points (or
stacks of points, below) from a queue (each keeps its TensorFlow, data, kernel and compiled training
steps for all its points). With GPUs, worker i is pinned to one GPU (``CUDA_VISIBLE_DEVICES``, round
robin over ``devices``: one worker per GPU when k equals their number; :func:`tfflat.devices.worker_env`),
memory growth on.

Stacks: the points of an FCN sweep under plain SGD that share a seed (all |A|; with k workers, k
parts of them) train as one stack (:func:`tfflat.training.batched.train_fcns`, each network bit for
bit the point-by-point trainer's) and their sharpness ascents run side by side
(:func:`tfflat.flatness.batched.sharpness_fcns`, equal to float32 rounding); the other measures run
per network. A stack's records are appended as its networks are measured; a run killed during a
stack's training redoes that stack (``stack=False``: point by point, as for every other optimizer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tfflat import runs
from tfflat.errors import UserError
from tfflat.experiments import results


@dataclass(frozen=True)
class Point:
    """One training run of a sweep."""

    optimizer: str
    attack_size: int
    seed: int

    @property
    def name(self) -> str:
        """``sgd/A50/seed3``."""
        return f"{self.optimizer}/A{self.attack_size}/seed{self.seed}"

    def key(self, overtrain: int) -> str:
        """The record key: ``sgd/A50/seed3/over0``."""
        return f"{self.name}/over{overtrain}"


def grid(exp) -> list[Point]:
    """All points, ordered by optimizer (config order), |A|, seed."""
    t = exp.train
    return [Point(o, a, s) for o in t.optimizers for a in exp.data.attack_sizes for s in t.seeds]


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/8"`` → (2, 8): the 2nd of 8 interleaved shares (1-based)."""
    if text is None:
        return 1, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard {text!r} is not I/N (e.g. 1/4)") from None
    if n < 1 or not 1 <= i <= n:
        raise UserError(f"--shard {text}: need 1 ≤ I ≤ N, e.g. 1/{max(n, 1)} … {max(n, 1)}/{max(n, 1)}")
    return i, n


def shard(points: list, i: int, n: int) -> list:
    """The i-th of n interleaved shares (1-based): every point is in exactly one share."""
    return points[i - 1::n]


def sidecar(exp, session_or_task) -> dict:
    """What the results' sidecar records besides the versions: the config, model spec, data source
    and every index of S, A and E (with ``attack_resample``, each point's own A)."""
    from tfflat.data import draw_indices
    from tfflat.experiments.session import attack_indices

    task = getattr(session_or_task, "task", session_or_task)
    d = exp.data
    spec = exp.model_spec(task.input_shape)
    meta = {"experiment": exp.kind, "config": exp.to_dict(), "config_file": exp.path, "model_spec": spec,
            "source": task.source, "attack_resample": d.attack_resample,
            "indices": draw_indices(task, d.train_size, max(d.attack_sizes), d.test_size, d.data_seed)}
    if d.attack_resample:
        meta["attack_indices"] = {f"A{a}/seed{s}": attack_indices(exp, task, a, s)["A"]["indices"]
                                  for a in d.attack_sizes for s in exp.train.seeds}
        meta["indices_note"] = ("S and E never change; each (|A|, seed) point trains on its own A, "
                                "attack_indices['A<|A|>/seed<seed>'] (indices into pool indices.A.pool)")
    else:
        meta["indices_note"] = "A for a given |A| is the first |A| entries of indices.A (S and E never change)"
    return meta


def point_keys(exp, point: Point) -> list[str]:
    return [point.key(o) for o in exp.train.overtrain_epochs]


def todo(exp, points: list[Point], done: set[str]) -> list[Point]:
    return [p for p in points if not all(k in done for k in point_keys(exp, p))]


def base_record(exp, point: Point) -> dict:
    """The fields every record of ``point`` starts with (what identifies its experiment and point)."""
    return {"experiment": exp.name, "quick": exp.quick, "dataset": exp.data.dataset, "model": exp.model.name,
            "optimizer": point.optimizer, "attack_size": point.attack_size, "seed": point.seed,
            "train_size": exp.data.train_size, "test_size": exp.data.test_size,
            "attack_resample": exp.data.attack_resample}


def tensorboard_run(point: Point, overtrain: int) -> str:
    """A sweep's TensorBoard run: one curve against |A| per (optimizer, seed, overtraining epoch)."""
    return f"{point.optimizer}_seed{point.seed}" + (f"_over{overtrain}" if overtrain else "")


def run_point(session, point: Point, done: set[str], out, tensorboard=None) -> list[dict]:
    """Train one point and append a record for each of its overtraining epochs not yet in ``done``
    (and, with a :class:`~tfflat.experiments.tensorboard.ScalarWriter`, write its scalars at step |A|)."""
    from tfflat.experiments.session import reached_zero_error

    exp = session.exp
    wanted = {o: point.key(o) for o in exp.train.overtrain_epochs if point.key(o) not in done}
    if not wanted:
        return []
    last = max(wanted)
    state = {"zero": None, "measure_seconds": 0.0}
    written = []

    def write(rec):
        runs.append_jsonl(out, rec)
        done.add(rec["key"])
        written.append(rec)
        if tensorboard is not None and rec["status"] == "ok":
            from tfflat.experiments.tensorboard import tags

            tensorboard.write(tensorboard_run(point, rec["overtrain"]), point.attack_size, tags(rec))

    def callback(epoch, rec, model):
        if state["zero"] is None and reached_zero_error(rec, exp.train.stop_on):
            state["zero"] = epoch
        if state["zero"] is None:
            return False
        over = epoch - state["zero"]
        if over in wanted:
            before, t0 = state["measure_seconds"], time.perf_counter()
            common, sharp = session.measure(model, seed=point.seed)
            m = {**common, **(sharp[0] if sharp else {})}
            dt = time.perf_counter() - t0
            state["measure_seconds"] += dt
            train_s = rec["seconds"] - before
            write({"key": wanted[over], **base_record(exp, point), "status": "ok", "overtrain": over,
                   "epoch": epoch, "zero_error_epoch": state["zero"], **_accuracies(rec), **m,
                   "seconds_train": train_s, "seconds": train_s + dt})
        return over >= last

    t0 = time.perf_counter()
    _, result = session.train(point.optimizer, point.attack_size, point.seed, overtrain=last, callback=callback)
    # no zero error within max_epochs, or max_epochs reached before an overtraining epoch: recorded, not retried
    status = "no_zero_error" if result.zero_error_epoch is None else "max_epochs_reached"
    for over, key in wanted.items():
        if key not in done:
            seconds = time.perf_counter() - t0 - state["measure_seconds"]
            write({"key": key, **base_record(exp, point), "status": status, "overtrain": over,
                   "epoch": result.epochs, "zero_error_epoch": result.zero_error_epoch, **_accuracies(result.final),
                   "seconds_train": seconds, "seconds": seconds})
    return written


# ---------------------------------------------------------------- points trained as stacks
def stackable(exp, optimizer: str) -> bool:
    """Whether the points of ``optimizer`` may train as stacks (:mod:`tfflat.training.batched`): an FCN
    under plain minibatch SGD (no momentum), one A for all seeds (checked again on the built model by
    :meth:`~tfflat.experiments.session.Session.stack_rate`)."""
    from tfflat.training import optimizers

    if exp.data.attack_resample or not exp.model.name.startswith("fcn") or optimizer != "sgd":
        return False
    params = optimizers.resolve(optimizer, exp.train.learning_rate, **exp.train.opt_args)
    return set(params) - {"learning_rate", "momentum", "nesterov"} == set() and not params.get("momentum") \
        and not params.get("nesterov")


def batches(exp, points: list[Point], pieces: int = 1, stack: bool = True) -> list[list[Point]]:
    """The units of work of a sweep: the points of one (optimizer, seed) that may train as a stack
    (:func:`stackable`; they share S, E and, for the sharpness, the minibatch order), split into
    ``pieces`` parts of their |A|; every other point (all, with ``stack=False``) alone. In the order
    of ``points``."""
    out, groups = [], {}
    for p in points:
        if stack and stackable(exp, p.optimizer):
            if (p.optimizer, p.seed) not in groups:
                groups[(p.optimizer, p.seed)] = [[] for _ in range(max(1, pieces))]
                out.extend(groups[(p.optimizer, p.seed)])
            parts = groups[(p.optimizer, p.seed)]
            min(parts, key=len).append(p)
        else:
            out.append([p])
    return [b for b in out if b]


def run_batch(session, points: list[Point], done: set[str], out, tensorboard=None) -> list[dict]:
    """Run points of one optimizer as one stack (:meth:`Session.train_stack`, then the sharpness of
    the networks of each seed side by side, :meth:`Session.sharpness_stack`) and append each point's
    records as :func:`run_point` would (equal to float rounding); a single point, or points that do
    not qualify (:meth:`Session.stack_rate`), run one by one through :func:`run_point`."""
    exp = session.exp
    todo_points = [p for p in points if any(k not in done for k in point_keys(exp, p))]
    if len(todo_points) < 2 or session.stack_rate(todo_points[0].optimizer) is None:
        return [r for p in todo_points for r in run_point(session, p, done, out, tensorboard)]
    offsets = sorted(exp.train.overtrain_epochs)
    trained = session.train_stack(todo_points[0].optimizer, [(p.attack_size, p.seed) for p in todo_points], offsets)
    written = []

    def write(point, rec):
        runs.append_jsonl(out, rec)
        done.add(rec["key"])
        written.append(rec)
        if tensorboard is not None and rec["status"] == "ok":
            from tfflat.experiments.tensorboard import tags

            tensorboard.write(tensorboard_run(point, rec["overtrain"]), point.attack_size, tags(rec))

    for over in offsets:
        reached = [(p, r) for p, r in zip(todo_points, trained) if p.key(over) not in done and over in r.snapshots]
        sharp = session.sharpness_stack([r.snapshots[over].weights for _, r in reached], [p.seed for p, _ in reached])
        for i, (p, r) in enumerate(reached):
            snap = r.snapshots[over]
            t0 = time.perf_counter()
            common, fields = session.measure(session.holding(snap.weights), seed=p.seed,
                                             sharpness=None if sharp is None else sharp[i])
            dt = time.perf_counter() - t0 + (fields[0]["seconds_sharpness"] if sharp is not None and fields else 0.0)
            train_s = snap.record["seconds"]
            write(p, {"key": p.key(over), **base_record(exp, p), "status": "ok", "overtrain": over, "epoch": snap.epoch,
                      "zero_error_epoch": r.zero_error_epoch, **_accuracies(snap.record),
                      **common, **(fields[0] if fields else {}), "seconds_train": train_s, "seconds": train_s + dt})
    for p, r in zip(todo_points, trained):
        # no zero error within max_epochs, or max_epochs reached before an overtraining epoch: recorded, not retried
        status = "no_zero_error" if r.zero_error_epoch is None else "max_epochs_reached"
        for over in offsets:
            if p.key(over) not in done:
                write(p, {"key": p.key(over), **base_record(exp, p), "status": status, "overtrain": over,
                          "epoch": r.epochs, "zero_error_epoch": r.zero_error_epoch, **_accuracies(r.final.record),
                          "seconds_train": r.seconds, "seconds": r.seconds})
    return written


def _accuracies(rec: dict) -> dict:
    acc_e = rec["acc_E"]
    return {"train_accuracy": rec["acc_S"], "attack_accuracy": rec["acc_A"], "test_accuracy": acc_e,
            "generalization_error": None if acc_e is None else 1.0 - acc_e, "train_loss": rec["loss_S"],
            "gradient_evaluations": rec["gradient_evaluations"]}


# ---------------------------------------------------------------- the whole sweep
def run(exp, out, shard_spec: tuple[int, int] = (1, 1), workers: int = 1, task=None,
        progress: Callable[[int, int, str], None] | None = None, tensorboard: str | None = None,
        devices=None, stack: bool = True) -> dict:
    """Run (or resume) the sweep's share ``shard_spec`` with ``workers`` processes; append to ``out``.
    ``devices``: the GPUs the workers are pinned to (a :mod:`tfflat.devices` spec; default all visible).
    ``stack``: train and measure the points of a plain-SGD FCN sweep that share a seed as stacks
    (:func:`batches`, :func:`run_batch`: the same records to float rounding, several times faster);
    ``False``: every point alone (:func:`run_point`).

    With ``tensorboard`` (a folder), every record made now is also written as TensorBoard scalars
    (:mod:`tfflat.experiments.tensorboard`; each worker writes its own event files).

    Returns a summary: points in the share, points run now, points skipped (already done), points
    being run ``elsewhere`` (claimed by another process sweeping into ``out``: :class:`Claims`),
    records written, seconds.
    """
    from tfflat.experiments.config import check_data

    t0 = time.perf_counter()
    if tensorboard:
        runs.ensure_dir(tensorboard, "tensorboard")
    task = check_data(exp, task)
    done = results.open_results(exp, out, sidecar(exp, task))
    points = grid(exp)
    share = shard(points, *shard_spec)
    with Claims(out) as claims:
        return _run_claimed(exp, out, task, points, share, done, claims, workers, progress, tensorboard, devices,
                            stack, t0)


class Claims:
    """Points of a sweep claimed by this process, so that sweeps started at the same time into the same
    results file (twice by mistake, or shards on one machine) never compute a point twice.

    A claim is a POSIX record lock (``fcntl.lockf``) on byte i of ``OUT.claims`` for grid point i,
    taken without waiting and held until the sweep ends: the kernel releases it when the process
    ends however it ends (kill -9 included), so there is nothing stale to clean up.
    """

    def __init__(self, out):
        self.path = Path(f"{out}.claims")
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self

    def take(self, index: int) -> bool:
        """Claim grid point ``index``; False when another process holds it."""
        import fcntl

        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, index, os.SEEK_SET)
        except OSError:
            return False
        return True

    def __exit__(self, *exc):
        os.close(self.fd)            # closing releases every lock of this process on the file
        self.fd = None


def _run_claimed(exp, out, task, points, share, done, claims, workers, progress, tensorboard, devices, stack,
                 t0) -> dict:
    index = {p: i for i, p in enumerate(points)}
    pending = todo(exp, share, done)
    others = [p for p in pending if not claims.take(index[p])]
    done = results.finished_keys(out)         # what finished while we claimed is not run again
    pending = [p for p in todo(exp, share, done) if p not in others]
    summary = {"points": len(share), "skipped": len(share) - len(pending) - len(others), "run": len(pending),
               "elsewhere": len(others), "out": str(out), "workers": 1}
    if progress:
        progress(summary["skipped"], len(share), "")
    if pending:
        workers = max(1, min(int(workers), len(pending)))
        summary["workers"] = workers
        if workers == 1:
            from tfflat.experiments.session import Session

            from tfflat.experiments.tensorboard import ScalarWriter

            session = Session(exp, task, kernel_cache=results.kernel_cache(out))
            n = summary["skipped"]
            writer = ScalarWriter(tensorboard) if tensorboard else None
            try:
                for batch in batches(exp, pending, stack=stack):
                    run_batch(session, batch, done, out, writer)
                    n += len(batch)
                    if progress:
                        p = batch[-1]
                        progress(n, len(share), f"|A|={p.attack_size} seed {p.seed} {p.optimizer}"
                                 + (f" (a stack of {len(batch)})" if len(batch) > 1 else ""))
            finally:
                if writer is not None:
                    writer.close()
        else:
            if exp.prior.enabled:     # into the cache once, so that the workers only load it
                from tfflat.experiments.session import Session

                Session(exp, task, kernel_cache=results.kernel_cache(out)).kernel()
            summary["pinned"] = _run_workers(exp, out, pending, workers, summary["skipped"], len(share), progress,
                                             tensorboard, devices, stack)
    summary["records"] = len(results.finished_keys(out))
    summary["seconds"] = time.perf_counter() - t0
    return summary


# ---------------------------------------------------------------- worker processes
_MSG = "@@tfflat-sweep "


def _die_with_parent() -> None:
    """Linux: ask the kernel to kill this worker when the parent sweep dies (even by kill -9)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; workers also stop at EOF on stdin
        pass


def _run_workers(exp, out, pending: list[Point], workers: int, start: int, total: int, progress,
                 tensorboard: str | None = None, devices=None, stack: bool = True) -> list:
    """Feed ``pending`` points to ``workers`` child processes, preferring a child's last (optimizer, |A|)
    so each compiles few training steps. Threads are split evenly between the children; with GPUs each
    child is pinned to one (:func:`tfflat.devices.worker_env`). Returns each child's CUDA_VISIBLE_DEVICES."""
    from tfflat import devices as dev

    cores = os.cpu_count() or 1
    threads = str(max(1, cores // workers))
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS=threads,
               OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads, TF_CPP_MIN_LOG_LEVEL="3")
    pins = [dev.worker_env(i, workers, devices) for i in range(workers)]
    cmd = [sys.executable, "-m", "tfflat.experiments.sweep", str(out), str(exp.path or ""), str(tensorboard or "")]
    logs = [tempfile.TemporaryFile("w+") for _ in range(workers)]   # TensorFlow's start-up chatter, errors
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env={**env, **pin},
                              text=True, bufsize=1,
                              preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
             for log, pin in zip(logs, pins)]
    queue = batches(exp, pending, pieces=workers, stack=stack)
    last: dict[int, tuple] = {}
    finished = start

    def give(i, proc) -> bool:
        if not queue:
            proc.stdin.close()
            return False
        prefer = last.get(i)
        j = next((k for k, b in enumerate(queue) if (b[0].optimizer, b[0].attack_size) == prefer), 0)
        batch = queue.pop(j)
        last[i] = (batch[0].optimizer, batch[0].attack_size)
        proc.stdin.write(json.dumps([[p.optimizer, p.attack_size, p.seed] for p in batch]) + "\n")
        proc.stdin.flush()
        return True

    import selectors

    sel = selectors.DefaultSelector()
    try:
        for i, proc in enumerate(procs):
            sel.register(proc.stdout, selectors.EVENT_READ, i)
        for i, proc in enumerate(procs):
            give(i, proc)
        alive = len(procs)
        while alive:
            for key, _ in sel.select():
                i, proc = key.data, procs[key.data]
                line = proc.stdout.readline()
                if not line:                       # the worker exited
                    sel.unregister(proc.stdout)
                    alive -= 1
                    if proc.wait() != 0:
                        logs[i].seek(0)
                        tail = [ln for ln in logs[i].read().splitlines() if ln.strip()][-15:]
                        if proc.returncode == 2 and tail and tail[-1].startswith("error: "):
                            raise UserError(tail[-1][len("error: "):])
                        raise RuntimeError(f"sweep worker {i + 1} failed (exit {proc.returncode}); finished points "
                                           f"are in {out}, rerun to resume. Its last messages:\n" + "\n".join(tail))
                    continue
                if not line.startswith(_MSG):
                    continue
                msg = json.loads(line[len(_MSG):])
                if "done" in msg:
                    finished += len(msg["done"])
                    if progress:
                        o, a, s = msg["done"][-1]
                        progress(finished, total, f"|A|={a} seed {s} {o}")
                    give(i, proc)
    finally:
        for proc, log in zip(procs, logs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return [p.get("CUDA_VISIBLE_DEVICES") for p in pins]


def _worker(out: str, config_path: str | None, tensorboard: str | None = None) -> int:
    """Child process: read points (JSON lines) from stdin, run them, report each on stdout."""
    from tfflat.experiments.config import Experiment
    from tfflat.experiments.session import Session
    from tfflat.experiments.tensorboard import ScalarWriter

    meta = results.read_meta(out)
    exp = Experiment.from_dict(meta["config"], path=config_path)
    session = None
    done = results.finished_keys(out)
    writer = ScalarWriter(tensorboard) if tensorboard else None
    try:
        for line in sys.stdin:
            batch = json.loads(line)
            if session is None:
                session = Session(exp, kernel_cache=results.kernel_cache(out))
            run_batch(session, [Point(o, int(a), int(s)) for o, a, s in batch], done, out, writer)
            sys.stdout.write(_MSG + json.dumps({"done": batch}) + "\n")
            sys.stdout.flush()
    finally:
        if writer is not None:
            writer.close()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        args = sys.argv[1:] + ["", ""]
        sys.exit(_worker(args[0], args[1] or None, args[2] or None))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
