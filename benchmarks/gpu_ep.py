"""EP at n = 11000 (Heaviside) on the TensorFlow backend — a GPU in float64 — with seconds per stage.

Kernel: the NNGP kernel of the paper's MNIST FCN (784-40-40-1 ReLU, σw = √2, σb = 1) on the 10,000
real MNIST test images plus jittered copies up to n, labels = the true labels. Prints the device, the
memory check, kernel seconds, EP seconds (GPU) and ln Z; with ``--check-n`` also EP on both backends at
a smaller n (the same ln Z to 1e-10 is expected).

    python benchmarks/gpu_ep.py [--n 11000] [--likelihood heaviside] [--check-n 3000] [--data-dir DIR]
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=11000)
    p.add_argument("--likelihood", default="heaviside")
    p.add_argument("--check-n", type=int, default=3000, help="also compare both backends at this n (0: skip)")
    p.add_argument("--data-dir", default=os.environ.get("TFFLAT_DATA_DIR", str(HERE.parents[2] / "shared" / "data")))
    args = p.parse_args()

    import numpy as np
    import tensorflow as tf

    from bench_ep import make_problem
    from tfflat.prior import linalg
    from tfflat.prior.ep import ep_log_prior

    gpus = tf.config.list_physical_devices("GPU")
    print(f"TensorFlow {tf.__version__}; GPUs: {[g.name for g in gpus] or 'none (the TF backend runs on the CPU)'}")
    if gpus:
        print(f"  {tf.config.experimental.get_device_details(gpus[0])}")
    print(f"free GPU memory {linalg.available_gpu_memory()} B, free RAM {linalg.available_ram()} B, "
          f"EP needs {linalg.DEVICE_MATRICES} × 8 n² = {linalg.DEVICE_MATRICES * 8 * args.n ** 2 / 1e9:.1f} GB on the device")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        kf, yf = make_problem(args.n, args.data_dir, tmp)
        k, y = np.load(kf), np.load(yf)
        print(f"n = {args.n}: kernel {time.perf_counter() - t0:.1f} s")
    for run in (1, 2):            # the first run includes TF/CUDA start-up, the second does not
        t0 = time.perf_counter()
        res = ep_log_prior(k, y, args.likelihood, backend="tensorflow",
                           progress=lambda s, lz: print(f"    sweep {s}: ln Z {lz:.6f}  ({time.perf_counter() - t0:.1f} s)",
                                                        flush=True))
        print(f"  run {run}: EP {args.likelihood} on {res.backend}: {res.seconds:.1f} s, ln Z = {res.ln_z:.6f}, "
              f"{res.sweeps} sweeps, converged {res.converged}", flush=True)
    if args.check_n:
        m = args.check_n
        a = ep_log_prior(k[:m, :m], y[:m], args.likelihood, backend="tensorflow")
        b = ep_log_prior(k[:m, :m], y[:m], args.likelihood, backend="numpy")
        print(f"n = {m}: tensorflow {a.seconds:.1f} s ln Z {a.ln_z:.10f}; numpy {b.seconds:.1f} s ln Z {b.ln_z:.10f}; "
              f"rel diff {abs(a.ln_z - b.ln_z) / abs(b.ln_z):.1e}")


if __name__ == "__main__":
    main()
