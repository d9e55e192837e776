"""Does the ResNet50 prior mean something? log P(f) against |A| on real CIFAR-10 cats/cars under three ways
of sampling the empirical kernel (eq. 7), with each kernel's conditioning (issue 17, item 6).

For every |A| and seed a ResNet50 (Keras, weights=None, one logit; BatchNorm momentum 0.5 as the
configs' quick variant) is trained with SGD on S ∪ A to zero error on S; f = the true labels on S and its
labels on E. log10 P(f) by EP, Heaviside and probit, under the kernels

* ``keras-default``: every sample from Keras' own initialisers (Glorot uniform convolutions), eval mode;
* ``he-eval``: He-normal fan-in weights, fresh BatchNorm in eval mode (the authors'
  ``ResNet50/empirical_kernel.py``; tfflat's default for ResNet50);
* ``he-batchstats``: He-normal, BatchNorm on the statistics of each forward batch.

The attack set has random labels, so a larger |A| should give a less probable f (the paper's Fig. 3c).
CPU-sized by default (|S| = |E| = 64); one command:

    python benchmarks/resnet_prior.py [--data-dir ../shared/data] [--attack 0 32 64] [--seeds 0]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

MODES = {"keras-default": ("model", "inference"), "he-eval": ("he", "inference"), "he-batchstats": ("he", "batch")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--train-size", type=int, default=64)
    ap.add_argument("--test-size", type=int, default=64)
    ap.add_argument("--attack", type=int, nargs="+", default=[0, 32, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--samples", type=int, default=None, help="kernel samples M (default 0.1 (|S| + |E|))")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--json", default=None, help="also write every number to this JSON file")
    args = ap.parse_args()

    from tfflat import models, prior
    from tfflat.data import load_task, make_splits
    from tfflat.prior.kernels import conditioning
    from tfflat.training import train

    t0 = time.perf_counter()
    task = load_task("cifar_cats_cars", args.data_dir)
    spec = models.model_spec("resnet50", "cifar_cats_cars", task.input_shape, bn_momentum=0.5)
    functions = []
    for a in args.attack:
        splits = make_splits(task, args.train_size, a, args.test_size, seed=0)
        for seed in args.seeds:
            model = models.build(spec, seed=seed)
            r = train(model, splits, "sgd", batch_size=args.batch_size, max_epochs=args.max_epochs, seed=seed)
            x = np.concatenate([splits.x_train, splits.x_test]).astype(np.float32)
            z = np.asarray(model(x, training=False)).reshape(-1)
            f = np.concatenate([splits.y_train, (z[args.train_size:] >= 0)]).astype(np.int8)
            functions.append({"attack_size": a, "seed": seed, "zero_error_epoch": r.zero_error_epoch,
                              "train_errors_S": int(np.sum((z[:args.train_size] >= 0) != splits.y_train)),
                              "test_accuracy": float(r.test_accuracy), "f": f})
            print(f"trained |A|={a} seed {seed}: zero-error epoch {r.zero_error_epoch}, test accuracy "
                  f"{r.test_accuracy:.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    out = {"train_size": args.train_size, "test_size": args.test_size, "kernels": {}, "points": []}
    logp = {}
    for name, (init, bn) in MODES.items():
        tk = time.perf_counter()
        k = prior.kernel_for(spec, x, "empirical", task="cifar_cats_cars", samples=args.samples, init=init,
                             batchnorm=bn)
        cond = conditioning(k)
        out["kernels"][name] = {"init": init, "batchnorm": bn, "seconds": time.perf_counter() - tk, **cond}
        print(f"kernel {name}: {time.perf_counter() - tk:.0f}s, diag median {cond['diagonal']['median']:.4g}, "
              f"off-diagonal correlation mean {cond['correlation']['mean']:.4f} (min {cond['correlation']['min']:.4f}),"
              f" λmin {cond['eigenvalue_min']:.3g}, condition number {cond['condition_number'] or float('inf'):.3g}",
              flush=True)
        for i, p in enumerate(functions):
            for lik in ("heaviside", "probit"):
                logp[(i, name, lik)] = prior.log_prior(k, p["f"], lik, check=False)["log10_prior"]
    print()
    cols = [f"{n}/{lik[:5]}" for n in MODES for lik in ("heaviside", "probit")]
    print(f"{'|A|':>4} {'seed':>4} {'epoch':>5} {'test acc':>8}  " + "  ".join(f"{c:>20}" for c in cols))
    for i, p in enumerate(functions):
        vals = [logp[(i, n, lik)] for n in MODES for lik in ("heaviside", "probit")]
        print(f"{p['attack_size']:>4} {p['seed']:>4} {p['zero_error_epoch'] or -1:>5} {p['test_accuracy']:>8.3f}  "
              + "  ".join(f"{v:>20.3f}" for v in vals))
        out["points"].append({**{k: v for k, v in p.items() if k != "f"},
                              "log10_prior": {c: v for c, v in zip(cols, vals)}})
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
