"""tfflat's EP against GPy's EP as the authors run it, on the same kernel and labels, side by side.

Kernel: the analytic NNGP kernel of the paper's MNIST FCN (784-40-40-1 ReLU, σw = √2, σb = 1) on n
real MNIST test images (past the 10,000 available: jittered copies), labels f = the true labels
(digit ≥ 5). Each case runs in its own fresh process; in-process seconds are the EP call alone.

In-process, per n and likelihood (probit = GPy's Bernoulli default; Heaviside =
``Bernoulli(gp_link=link_functions.Heaviside())``):
- ``tfflat``: ``tfflat.prior.ep_log_prior(K, f, likelihood, check=False)`` as the run and sweep pipeline
  calls it (sequential EP, NumPy/SciPy backend; the Heaviside rank test is always done), after a tiny
  warm-up call (SciPy's lazily imported modules, as GPy's import); "+check" is the same call with the
  PSD check of a user-supplied kernel (one more Cholesky under the probit likelihood);
- ``GPy-par``: the authors' ``GP_prob(K, X, Y)`` from ``FCN/GP_prob/GP_prob_gpy.py`` (their code and
  their ``CustomMatrix`` kernel, read from the mirror of sofuncheung/ICML_2021 when it is there, else
  an equivalent kernel wrapper), i.e. ``GPy.core.GP(..., inference_method=EP(parallel_updates=True))``
  and ``m.log_likelihood()``;
- ``GPy-seq``: the same with GPy's default ``EP()`` (sequential rank-one updates).
ratio = GPy seconds / tfflat seconds; rel ΔlnZ = |ln Z_GPy − ln Z_tfflat| / |ln Z_tfflat|.

Process level (``--process``): wall seconds of the whole command ``tfflat prior --kernel-file K.npy
--labels y.npy --likelihood L --json`` against ``python gpy_prior.py K.npy y.npy L``, a script that
imports GPy, loads the same files and calls the authors' ``GP_prob`` (parallel updates).

BLAS threads: the machine's default unless ``--threads`` (the same for every process). Timings on a
shared machine are noisy: read the ratios, and the load printed with them.

Run (one command; ``--write`` puts the tables into benchmarks/RESULTS.md, section "## EP vs GPy"):

    python benchmarks/bench_ep.py [--sizes 1500 5000] [--likelihoods probit heaviside]
        [--impls tfflat GPy-par GPy-seq] [--process] [--big 11000] [--threads N] [--gpy PYTHON]
        [--timeout 1800] [--data-dir ../shared/data] [--write]
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
MIRROR = Path("/work/.mirror/sofuncheung+ICML_2021/repo")
AUTHORS_FILES = ("FCN/GP_prob/GP_prob_gpy.py", "FCN/GP_prob/custom_kernel_matrix/custom_kernel_matrix.py")
SECTION = "## EP vs GPy"
NOTE = ("tfflat: sequential EP with the rank-one updates delayed to one dsyrk per block of sites (n³ flops a "
        "sweep, 3–5 sweeps); GPy-par: parallel EP, a Cholesky, a triangular solve and VᵀV per sweep (≈ 3.3 n³ "
        "flops, 5–37 sweeps) plus a Python loop over the sites; GPy-seq: one rank-one BLAS-2 update per site. "
        "Targets: ≥ 4× GPy-par in-process at n = 1500 and 5000, ≥ 1.5× as whole processes, n = 11000 "
        "Heaviside ≤ 3 min. Timings on a shared machine are noisy: the ratios come from back-to-back runs.")

# Used when the authors' repository is not at hand: their CustomMatrix kernel for the X2 = None case
# (GP_prob only ever evaluates K(X)), and GP_prob's parallel/sequential EP call as published.
FALLBACK_GP_PROB = '''
import GPy
import numpy as np
from GPy.kern.src.kern import Kern


class CustomMatrix(Kern):
    def __init__(self, input_dim, X, K, active_dims=None):
        super().__init__(input_dim, active_dims, "custom_matrix")
        self.Kmatrix, self.X = K, X

    def K(self, X1, X2=None):
        assert X2 is None and np.all(X1 == self.X)
        return self.Kmatrix

    def Kdiag(self, X):
        return np.diag(self.Kmatrix)

    def update_gradients_full(self, dL_dK, X, X2):
        pass

    def update_gradients_diag(self, dL_dK, X, X2):
        pass


def GP_prob(K, X, Y, parallel_updates=True, method="EP"):
    lik = GPy.likelihoods.Bernoulli()
    inference_method = GPy.inference.latent_function_inference.expectation_propagation.EP(
        parallel_updates=parallel_updates)
    m = GPy.core.GP(X=X, Y=Y, kernel=CustomMatrix(X.shape[1], X, K), inference_method=inference_method,
                    likelihood=lik)
    return m.log_likelihood()
'''

GPY_SCRIPT = '''
import json, sys
sys.path.insert(0, {authors!r})
import numpy as np
import GPy
from GP_prob_gpy import GP_prob

K = np.load(sys.argv[1])
Y = np.load(sys.argv[2]).astype(float)[:, None]
if sys.argv[3] == "heaviside":
    _bernoulli = GPy.likelihoods.Bernoulli
    GPy.likelihoods.Bernoulli = lambda: _bernoulli(gp_link=GPy.likelihoods.link_functions.Heaviside())
np.random.seed(0)
print(json.dumps({{"ln_z": float(GP_prob(K, np.arange(len(Y), dtype=float)[:, None], Y, parallel_updates=True))}}))
'''


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[1500, 5000])
    p.add_argument("--likelihoods", nargs="*", default=["probit", "heaviside"])
    p.add_argument("--impls", nargs="*", default=["tfflat", "GPy-par", "GPy-seq"])
    p.add_argument("--process", action="store_true", help="also time whole processes (tfflat prior vs a GPy script)")
    p.add_argument("--process-sizes", type=int, nargs="*", default=[1500, 5000])
    p.add_argument("--big", type=int, nargs="*", default=[], help="tfflat-only sizes (Heaviside), e.g. 11000")
    p.add_argument("--threads", type=int, default=None, help="BLAS threads per process (default: the machine's)")
    p.add_argument("--gpy", default=sys.executable, help="a Python that has GPy")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per case before it is reported as > timeout")
    p.add_argument("--data-dir", default=os.environ.get("TFFLAT_DATA_DIR", str(HERE.parents[2] / "shared" / "data")))
    p.add_argument("--write", action="store_true", help="write the tables into benchmarks/RESULTS.md")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--files", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--authors", help=argparse.SUPPRESS)
    return p.parse_args()


# ------------------------------------------------------------------ workers (one per process)


def worker(name, kfile, yfile, likelihood, authors):
    import numpy as np

    k = np.load(kfile)
    y = np.load(yfile)
    if name == "tfflat":
        from tfflat.prior.ep import ep_log_prior

        ep_log_prior(k[:20, :20], y[:20], likelihood)         # SciPy's lazily imported modules, as GPy's import
        t0 = time.perf_counter()
        res = ep_log_prior(k, y, likelihood, check=False)    # as the run and sweep pipeline calls it
        sec = time.perf_counter() - t0
        t0 = time.perf_counter()
        ep_log_prior(k, y, likelihood)                       # with the PSD check of a user's kernel file
        return {"seconds": sec, "ln_z": res.ln_z, "sweeps": res.sweeps, "checked": time.perf_counter() - t0}
    sys.path.insert(0, authors)
    import GPy
    from GP_prob_gpy import GP_prob
    from GPy.inference.latent_function_inference import expectation_propagation as gep

    if likelihood == "heaviside":
        bernoulli = GPy.likelihoods.Bernoulli
        GPy.likelihoods.Bernoulli = lambda: bernoulli(gp_link=GPy.likelihoods.link_functions.Heaviside())
    sweeps = [0]
    local = gep.EP._local_updates

    def counted(self, *a, **kw):
        sweeps[0] += 1
        return local(self, *a, **kw)

    gep.EP._local_updates = counted
    np.random.seed(0)
    x = np.arange(len(y), dtype=float)[:, None]
    t0 = time.perf_counter()
    ln_z = GP_prob(k, x, y.astype(float)[:, None], parallel_updates=name == "GPy-par")
    return {"seconds": time.perf_counter() - t0, "ln_z": float(ln_z), "sweeps": sweeps[0], "gpy": GPy.__version__}


# ------------------------------------------------------------------ orchestration


def authors_code(tmp: Path) -> tuple[str, str]:
    """A folder holding the authors' GP_prob_gpy.py (+ custom_kernel_matrix), and where it came from."""
    dest = tmp / "authors"
    (dest / "custom_kernel_matrix").mkdir(parents=True)
    try:
        for f in AUTHORS_FILES:
            text = subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:{f}"], capture_output=True, text=True,
                                  check=True).stdout
            (dest / f.split("GP_prob/", 1)[1]).write_text(text)
        return str(dest), f"{MIRROR.parent.name.replace('+', '/')} FCN/GP_prob/GP_prob_gpy.py (unchanged)"
    except (OSError, subprocess.CalledProcessError):
        (dest / "GP_prob_gpy.py").write_text(FALLBACK_GP_PROB)
        return str(dest), "an equivalent of the authors' GP_prob (their repository was not found)"


def make_problem(n, data_dir, tmp):
    """NNGP kernel of the paper's MNIST FCN on n images (+ jittered copies past 10,000) and true labels."""
    import math

    import numpy as np

    from tfflat.data import load_task, make_splits
    from tfflat.prior.kernels import nngp_kernel

    task = load_task("mnist", data_dir)
    pool = sum(len(p.labels) for p in task.pools.values())
    sp = make_splits(task, min(n, pool), 0, 0, seed=0)
    x, y = sp.x_train, sp.y_train
    if n > len(x):
        rng = np.random.default_rng(1)
        extra = rng.integers(0, len(x), n - len(x))
        x = np.concatenate([x, np.clip(x[extra] + rng.normal(0, 0.1, x[extra].shape), 0, 1).astype(np.float32)])
        y = np.concatenate([y, y[extra]])
    k = nngp_kernel(x, 2, math.sqrt(2), 1.0)
    kf, yf = Path(tmp) / f"k{n}.npy", Path(tmp) / f"y{n}.npy"
    np.save(kf, k)
    np.save(yf, y.astype(np.int8))
    return kf, yf


def env_for(threads):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    if threads:
        env.update({v: str(threads) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def launch(python, name, files, args, authors):
    cmd = [python, str(HERE), "--worker", name, "--files", *map(str, files), "--authors", authors]
    try:
        proc = subprocess.run(cmd, env=env_for(args.threads), capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"> {args.timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:120]}


def timed(cmd, args):
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env_for(args.threads), capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"> {args.timeout:.0f} s"}
    sec = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"seconds": sec, "ln_z": out.get("ln_z", out.get("ln_prior"))}


def machine_facts(args) -> str:
    model = platform.processor() or "?"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
    except (OSError, AttributeError):
        pass
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    threads = args.threads or "default (all cores)"
    return f"{model}, {os.cpu_count()} CPUs, BLAS threads {threads}; {load}"


def fmt_row(cells, widths):
    return "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths)) + " |"


def main():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = parse()
    if args.worker:
        out = worker(args.worker, *args.files, authors=args.authors)
        print("RESULT " + json.dumps(out))
        return
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    with tempfile.TemporaryDirectory(prefix="bench_ep_") as tmp:
        authors, origin = authors_code(Path(tmp))
        say(f"Machine: {machine_facts(args)}")
        say(f"GPy: {origin}, run by {args.gpy}")
        say()
        head = ["n", "likelihood", "impl", "seconds", "ratio", "ln Z", "rel ΔlnZ", "sweeps", "+check"]
        widths = [6, 10, 8, 9, 7, 16, 8, 6, 6]
        say("In-process EP seconds (ratio = GPy / tfflat):")
        say()
        say(fmt_row(head, widths))
        say("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        problems = {}
        for n in list(args.sizes) + list(args.big):
            problems[n] = make_problem(n, args.data_dir, tmp)
            liks = ["heaviside"] if n in args.big and n not in args.sizes else args.likelihoods
            impls = ["tfflat"] if n in args.big and n not in args.sizes else args.impls
            for lik in liks:
                results = {}
                for name in impls:
                    py = sys.executable if name == "tfflat" else args.gpy
                    results[name] = launch(py, name, (*problems[n], lik), args, authors)
                ours = results.get("tfflat", {})
                for name, r in results.items():
                    if "error" in r:
                        say(fmt_row([n, lik, name, r["error"], "", "", "", "", ""], widths))
                        continue
                    ok = "seconds" in ours
                    ratio = f"{r['seconds'] / ours['seconds']:.1f}×" if ok and name != "tfflat" else ""
                    rel = f"{abs(r['ln_z'] - ours['ln_z']) / abs(ours['ln_z']):.1e}" if ok and name != "tfflat" else ""
                    checked = f"{r['checked']:.2f}" if "checked" in r else ""
                    say(fmt_row([n, lik, name, f"{r['seconds']:.2f}", ratio, f"{r['ln_z']:.6f}", rel, r["sweeps"],
                                 checked], widths))
        say(f"(load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()})")
        if args.process:
            say()
            say("Whole processes, wall seconds (tfflat prior --kernel-file ... --json vs a GPy script, parallel EP):")
            say()
            head2, w2 = ["n", "likelihood", "tfflat prior", "GPy script", "ratio", "rel ΔlnZ"], [6, 10, 12, 10, 7, 8]
            say(fmt_row(head2, w2))
            say("|" + "|".join("-" * (w + 2) for w in w2) + "|")
            script = Path(tmp) / "gpy_prior.py"
            script.write_text(GPY_SCRIPT.format(authors=authors))
            tfflat = shutil.which("tfflat", path=str(Path(sys.executable).parent)) or "tfflat"
            for n in args.process_sizes:
                kf, yf = problems.get(n) or make_problem(n, args.data_dir, tmp)
                for lik in args.likelihoods:
                    ours = timed([tfflat, "prior", "--kernel-file", str(kf), "--labels", str(yf), "--likelihood", lik,
                                  "--json"], args)
                    theirs = timed([args.gpy, str(script), str(kf), str(yf), lik], args)
                    if "error" in ours or "error" in theirs:
                        say(fmt_row([n, lik, ours.get("error", f"{ours.get('seconds', 0):.2f}"),
                                     theirs.get("error", f"{theirs.get('seconds', 0):.2f}"), "", ""], w2))
                        continue
                    rel = abs(theirs["ln_z"] - ours["ln_z"]) / abs(ours["ln_z"])
                    say(fmt_row([n, lik, f"{ours['seconds']:.2f}", f"{theirs['seconds']:.2f}",
                                 f"{theirs['seconds'] / ours['seconds']:.1f}×", f"{rel:.1e}"], w2))
            say(f"(load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()})")
    if args.write:
        write_results(lines)


def write_results(lines):
    path = HERE.parent / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    body = (f"{SECTION}\n\n`python benchmarks/bench_ep.py {' '.join(sys.argv[1:])}` "
            f"({time.strftime('%Y-%m-%d')}):\n\n" + "\n".join(lines) + "\n\n" + NOTE + "\n")
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
    path.write_text(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
