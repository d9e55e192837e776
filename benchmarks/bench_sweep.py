"""The whole Fig. 3(a) MNIST sweep — 55 points of train to zero error + sharpness + log P(f) — point by
point (``tfflat sweep``) versus all points as stacks (the batched API), with equality of the points.

Sizes of ``configs/fig3_mnist_sgd.toml``: |S| = 500, |E| = 1000, |A| = 0, 50, …, 500, 5 seeds, SGD lr 0.01
batch 32 to the zero-error epoch; sharpness Table 1 (ζ 1e-4, 1600 steps, full-S loss every step);
probit EP on the one NNGP kernel of S + E.

* **per point**: one fresh ``tfflat sweep configs/fig3_mnist_sgd.toml --workers W`` process (what users
  run today), wall time from launch to exit.
* **stacked**: W fresh worker processes (one thread each), each taking every W-th attack size and
  running :func:`tfflat.training.batched.train_fcns` on all its points at once, then
  :func:`tfflat.flatness.batched.sharpness_fcns` on the zero-error networks (grouped by seed), then
  log P(f) point by point with the session's kernel; wall time from launch to the last exit. Per
  stage (summed over workers): start-up (imports, data, kernel), train, sharpness, prior, each set
  against its arithmetic at this machine's compiled float32 matmul rate.
* **equality**: per point, zero-error epoch, test accuracy and training loss must be identical (the
  stacked trainer equals the single-network one bit for bit); sharpness and log P(f) agree to float32
  rounding (the printed maximum relative differences).

Run (``--quick``: the config's small sizes, a smoke test):

    python benchmarks/bench_sweep.py [--data-dir ../shared/data] [--workers 2] [--quick] [--skip-per-point]
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


def run_per_point(args) -> dict:
    """The sweep as users run it today: one fresh ``tfflat sweep`` process."""
    out = Path(tempfile.mkdtemp()) / "fig3.jsonl"
    cmd = [sys.executable, "-m", "tfflat_cli.main", "sweep", str(CONFIG), "--data-dir", args.data_dir,
           "--out", str(out), "--workers", str(args.workers), "--json"] + (["--quick"] if args.quick else [])
    t0, c0 = time.perf_counter(), _child_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - c0
    if done.returncode != 0:
        sys.exit(f"tfflat sweep failed:\n{done.stderr[-3000:]}")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    stages = {k: float(np.sum([r.get(k, 0.0) for r in recs])) for k in ("seconds_train", "seconds_sharpness",
                                                                         "seconds_prior")}
    return {"wall": wall, "cpu": cpu, "records": recs, "stages": stages}


def _child_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes (and their waited-for children) so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_stacked(args) -> dict:
    """W fresh worker processes, each running its share of the points through the batched API."""
    tmp = Path(tempfile.mkdtemp())
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    t0, c0 = time.perf_counter(), _child_cpu()
    procs = [subprocess.Popen([sys.executable, __file__, "--child", f"{i}/{args.workers}", "--data-dir", args.data_dir,
                               "--out", str(tmp / f"w{i}.json")] + (["--quick"] if args.quick else []), env=env,
                              stderr=subprocess.PIPE, text=True) for i in range(args.workers)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"stacked worker failed:\n{err[-3000:]}")
    wall, cpu = time.perf_counter() - t0, _child_cpu() - c0
    shares = [json.loads((tmp / f"w{i}.json").read_text()) for i in range(args.workers)]
    return {"wall": wall, "cpu": cpu, "records": [r for s in shares for r in s["records"]],
            "stages": {k: float(sum(s["stages"][k] for s in shares)) for k in shares[0]["stages"]},
            "cpu_stages": {k: float(sum(s["cpu_stages"][k] for s in shares)) for k in shares[0]["cpu_stages"]},
            "work": {k: float(sum(s["work"][k] for s in shares)) for k in shares[0]["work"]}}


def child(share: str, data_dir: str, quick: bool, out: str) -> None:
    """One worker of the stacked sweep: every n-th attack size, all seeds (see the module doc)."""
    t_start, c_start = time.perf_counter(), time.process_time()
    from tfflat.experiments import config
    from tfflat.experiments.session import Session, function_hash
    from tfflat.flatness import batched as fbatched
    from tfflat.prior import log_prior
    from tfflat.training import batched

    i, n = (int(v) for v in share.split("/"))
    exp = config.load(CONFIG, quick=quick, data_dir=data_dir)
    session = Session(exp)
    kernel = session.kernel()
    d, t, sh, pr = exp.data, exp.train, exp.sharpness, exp.prior
    sizes = sorted(d["attack_sizes"])[i::n]
    members = [(a, s) for a in sizes for s in t["seeds"]]
    splits = session.splits(max(sizes))
    stages, cpu = {"startup": time.perf_counter() - t_start}, {"startup": time.process_time() - c_start}

    t0, c0 = time.perf_counter(), time.process_time()
    trained = batched.train_fcns(session.spec, splits, members, learning_rate=t["learning_rate"],
                                 batch_size=t["batch_size"], max_epochs=t["max_epochs"], stop_on=t["stop_on"])
    stages["train"], cpu["train"] = time.perf_counter() - t0, time.process_time() - c0
    ok = [r for r in trained if 0 in r.snapshots]
    t0, c0 = time.perf_counter(), time.process_time()
    sharp = fbatched.sharpness_fcns([r.snapshots[0].weights for r in ok], splits.x_train, splits.y_train,
                                    zeta=sh["zeta"][0], lr=sh["lr"], epochs=sh["epochs"], batch_size=sh["batch_size"],
                                    seeds=[r.seed for r in ok])
    stages["sharpness"], cpu["sharpness"] = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    records, ns = [], len(splits.y_train)
    for r, s in zip(ok, sharp):
        snap = r.snapshots[0]
        z = snap.logits
        f = (np.concatenate([z[:ns], z[ns + r.attack_size:]]) >= 0).astype(np.int64)
        p = log_prior(kernel, f, pr["likelihood"], train_size=ns, delta=pr["delta"], check=False)
        records.append({"attack_size": r.attack_size, "seed": r.seed, "zero_error_epoch": r.zero_error_epoch,
                        "test_accuracy": snap.record["acc_E"], "train_loss": snap.record["loss_S"],
                        "sharpness": s.sharpness, "log10_prior": p["log10_prior"], "function_hash": function_hash(f)})
    stages["prior"], cpu["prior"] = time.perf_counter() - t0, time.process_time() - c0
    steps = sum(r.gradient_evaluations for r in trained)
    epochs = sum(r.epochs for r in trained)
    d_in, widths = int(np.prod(session.spec["input_shape"])), session.spec["widths"] + [1]
    fan = [d_in] + widths[:-1]
    fwd = 2 * sum(a * b for a, b in zip(fan, widths))                 # FLOPs per example, forward
    bs = t["batch_size"]
    kept = int(np.any(splits.x_train.reshape(ns, -1) != 0, axis=0).sum())       # the ascent drops zero inputs
    fwd_s = fwd - 2 * (d_in - kept) * widths[0]
    work = {"train": steps * bs * (3 * fwd - 2 * d_in * widths[0]) + epochs * ns * fwd,
            "sharpness": len(ok) * sh["epochs"] * -(-ns // bs) * (ns * fwd_s + 2 * bs * kept * widths[0])}
    Path(out).write_text(json.dumps({"records": records, "stages": stages, "cpu_stages": cpu, "work": work}))


def matmul_rate() -> float:
    """Compiled float32 GFLOP per CPU-second on (500 × 784) @ (784 × 40), one thread (as the workers run)."""
    code = ("import sys, numpy as np; sys.path.insert(0, %r); from bench_sharpness import matmul_rate; "
            "print(matmul_rate(np.ones((500, 784), np.float32), 40))" % str(HERE))
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return float(done.stdout.split()[-1])


def compare(per_point: list, stacked: list) -> str:
    key = lambda r: (r["attack_size"], r["seed"])                   # noqa: E731
    old = {key(r): r for r in per_point if r.get("status", "ok") == "ok"}
    new = {key(r): r for r in stacked}
    common = sorted(set(old) & set(new))
    same = sum(all(old[k][f] == new[k][f] for f in ("zero_error_epoch", "test_accuracy", "train_loss",
                                                     "function_hash")) for k in common)
    rel = lambda f: max(abs(new[k][f] - old[k][f]) / max(abs(old[k][f]), 1e-30) for k in common)   # noqa: E731
    return (f"{len(common)} common points: {same} with identical zero-error epoch, test accuracy, training loss and "
            f"function on S + E; max relative difference: sharpness {rel('sharpness'):.1e}, "
            f"log10 P(f) {rel('log10_prior'):.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the config's [quick] sizes (a smoke test)")
    ap.add_argument("--skip-per-point", action="store_true", help="time only the stacked sweep")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.data_dir, args.quick, args.out)
        return

    print(f"Fig. 3(a) sweep{' (--quick)' if args.quick else ''}, {args.workers} workers, {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    st = run_stacked(args)
    n = len(st["records"])
    s = st["stages"]
    rate = matmul_rate()
    c = st["cpu_stages"]
    print(f"stacked: {n} points in {st['wall']:.1f} s wall, {st['cpu']:.1f} CPU-s; summed over workers, wall (CPU): "
          f"start-up {s['startup']:.1f} ({c['startup']:.1f}) s, train {s['train']:.1f} ({c['train']:.1f}) s, "
          f"sharpness {s['sharpness']:.1f} ({c['sharpness']:.1f}) s, prior {s['prior']:.1f} ({c['prior']:.1f}) s",
          flush=True)
    print(f"  their arithmetic at {rate:.0f} GFLOP per CPU-s (compiled (500x784)@(784x40), one thread): train "
          f"{st['work']['train'] / rate / 1e9:.1f} CPU-s, sharpness {st['work']['sharpness'] / rate / 1e9:.1f} CPU-s "
          f"(goal: 55 points <= 30 s wall on 2 cores)", flush=True)
    if args.skip_per_point:
        return
    pp = run_per_point(args)
    p = pp["stages"]
    print(f"per point (tfflat sweep --workers {args.workers}): {len(pp['records'])} points in {pp['wall']:.1f} s wall, "
          f"{pp['cpu']:.1f} CPU-s; "
          f"summed: train {p['seconds_train']:.1f} s, sharpness {p['seconds_sharpness']:.1f} s, prior "
          f"{p['seconds_prior']:.1f} s", flush=True)
    print(f"speed-up of the stacked sweep: wall {pp['wall'] / st['wall']:.2f}x, CPU {pp['cpu'] / st['cpu']:.2f}x; "
          + compare(pp["records"], st["records"]))
    print(f"load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
