"""Milliseconds per training epoch: the authors' published TF1 loop, run unchanged, versus tfflat.

Same arithmetic on both sides: FCN 784-40-40-1 on real MNIST, |S ∪ A| = 1000 (|S| = 500, |A| = 500,
the same images), batch 32, SGD lr 0.01, 32 minibatch steps per epoch (the last of 8 examples).

* **authors**: ``FCN/sharpness-generalization.py`` of sofuncheung/ICML_2021, unchanged, launched by
  ``benchmarks/authors.py`` (TF1 graph mode on ``tensorflow.compat.v1``): one ``session.run`` per
  minibatch, then the accuracy and the loss on S after every epoch (two more ``session.run``). Timed
  per epoch from its ``Session.run`` calls, the first epoch (TF's graph set-up) apart; it trains to
  zero error on S like the paper.
* **tfflat, one network**: :class:`tfflat.training.Trainer` as ``tfflat train`` runs it: one compiled
  call per epoch that also evaluates S, A *and* E (|E| = 1000) for the recorded history.
* **tfflat, a stack**: :func:`tfflat.training.batched.train_fcns` on ``--stack`` seeds at |A| = 500 to
  their zero-error epochs (what a sweep does): one compiled call per epoch for all networks, the
  stopping check on S only; time per network-epoch. Each network equals a one-network run bit for bit.
* **before**: the generic Keras epoch (the pre-change code path, kept for non-FCN models), for reference.

Wall and CPU seconds are both printed; on a busy machine the CPU-time ratio is the steadier one. Run:

    python benchmarks/bench_training.py [--data-dir ../shared/data] [--epochs 40] [--stack 5]
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--epochs", type=int, default=40, help="epochs timed for the one-network trainers")
    ap.add_argument("--stack", type=int, default=5, help="networks (seeds) in the stack")
    ap.add_argument("--repo", default=None, help="the authors' repository (default: the mirror)")
    args = ap.parse_args()

    import authors
    import tensorflow as tf

    from tfflat import models
    from tfflat.data import load_task, make_splits
    from tfflat.training import Trainer, batched, evaluate, optimizers
    from tfflat.training.loop import eval_inputs

    task = load_task("mnist", args.data_dir)
    splits = make_splits(task, 500, 500, 1000, seed=0)
    spec = models.model_spec("fcn", "mnist", task.input_shape)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; FCN 784-40-40-1, "
          f"|S ∪ A| = 1000, batch 32 (32 steps/epoch)", flush=True)

    raw, wall, cpu = timed(lambda: authors.run(splits, samples=1, **({"repo": args.repo} if args.repo else {})))
    a = authors.summarise(raw)["networks"][0]
    print(f"authors (TF1 graph, unchanged script): {a['ms_per_epoch']:.2f} ms/epoch wall, "
          f"{a['cpu_ms_per_epoch']:.2f} CPU-ms, over {a['epochs']} epochs (first epoch {a['first_epoch_s'] * 1e3:.0f} ms)",
          flush=True)

    def one_network(fast: bool):
        model = models.build(spec, seed=0)
        keep = batched.plain_sgd
        if not fast:
            batched.plain_sgd = lambda m, o: False
        try:
            trainer = Trainer(model, optimizers.make("sgd"), splits.x_fit, splits.y_fit, 32, seed=0,
                              x_eval=eval_inputs(splits))
        finally:
            batched.plain_sgd = keep
        _, first, _ = timed(lambda: evaluate(trainer.epoch(), splits))
        _, wall, cpu = timed(lambda: [evaluate(trainer.epoch(), splits) for _ in range(args.epochs)])
        return first, 1e3 * wall / args.epochs, 1e3 * cpu / args.epochs

    first, one_w, one_c = one_network(True)
    print(f"tfflat one network (Trainer, + eval of S, A, E): {one_w:.2f} ms/epoch wall, {one_c:.2f} CPU-ms "
          f"(first epoch incl. compile {first:.2f} s)", flush=True)
    first_b, old_w, old_c = one_network(False)
    print(f"before (generic Keras epoch):                    {old_w:.2f} ms/epoch wall, {old_c:.2f} CPU-ms "
          f"(first epoch incl. compile {first_b:.2f} s)", flush=True)

    members = [(500, s) for s in range(args.stack)]
    _, warm, _ = timed(lambda: batched.train_fcns(spec, splits, members, max_epochs=1))
    res, wall, cpu = timed(lambda: batched.train_fcns(spec, splits, members))
    epochs = sum(r.epochs for r in res)
    stack_w, stack_c = 1e3 * wall / epochs, 1e3 * cpu / epochs
    print(f"tfflat stack of {args.stack} (to zero error, {epochs} network-epochs): {stack_w:.2f} ms per network-epoch "
          f"wall, {stack_c:.2f} CPU-ms (compile {warm:.2f} s, excluded)", flush=True)
    base, base_c = a["ms_per_epoch"], a["cpu_ms_per_epoch"]
    print(f"speed-up vs the authors' loop, wall (CPU): one network {base / one_w:.2f}x ({base_c / one_c:.2f}x), "
          f"stack {base / stack_w:.2f}x ({base_c / stack_c:.2f}x) (goal >= 3x); before this change {base / old_w:.2f}x "
          f"({base_c / old_c:.2f}x); load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
