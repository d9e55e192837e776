"""Where the work runs: the one ``devices=`` / ``strategy=`` option of the library and ``--devices`` of
the CLI (issue 17).

A device spec is one of (``None``, the library's default: the strategy whose ``scope()`` the caller is
in, else ``"auto"``)

* ``"auto"`` (the default): every visible GPU, else the CPU;
* ``"cpu"``: the CPU only (GPUs are hidden from TensorFlow);
* ``"gpu"``: every visible GPU (an error when there is none);
* ``"gpu:0,1"``: those GPUs (indices among the visible ones);
* ``"cpu:0,1"``: those logical CPU devices (made with ``tf.config.set_logical_device_configuration``;
  for tests of the distributed code paths on a machine without GPUs);
* an integer N (or ``"N"``): the first N visible GPUs.

:func:`strategy` turns a spec into the ``tf.distribute`` strategy the heavy paths use: a
``MirroredStrategy`` with one replica per device when there are several, else TensorFlow's default
strategy — the code paths of one device, unchanged. A ``tf.distribute.Strategy`` is accepted as is.

GPU detection is cheap where there clearly is no NVIDIA device (no ``/dev/nvidia*``): TensorFlow is
not imported then. Memory growth is switched on for every GPU this module configures, so several
processes (sweep workers, the parent's kernel) can share a GPU. Sweeps pin one worker per GPU with
:func:`worker_env` (``CUDA_VISIBLE_DEVICES``), computed without creating a CUDA context.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass

from tfflat.errors import UserError

AUTO = "auto"
_MIRRORED: dict = {}
SPEC_HELP = "auto (all visible GPUs, else the CPU), cpu, gpu, gpu:0,1, or a number of GPUs"


@dataclass(frozen=True)
class Devices:
    """A resolved device spec: ``kind`` ("cpu" or "gpu") and the indices of TensorFlow's logical
    devices of that kind (for "cpu" without indices, the one CPU device)."""

    kind: str
    ids: tuple[int, ...] = (0,)

    @property
    def names(self) -> list[str]:
        """TensorFlow device names, e.g. ``["/gpu:0", "/gpu:1"]``."""
        return [f"/{self.kind}:{i}" for i in self.ids]

    @property
    def replicas(self) -> int:
        return len(self.ids)

    def __str__(self) -> str:
        return f"{self.kind}:{','.join(map(str, self.ids))}"


# ---- detection, without TensorFlow where possible ---------------------------------------------------

def nvidia_present() -> bool:
    """False when this process clearly has no NVIDIA GPU: no ``/dev/nvidia<N>`` device file (nor WSL's
    ``/dev/dxg``), or ``CUDA_VISIBLE_DEVICES`` empty or -1. Never imports TensorFlow."""
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and cvd.strip() in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/dxg")


def gpu_count() -> int:
    """Number of GPUs TensorFlow sees (0 without importing TensorFlow when :func:`nvidia_present` is
    False). Lists the physical devices only: no CUDA context is created, no GPU memory taken."""
    if not nvidia_present():
        return 0
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def cuda_ids() -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` entries of the GPUs this process sees, in CUDA's order: the values
    that pin a child process to one of them (indices, or UUIDs when the variable holds UUIDs)."""
    n = gpu_count()
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is None:
        return [str(i) for i in range(n)]
    return [v.strip() for v in cvd.split(",") if v.strip()][:n]


# ---- parsing -----------------------------------------------------------------------------------------

def parse(spec=AUTO) -> Devices:
    """A device spec (see the module docstring) → :class:`Devices`, checked against what is visible."""
    if isinstance(spec, Devices):
        return spec
    text = AUTO if spec is None else str(spec).strip().lower()
    if re.fullmatch(r"\d+", text):
        count = int(text)
        if count < 1:
            raise UserError(f"`devices` {spec!r}: a number of GPUs must be ≥ 1 (use 'cpu' for the CPU)")
        have = gpu_count()
        if count > have:
            raise UserError(f"`devices` asks for {count} GPU(s) but {have} {'is' if have == 1 else 'are'} visible; "
                            "use a smaller number, 'auto' or 'cpu'")
        return Devices("gpu", tuple(range(count)))
    if text == AUTO:
        have = gpu_count()
        return Devices("gpu", tuple(range(have))) if have else Devices("cpu")
    m = re.fullmatch(r"(cpu|gpu)(?::(\d+(?:\s*,\s*\d+)*))?", text)
    if not m:
        raise UserError(f"unknown `devices` {spec!r}; use {SPEC_HELP}")
    kind, listed = m.group(1), m.group(2)
    if listed is None:
        if kind == "cpu":
            return Devices("cpu")
        have = gpu_count()
        if not have:
            raise UserError("`devices` asks for GPUs but none is visible to TensorFlow (no NVIDIA device, or "
                            "CUDA_VISIBLE_DEVICES hides them, or TensorFlow lacks CUDA: pip install "
                            "'tensorflow[and-cuda]'); use 'auto' or 'cpu'")
        return Devices("gpu", tuple(range(have)))
    ids = tuple(int(v) for v in listed.split(","))
    if len(set(ids)) != len(ids):
        raise UserError(f"`devices` {spec!r} names a device twice")
    have = gpu_count() if kind == "gpu" else _cpu_count()
    bad = [i for i in ids if i >= have]
    if bad:
        raise UserError(f"`devices` {spec!r}: there is no {kind} {bad[0]} ({have} {kind} device(s) visible"
                        f"{'; logical CPUs come from tf.config.set_logical_device_configuration' if kind == 'cpu' else ''})")
    return Devices(kind, ids)


def _cpu_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_logical_devices("CPU"))


# ---- configuration and strategies ------------------------------------------------------------------

def memory_growth() -> None:
    """Switch on memory growth for every visible GPU (each process takes what it uses, not the whole
    GPU). A no-op without GPUs, and for GPUs TensorFlow has already initialised."""
    if not nvidia_present():
        return
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):
            pass            # already initialised: its setting stays


def configure(spec=AUTO) -> Devices:
    """Resolve ``spec``, switch on memory growth and, where TensorFlow has not started its devices yet,
    hide the GPUs that are not used (so ``"cpu"`` and a single ``"gpu:1"`` run on TensorFlow's default
    device). Returns the :class:`Devices`."""
    dev = parse(spec)
    memory_growth()
    if dev.kind == "cpu" and nvidia_present():
        _hide_gpus_except(())
    elif dev.kind == "gpu" and dev.replicas == 1 and dev.ids != (0,):
        if _hide_gpus_except(dev.ids):
            dev = Devices("gpu", (0,))     # the one visible GPU is now /gpu:0
    return dev


def _hide_gpus_except(ids) -> bool:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        tf.config.set_visible_devices([gpus[i] for i in ids], "GPU")
        return True
    except RuntimeError:         # TensorFlow's devices are initialised: placement decides instead
        return False


def strategy(spec=None):
    """The ``tf.distribute`` strategy for ``spec``: a given strategy as is; ``None``: the strategy whose
    ``scope()`` the caller is in, else ``"auto"``; ``MirroredStrategy`` with one replica per device for
    several devices; else the default strategy (today's one-device code path), or a
    ``OneDeviceStrategy`` for a single device that is not TensorFlow's default one."""
    import tensorflow as tf

    if isinstance(spec, tf.distribute.Strategy):
        return spec
    if spec is None and tf.distribute.has_strategy():
        return tf.distribute.get_strategy()
    dev = configure(spec)
    if dev.replicas > 1:       # one strategy per device set, reused by every call (its variables and functions)
        if dev not in _MIRRORED:
            _MIRRORED[dev] = tf.distribute.MirroredStrategy(dev.names)
        return _MIRRORED[dev]
    on_default = dev.ids == (0,) and (dev.kind == "gpu" or not _gpus_visible())
    if on_default:
        return tf.distribute.get_strategy()      # the default (or the caller's, inside a strategy scope)
    return tf.distribute.OneDeviceStrategy(dev.names[0])


def _gpus_visible() -> bool:
    if not nvidia_present():
        return False
    import tensorflow as tf

    return bool(tf.config.get_visible_devices("GPU"))


def scope(spec=None):
    """A context in which the library's ``strategy=None`` means ``spec``'s strategy (its ``scope()``; a
    no-op for the default strategy). The CLI runs each command's library call in it."""
    import contextlib

    strat = strategy(spec)
    return contextlib.nullcontext() if is_default(strat) else strat.scope()


def is_default(strat) -> bool:
    """True for ``None`` and TensorFlow's default strategy: the code paths of one device."""
    return strat is None or type(strat).__name__ == "_DefaultDistributionStrategy"


def replicas(strat) -> int:
    """Replicas of a strategy (1 for ``None``)."""
    return 1 if strat is None else int(strat.num_replicas_in_sync)


def describe(strat) -> dict:
    """JSON-able description of a strategy for run records: kind, replicas, devices."""
    if is_default(strat):
        import tensorflow as tf

        gpus = tf.config.get_visible_devices("GPU") if nvidia_present() else []
        return {"strategy": "default", "replicas": 1, "devices": ["/gpu:0" if gpus else "/cpu:0"]}
    return {"strategy": type(strat).__name__, "replicas": replicas(strat),
            "devices": list(strat.extended.worker_devices)}


# ---- sweeps: one worker per GPU ---------------------------------------------------------------------

def worker_env(index: int, workers: int, spec=AUTO) -> dict[str, str]:
    """Environment variables that place sweep worker ``index`` (0-based) of ``workers``.

    With GPUs (``spec`` resolving to GPUs): ``CUDA_VISIBLE_DEVICES`` is that worker's one GPU, round
    robin over the chosen GPUs (one worker per GPU when ``workers`` equals their number), and memory
    growth is on (``TF_FORCE_GPU_ALLOW_GROWTH``). On the CPU: the GPUs are hidden. The worker then sees
    its GPU as ``/gpu:0`` and runs today's one-device code paths.
    """
    dev = parse(spec)
    if dev.kind != "gpu":
        return {"CUDA_VISIBLE_DEVICES": "-1"} if nvidia_present() else {}
    ids = cuda_ids()
    chosen = [ids[i] for i in dev.ids]
    return {"CUDA_VISIBLE_DEVICES": chosen[index % len(chosen)], "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
