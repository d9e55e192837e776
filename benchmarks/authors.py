"""Run the authors' published FCN script (sofuncheung/ICML_2021 ``FCN/sharpness-generalization.py``)
unchanged, on the MNIST arrays tfflat uses, and time its training epochs and sharpness ascents.

The script is TensorFlow 1.15 code (``tf.placeholder``, ``tf.Session``, ``tf.train.GradientDescentOptimizer``).
TF 1.15 does not install on Python ≥ 3.8, so the launcher runs it on this TensorFlow's TF1 API: before the
script's ``import tensorflow as tf`` it maps ``tensorflow`` to ``tensorflow.compat.v1`` with v2 behaviour
disabled (graph mode and sessions, exactly the published pattern). Nothing in the script is edited:

* it is read from the mirror (``git show HEAD:FCN/sharpness-generalization.py``) into a temporary folder
  ``T/FCN/`` and run there with ``runpy`` as ``__main__`` with ``sys.argv = [script, |A|]``;
* ``T/data/`` holds the files it loads, in its layout: ``train_x_20000.npy`` (float32 rows S then A,
  flattened 784 pixels / 255), ``train_y_20000.npy`` (one-hot float64; the script flips A's labels
  itself), ``test_x_1000.npy``, ``test_y_1000.npy`` (E). Only the first |S| + |A| training rows are
  written (the script only slices them); the images are tfflat's S, A and E of the same seed;
* the timing is taken by wrapping ``Session.run`` (one ``perf_counter`` and one ``process_time`` pair per
  call, ~1 µs against the ~100 µs of a call; CPU time counts all of TF's threads) and classifying each call by what it fetches: the training op, the accuracy/cost
  evaluations after each epoch, the ascent op, the parameter read-back, the six assigns, the full-S
  loss after every ascent step;
* the script trains and measures 5 networks (``sample_times=5``); the launcher stops it (by an
  exception from ``print`` after the ``sample k`` line) once ``--samples`` networks are done.

Used by ``bench_training.py``, ``bench_sharpness.py`` and ``bench_sweep.py``; by itself::

    python benchmarks/authors.py [--attack-size 500] [--samples 1] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MIRROR = "/work/.mirror/sofuncheung+ICML_2021/repo"
SCRIPT = "FCN/sharpness-generalization.py"
HERE = Path(__file__).resolve().parent


def script_text(repo: str = MIRROR) -> str:
    """The published script, from a bare mirror (``git show``) or a checkout (a plain file)."""
    path = Path(repo) / SCRIPT
    if path.is_file():
        return path.read_text()
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{SCRIPT}"], check=True, capture_output=True,
                          text=True).stdout


def prepare(workdir: Path, splits, repo: str = MIRROR) -> Path:
    """Lay out ``workdir/FCN/<script>`` and ``workdir/data/*.npy`` (S, A, E of ``splits``); return the script."""
    import numpy as np

    (workdir / "FCN").mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    script = workdir / SCRIPT
    script.write_text(script_text(repo))

    def onehot(y01):            # the script maps digit ≥ 5 to 1: use digit 5 for label 1, 0 for label 0
        out = np.zeros((len(y01), 10))
        out[np.arange(len(y01)), 5 * np.asarray(y01, int)] = 1.0
        return out

    flat = lambda x: np.asarray(x, np.float32).reshape(len(x), -1)   # noqa: E731
    np.save(workdir / "data" / "train_x_20000.npy", flat(np.concatenate([splits.x_train, splits.x_attack])))
    np.save(workdir / "data" / "train_y_20000.npy",
            onehot(np.concatenate([splits.y_train, 1 - splits.y_attack])))   # A un-flipped: the script flips it
    np.save(workdir / "data" / "test_x_1000.npy", flat(splits.x_test))
    np.save(workdir / "data" / "test_y_1000.npy", onehot(splits.y_test))
    return script


def run(splits, samples: int = 1, repo: str = MIRROR, threads: int | None = None, timeout: float = 3600) -> dict:
    """Run the published script in a fresh process on ``splits`` (|A| = len(splits.y_attack)) until
    ``samples`` networks are trained and measured; return :func:`summarise`'s timings."""
    with tempfile.TemporaryDirectory(prefix="authors_fcn_") as tmp:
        tmp = Path(tmp)
        script = prepare(tmp, splits, repo)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        if threads:
            env.update(TF_NUM_INTRAOP_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        out = tmp / "timings.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--launch", str(script), str(len(splits.y_attack)),
               str(samples), str(out)]
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"the authors' script failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


# ------------------------------------------------------------------ inside the launched process
class _Stop(Exception):
    pass


def _launch(script: str, attack_size: str, samples: int, out: str) -> None:
    import builtins
    import runpy
    import time

    import tensorflow as real_tf

    v1 = real_tf.compat.v1
    v1.disable_v2_behavior()
    sys.modules["tensorflow"] = v1           # the script's `import tensorflow as tf` gets the TF1 API

    calls = []                               # (start, end, what, cpu at start, cpu at end)
    base_run = v1.Session.run

    def what(fetches):
        if isinstance(fetches, list):
            if len(fetches) == 6:
                return "read_params"
            return "list"
        name = getattr(fetches, "name", "")
        typ = getattr(getattr(fetches, "op", fetches), "type", "")
        if name.startswith("GradientDescent_1"):
            return "ascent_step"
        if name.startswith("GradientDescent"):
            return "train_step"
        if typ in ("Assign", "AssignVariableOp"):
            return "assign"
        if name.startswith("Neg"):
            return "ascent_loss"
        if name.startswith("Mean_"):          # accuracy = reduce_mean(cast(...)): the last Mean
            return "eval"
        if name.startswith("Mean"):
            return "cost"
        return name

    def timed_run(self, fetches, *a, **k):
        t0, c0 = time.perf_counter(), time.process_time()
        r = base_run(self, fetches, *a, **k)
        calls.append((t0, time.perf_counter(), what(fetches), c0, time.process_time()))
        return r

    v1.Session.run = timed_run
    real_print = builtins.print
    state = {"done": 0, "log": []}

    def hook(*args, **kw):
        text = " ".join(str(a) for a in args)
        state["log"].append(text)
        real_print(*args, **kw, file=sys.stderr)
        if text.startswith("sample "):
            state["done"] += 1
            if state["done"] >= samples:
                raise _Stop

    sys.argv = [script, str(attack_size)]
    t0 = time.perf_counter()
    try:
        runpy.run_path(script, init_globals={"print": hook}, run_name="__main__")
    except _Stop:
        pass
    wall = time.perf_counter() - t0
    Path(out).write_text(json.dumps({"calls": calls, "log": state["log"], "wall": wall}))


# ------------------------------------------------------------------ reading the timings
def summarise(raw: dict) -> dict:
    """Per network: epochs, seconds per epoch (first epoch apart: it includes TF's one-off graph set-up),
    ascent seconds (1600 steps), and a breakdown of the session calls of one ascent step."""
    calls = raw["calls"]
    nets, cur, prev = [], None, None
    for c in calls:
        t0, t1, kind, c0, c1 = c
        kind, prev = ("epoch_cost" if kind == "cost" and prev == "eval" else kind), kind
        if kind == "train_step" and (cur is None or cur["phase"] == "ascent"):
            cur = {"phase": "train", "epoch_ends": [], "cpu_ends": [], "train_start": t0, "ascent": [], "kinds": {},
                   "train_kinds": {}}
            nets.append(cur)
        if cur is None:
            continue
        if kind == "ascent_step" and cur["phase"] == "train":
            cur["phase"] = "ascent"
            cur["ascent_start"], cur["ascent_cpu_start"] = t0, c0
        if cur["phase"] == "train":
            cur["train_kinds"].setdefault(kind, [0, 0.0])
            cur["train_kinds"][kind][0] += 1
            cur["train_kinds"][kind][1] += t1 - t0
            if kind == "epoch_cost":
                cur["epoch_ends"].append(t1)
                cur["cpu_ends"].append(c1)
        if cur["phase"] == "ascent":
            cur["ascent_end"], cur["ascent_cpu_end"] = t1, c1
            cur["kinds"].setdefault(kind, [0, 0.0])
            cur["kinds"][kind][0] += 1
            cur["kinds"][kind][1] += t1 - t0
            if kind == "ascent_step":
                cur["ascent"].append(t0)
    out = []
    for n in nets:
        ends = n["epoch_ends"]
        epochs = len(ends)
        rec = {"epochs": epochs, "first_epoch_s": ends[0] - n["train_start"] if ends else None,
               "ms_per_epoch": 1e3 * (ends[-1] - ends[0]) / (epochs - 1) if epochs > 1 else None,
               "cpu_ms_per_epoch": 1e3 * (n["cpu_ends"][-1] - n["cpu_ends"][0]) / (epochs - 1) if epochs > 1 else None,
               "calls_per_epoch": {k: v[0] / max(epochs, 1) for k, v in n["train_kinds"].items()},
               "ms_per_epoch_by_call": {k: 1e3 * v[1] / max(epochs, 1) for k, v in n["train_kinds"].items()}}
        if n["ascent"]:
            steps = len(n["ascent"])
            rec.update(ascent_steps=steps, ascent_s=n["ascent_end"] - n["ascent_start"],
                       ascent_cpu_s=n["ascent_cpu_end"] - n["ascent_cpu_start"],
                       calls_per_step={k: v[0] / steps for k, v in n["kinds"].items()},
                       ms_per_step_by_call={k: 1e3 * v[1] / steps for k, v in n["kinds"].items()})
        out.append(rec)
    return {"networks": out, "wall": raw["wall"]}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--launch":
        _launch(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--attack-size", type=int, default=500)
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--repo", default=MIRROR, help="the authors' repository (bare mirror or checkout)")
    args = ap.parse_args()
    from tfflat.data import load_task, make_splits

    splits = make_splits(load_task("mnist", args.data_dir), 500, args.attack_size, 1000, seed=0)
    print(json.dumps(summarise(run(splits, args.samples, args.repo)), indent=1))


if __name__ == "__main__":
    main()
