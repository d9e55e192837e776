"""EP's dense O(n³) linear algebra behind one small interface: SciPy's LAPACK/BLAS on the CPU (the
default) or TensorFlow's ``tf.linalg`` in float64 — on a GPU when one is visible — plus the memory check.

Every operation works on Σ, the n×n posterior covariance of the scaled kernel K/c, and on the sites
(τ̃, ν̃); the per-site work stays on the host (:mod:`tfflat.prior.ep`). A backend provides:

- ``sigma(k, c)``: a working Σ = K/c;
- ``columns(sig, j0, j1)``: W = Σ[:, J] (backend array) and the host copy of Σ[J, J];
- ``update(sig, w, a, kappa, coef)``: X = W A, Σ ← Σ − X diag(κ) Xᵀ; returns X·coef (host);
- ``diagonal(sig)``: diag Σ (host);
- ``posterior(k, c, tau, nu, diag)``: ½ log|B|, μ and (optionally) diag Σ from a fresh Cholesky
  factorisation of B = I + S̃½ (K/c) S̃½ (R&W eqs. 3.53, 3.68–3.70), with a jitter fallback.

:func:`get` picks one: ``"numpy"``, ``"tensorflow"`` (TF's default device: the first GPU if there is
one, else the CPU), or ``"auto"`` — TensorFlow on a GPU only when an NVIDIA device is visible (checked
without importing TensorFlow: ``/dev/nvidia*`` exists and ``CUDA_VISIBLE_DEVICES`` does not hide it)
and n ≥ :data:`GPU_MIN_N`; NumPy otherwise. :func:`check_memory` refuses, up front and with the
numbers, an n whose working matrices do not fit in the free RAM (and GPU memory).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from tfflat.errors import UserError

BACKENDS = ("auto", "numpy", "tensorflow")
GPU_MIN_N = 4096          # "auto" uses a GPU from this n on (below it, TensorFlow's start-up costs more)
JITTERS = (0.0, 1e-10, 1e-8, 1e-6, 1e-4)
# n×n float64 matrices alive at the peak, beyond the caller's kernel
HOST_MATRICES = 2         # NumPy: Σ and a work matrix (the final factorisation: B, then S̃½K)
DEVICE_MATRICES = 7       # TensorFlow: K, Σ, the update's product; at the end K, B, L, S̃½K, V and temporaries


@dataclass
class Posterior:
    half_logdet: float      # ½ log|B| = Σ log diag L
    sig: np.ndarray | None  # diag Σ
    mu: np.ndarray          # Σ ν̃
    jitter: float


# ----------------------------------------------------------------------------------------------
# choosing a backend


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU may be visible to this process, without importing TensorFlow."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def get(name: str = "auto", n: int = 0):
    """The backend ``name`` (see :data:`BACKENDS`) for an EP of size n."""
    if name not in BACKENDS:
        raise UserError(f"unknown EP backend {name!r}; choose {', '.join(BACKENDS)}")
    if name == "auto":
        if n < GPU_MIN_N or not gpu_visible():
            return NumpyBackend()
        tf = _tensorflow()
        if not tf.config.list_physical_devices("GPU"):
            return NumpyBackend()
        name = "tensorflow"
    return NumpyBackend() if name == "numpy" else TFBackend()


_CONTROLLER = []


def one_thread():
    """Context in which BLAS uses one thread (small matrices: threads would only wait for each other)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    return tf


# ----------------------------------------------------------------------------------------------
# memory


def available_ram() -> int | None:
    """Bytes of RAM this process can still allocate: MemAvailable, capped by a cgroup limit."""
    avail = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    for limit_f, used_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = open(limit_f).read().strip()
            if limit != "max" and int(limit) < 2 ** 60:
                free = int(limit) - int(open(used_f).read().strip())
                avail = free if avail is None else min(avail, free)
            break
        except (OSError, ValueError):
            continue
    return avail


def available_gpu_memory() -> int | None:
    """Free bytes on the first visible GPU (nvidia-smi), or None when unknown."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    cmd = [smi, "--query-gpu=memory.total,memory.free", "--format=csv,noheader,nounits"]
    if cvd:
        cmd += ["-i", cvd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=True).stdout.split("\n")[0]
        total, free = (float(x) * 2 ** 20 for x in out.split(","))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    import sys

    if "tensorflow" in sys.modules:      # TF reserves most of the memory: count what it does not use
        try:
            used = sys.modules["tensorflow"].config.experimental.get_memory_info("GPU:0")["current"]
            return int(total - used)
        except (ValueError, RuntimeError, KeyError):
            pass
    return int(free)


def _gb(b: float) -> str:
    return f"{b / 1e9:.1f} GB"


def check_memory(n: int, backend) -> None:
    """:class:`UserError` if EP of size n cannot fit: its n×n float64 working matrices against the free
    RAM (and, for a GPU, the free GPU memory)."""
    mat = 8.0 * n * n
    count = HOST_MATRICES if backend.name == "numpy" or backend.on_gpu else DEVICE_MATRICES
    need = count * mat
    avail = available_ram()
    if avail is not None and need > avail:
        raise UserError(f"EP at n = {n} needs {_gb(need)} of RAM beyond the kernel ({count} n×n float64 matrices) "
                        f"but {_gb(avail)} is available; use fewer points or a bigger machine")
    if backend.name == "tensorflow" and backend.on_gpu:
        need = DEVICE_MATRICES * mat
        avail = available_gpu_memory()
        if avail is not None and need > avail:
            raise UserError(f"EP at n = {n} on the GPU needs {_gb(need)} of GPU memory ({DEVICE_MATRICES} n×n float64 "
                            f"matrices) but {_gb(avail)} is free; pass backend='numpy' to run it on the CPU")


# ----------------------------------------------------------------------------------------------
# SciPy (LAPACK/BLAS)


class NumpyBackend:
    """Σ as a C-ordered numpy array of which only the lower triangle is kept up to date (``dsyrk``)."""

    name = "numpy"
    on_gpu = False

    def sigma(self, k, c):
        return np.divide(k, c)

    def columns(self, sig, j0, j1):
        n = len(sig)
        w = np.empty((n, j1 - j0), order="F")
        w[:j0] = sig[j0:j1, :j0].T
        d = sig[j0:j1, j0:j1]
        w[j0:j1] = np.tril(d) + np.tril(d, -1).T
        w[j1:] = sig[j1:, j0:j1]
        return w, np.array(w[j0:j1])

    def update(self, sig, w, a, kappa, coef):
        from scipy.linalg import blas

        # X diag(κ) Xᵀ = U₊U₊ᵀ − U₋U₋ᵀ with U = W A P diag(√|κ_P|), P putting κ > 0 first, κ < 0 next
        pos, neg = np.flatnonzero(kappa > 0), np.flatnonzero(kappa < 0)
        order = np.concatenate([pos, neg])
        u = blas.dgemm(1.0, w, np.asfortranarray(a[:, order] * np.sqrt(np.abs(kappa[order]))))
        sig_f = sig.T       # F-ordered view whose upper triangle is sig's lower one
        for alpha, part in ((-1.0, u[:, :len(pos)]), (1.0, u[:, len(pos):])):
            if part.shape[1]:
                out = blas.dsyrk(alpha, part, beta=1.0, c=sig_f, trans=0, lower=0, overwrite_c=1)
                if out.ctypes.data != sig_f.ctypes.data:
                    sig_f[...] = out
        return w @ (a @ coef)

    def diagonal(self, sig):
        return np.diagonal(sig).copy()

    def posterior(self, k, c, tau, nu, *, diag=True, work=None):
        from scipy.linalg import blas, lapack

        n = len(k)
        sw = np.sqrt(tau / c)
        st = np.sqrt(tau)
        if work is None or work.shape != (n, n):
            work = np.empty((n, n))
        for jit in JITTERS:
            np.multiply(k, sw[:, None], out=work)
            work *= sw[None, :]
            work[np.diag_indices(n)] += 1.0 + jit * tau
            # work.T is the same memory in Fortran order; its upper triangle is work's lower one
            u, info = lapack.dpotrf(work.T, lower=0, overwrite_a=1, clean=1)   # B = Uᵀ U
            if info == 0:
                break
        else:
            raise UserError("EP failed: I + S̃½KS̃½ is not positive definite even with jitter; "
                            "the kernel is not a valid covariance matrix")
        half_logdet = float(np.sum(np.log(np.diagonal(u))))
        a = k @ nu / c + jit * nu                               # (K/c + jI) ν̃
        x, _ = lapack.dpotrs(u, st * a, lower=0)                # B⁻¹ S̃½ a
        mu = a - (k @ (st * x) / c + jit * st * x)              # μ = a − K S̃½ B⁻¹ S̃½ a
        sig = None
        if diag:
            rhs = np.multiply(k, st[:, None] / c)               # S̃½ K/c (C order)
            rhs[np.diag_indices(n)] += jit * st
            # V = U⁻ᵀ rhs ⇔ Vᵀ = rhsᵀ U⁻¹: rhs.T is rhsᵀ in Fortran order, solved in place from the right
            vt = blas.dtrsm(1.0, u, rhs.T, side=1, lower=0, trans_a=0, overwrite_b=1)
            sig = np.diagonal(k) / c + jit - np.einsum("ij,ij->i", vt, vt)   # rows of vt = columns of V
        return Posterior(half_logdet, sig, mu, jit)


# ----------------------------------------------------------------------------------------------
# TensorFlow (tf.linalg; float64 on the default device)


class TFBackend:
    """Σ as a full symmetric ``tf.Variable`` on TensorFlow's default device (a GPU when there is one)."""

    name = "tensorflow"

    def __init__(self):
        tf = _tensorflow()
        self.tf = tf
        self.on_gpu = bool(tf.config.list_physical_devices("GPU"))
        self._k = None              # the kernel on the device, uploaded once per EP

    def _kernel(self, k):
        tf = self.tf
        if self._k is None or self._k[0] is not k:
            self._k = (k, tf.constant(k, tf.float64))
        return self._k[1]

    def release(self):
        self._k = None

    def sigma(self, k, c):
        return self.tf.Variable(self._kernel(k) / c)

    def columns(self, sig, j0, j1):
        rows = sig[j0:j1, :]                                   # Wᵀ = Σ[J, :] (Σ is symmetric)
        return rows, rows[:, j0:j1].numpy()

    def update(self, sig, w, a, kappa, coef):
        tf = self.tf
        xt = tf.matmul(tf.constant(a), w, transpose_a=True)     # Xᵀ = Aᵀ Wᵀ
        kap = tf.constant(kappa)[:, None]
        sig.assign_sub(tf.matmul(xt * kap, xt, transpose_a=True))
        return tf.linalg.matvec(xt, tf.constant(coef), transpose_a=True).numpy()

    def diagonal(self, sig):
        return self.tf.linalg.diag_part(sig).numpy()

    def posterior(self, k, c, tau, nu, *, diag=True, work=None):
        tf = self.tf
        kd = self._kernel(k)
        st = tf.constant(np.sqrt(tau))
        sw = st / np.sqrt(c)
        nu_t, tau_t = tf.constant(nu), tf.constant(tau)
        for jit in JITTERS:
            b = (kd * sw[:, None]) * sw[None, :]
            b = tf.linalg.set_diag(b, tf.linalg.diag_part(b) + 1.0 + jit * tau_t)
            try:
                chol = tf.linalg.cholesky(b)
            except tf.errors.InvalidArgumentError:
                continue
            del b
            d = tf.linalg.diag_part(chol)
            if bool(tf.reduce_all(tf.math.is_finite(d))) and bool(tf.reduce_all(d > 0)):
                break
        else:
            raise UserError("EP failed: I + S̃½KS̃½ is not positive definite even with jitter; "
                            "the kernel is not a valid covariance matrix")
        half_logdet = float(tf.reduce_sum(tf.math.log(d)))
        a = tf.linalg.matvec(kd, nu_t) / c + jit * nu_t
        x = tf.linalg.cholesky_solve(chol, (st * a)[:, None])[:, 0]
        mu = a - (tf.linalg.matvec(kd, st * x) / c + jit * st * x)
        sig = None
        if diag:
            rhs = st[:, None] * kd / c
            if jit:
                rhs = tf.linalg.set_diag(rhs, tf.linalg.diag_part(rhs) + jit * st)
            v = tf.linalg.triangular_solve(chol, rhs, lower=True)
            del rhs
            sig = (tf.linalg.diag_part(kd) / c + jit - tf.reduce_sum(v * v, axis=0)).numpy()
            del v
        return Posterior(half_logdet, sig, mu.numpy(), jit)
