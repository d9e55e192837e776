"""The whole Fig. 3(a) MNIST sweep — 55 points of train to zero error + sharpness + log P(f) — as users
run it: ``tfflat sweep configs/fig3_mnist_sgd.toml`` (points of one seed trained and measured as stacks,
the default) versus ``tfflat sweep … --no-stack`` (point by point, the code before stacks), with
equality of the records.

Sizes of ``configs/fig3_mnist_sgd.toml``: |S| = 500, |E| = 1000, |A| = 0, 50, …, 500, 5 seeds, SGD lr 0.01
batch 32 to the zero-error epoch; sharpness Table 1 (ζ 1e-4, 1600 steps, full-S loss every step);
probit EP on the one NNGP kernel of S + E.

Each side is one fresh ``tfflat sweep --workers W`` process, wall time from launch to exit, CPU time of
it and its workers. Per stage the records' own seconds are summed (train, sharpness, prior; the rest of
the wall time is start-up, data, kernel and compilation). **Equality**: per point the zero-error epoch,
the accuracies and f on S + E (its hash) must be identical and log P(f) too; sharpness to float32
rounding (the printed maximum relative differences).

``--profile``: where the CPU time of the stacked sweep goes, in this process on one thread: start-up
(imports, data, the NNGP kernel), then for one seed's stack of 11 points the training
(:meth:`Session.train_stack`), the side-by-side ascents (:meth:`Session.sharpness_stack`) and the rest
of the measures (f on S + E, log P(f) by EP), each once cold (compilation included) and once warm;
scaled to the 5 seeds of the figure.

Run (``--quick``: the config's small sizes, a smoke test):

    python benchmarks/bench_sweep.py [--data-dir ../shared/data] [--workers 2] [--quick] [--profile]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = ROOT / "configs" / "fig3_mnist_sgd.toml"
STAGES = ("seconds_train", "seconds_sharpness", "seconds_prior")


def run_sweep(args, stack: bool) -> dict:
    """One fresh ``tfflat sweep`` process (``--stack`` or ``--no-stack``)."""
    out = Path(tempfile.mkdtemp()) / "fig3.jsonl"
    cmd = [sys.executable, "-m", "tfflat_cli.main", "sweep", str(CONFIG), "--data-dir", args.data_dir,
           "--out", str(out), "--workers", str(args.workers), "--json", "--stack" if stack else "--no-stack"] + (
        ["--quick"] if args.quick else [])
    t0, c0 = time.perf_counter(), _child_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if done.returncode != 0:
        sys.exit(f"tfflat sweep failed:\n{done.stderr[-3000:]}")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    stages = {k: float(np.sum([r.get(k, 0.0) for r in recs])) for k in STAGES}
    return {"wall": wall, "cpu": cpu, "records": recs, "stages": stages}


def _child_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes (and their waited-for children) so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def describe(name: str, r: dict, workers: int) -> str:
    s = r["stages"]
    rest = r["wall"] * workers - sum(s.values())
    return (f"{name}: {len(r['records'])} points in {r['wall']:.1f} s wall, {r['cpu']:.1f} CPU-s; summed over "
            f"points: train {s['seconds_train']:.1f} s, sharpness {s['seconds_sharpness']:.1f} s, prior "
            f"{s['seconds_prior']:.1f} s; the rest of {workers} x wall (start-up, data, kernel, compilation, "
            f"idle workers): {rest:.1f} s")


def profile(args) -> None:
    """CPU seconds per stage of one seed's stack, cold and warm (see the module docstring)."""
    c0 = time.process_time()
    from tfflat.experiments import config
    from tfflat.experiments.session import Session

    exp = config.load(CONFIG, quick=args.quick, data_dir=args.data_dir)
    session = Session(exp)
    session.kernel()
    startup = time.process_time() - c0
    seeds, sizes = exp.train.seeds, exp.data.attack_sizes
    rows = []
    for seed in seeds[:2]:
        members = [(a, seed) for a in sizes]
        c = time.process_time()
        trained = session.train_stack("sgd", members, [0])
        train = time.process_time() - c
        weights = [r.snapshots[0].weights for r in trained]
        c = time.process_time()
        sharp = session.sharpness_stack(weights, [seed] * len(weights))
        sharpness = time.process_time() - c
        c = time.process_time()
        for w, f in zip(weights, sharp):
            session.measure(session.holding(w), seed=seed, sharpness=f)
        rest = time.process_time() - c
        steps = sum(r.gradient_evaluations for r in trained)
        rows.append((train, sharpness, rest, steps))
        print(f"seed {seed} ({'cold' if len(rows) == 1 else 'warm'}), {len(members)} points: train {train:.1f} CPU-s "
              f"({steps} SGD steps, {1e6 * train / steps:.0f} µs/step), sharpness {sharpness:.1f} CPU-s "
              f"({1e3 * sharpness / len(members) / (exp.sharpness.epochs * -(-exp.data.train_size // exp.sharpness.batch_size)):.2f} ms/ascent step per network), "
              f"f + log P(f) {rest:.1f} CPU-s ({rest / len(members):.2f} s/point)", flush=True)
    warm = rows[-1]
    total = startup + sum(rows[0][:3]) + (len(seeds) - 1) * sum(warm[:3])
    print(f"start-up (imports, data, kernel) {startup:.1f} CPU-s; the {len(seeds) * len(sizes)}-point sweep ≈ "
          f"{total:.0f} CPU-s: train {rows[0][0] + (len(seeds) - 1) * warm[0]:.0f}, sharpness "
          f"{rows[0][1] + (len(seeds) - 1) * warm[1]:.0f}, f + log P(f) {rows[0][2] + (len(seeds) - 1) * warm[2]:.0f}, "
          f"start-up {startup:.0f} → ≥ {total / (os.cpu_count() or 1):.0f} s wall on {os.cpu_count()} idle cores "
          f"(+ one start-up per extra worker)", flush=True)


def compare(per_point: list, stacked: list) -> str:
    key = lambda r: r["key"]                                        # noqa: E731
    old = {key(r): r for r in per_point if r.get("status", "ok") == "ok"}
    new = {key(r): r for r in stacked if r.get("status", "ok") == "ok"}
    common = sorted(set(old) & set(new))
    same = sum(all(old[k][f] == new[k][f] for f in ("zero_error_epoch", "train_accuracy", "test_accuracy",
                                                     "function_hash", "log10_prior")) for k in common)
    fields = sum(old[k].keys() == new[k].keys() for k in common)
    rel = lambda f: max(abs(new[k][f] - old[k][f]) / max(abs(old[k][f]), 1e-30) for k in common)   # noqa: E731
    return (f"{len(common)} common points ({len(per_point)} and {len(stacked)} records): {same} with identical "
            f"zero-error epoch, accuracies, f on S + E and log10 P(f), {fields} with the same fields; max relative "
            f"difference: sharpness {rel('sharpness'):.1e}, corner sharpness {rel('corner_sharpness'):.1e}, "
            f"train loss {rel('train_loss'):.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the config's [quick] sizes (a smoke test)")
    ap.add_argument("--skip-per-point", action="store_true", help="time only the stacked sweep")
    ap.add_argument("--profile", action="store_true", help="CPU seconds per stage in this process (no sweeps)")
    args = ap.parse_args()
    if args.profile:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
        print(f"profile, load {os.getloadavg()[0]:.1f}", flush=True)
        profile(args)
        print(f"load now {os.getloadavg()[0]:.1f}")
        return

    print(f"Fig. 3(a) sweep{' (--quick)' if args.quick else ''}, {args.workers} workers, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    st = run_sweep(args, stack=True)
    print(describe(f"tfflat sweep (stacks) --workers {args.workers}", st, args.workers) +
          " (goal: 55 points <= 30 s wall idle)", flush=True)
    if args.skip_per_point:
        return
    print(f"load {os.getloadavg()[0]:.1f}", flush=True)
    pp = run_sweep(args, stack=False)
    print(describe(f"tfflat sweep --no-stack --workers {args.workers}", pp, args.workers), flush=True)
    print(f"speed-up of the stacks: wall {pp['wall'] / st['wall']:.2f}x, CPU {pp['cpu'] / st['cpu']:.2f}x; "
          + compare(pp["records"], st["records"]))
    print(f"load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
