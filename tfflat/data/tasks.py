"""The paper's binary tasks (SPEC §1): MNIST (digit ≥ 5), CIFAR-10 cats vs cars, Boolean n-bit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfflat import defaults
from tfflat.data import keys, sources
from tfflat.data.sources import Pool
from tfflat.errors import UserError


@dataclass(frozen=True)
class Task:
    """A binary task: pools of examples with 0/1 labels, and where they came from."""

    name: str
    pools: dict[str, Pool]       # "train" / "test" (labels already binary 0/1)
    source: dict                 # JSON-able description, enough to load the same pools again
    input_shape: tuple[int, ...]


def _binary_pool(pool: Pool, labels01: np.ndarray, keep: np.ndarray | None = None) -> Pool:
    if keep is None:
        return Pool(labels01.astype(np.int64), pool.load)
    keep_idx = np.flatnonzero(keep)
    return Pool(labels01[keep_idx].astype(np.int64), lambda idx: pool.load(keep_idx[np.asarray(idx)]))


def mnist(data_dir: str | None = None) -> Task:
    """MNIST with label 1 iff digit ≥ 5; pixels / 255."""
    raw = sources.mnist_files(Path(data_dir)) if data_dir else sources.tfds_pools("mnist")
    pools = {k: _binary_pool(p, (p.labels >= 5)) for k, p in raw.items()}
    return Task("mnist", pools, _source(data_dir), input_shape("mnist"))


def cifar_cats_cars(data_dir: str | None = None) -> Task:
    """CIFAR-10 automobile (→ 0) and cat (→ 1); pixels / 255, 32×32×3."""
    auto, cat = sources.CIFAR10_CLASSES.index("automobile"), sources.CIFAR10_CLASSES.index("cat")
    raw = (sources.cifar_files(Path(data_dir), ("automobile", "cat")) if data_dir
           else sources.tfds_pools("cifar10"))
    pools = {}
    for k, p in raw.items():
        keep = (p.labels == auto) | (p.labels == cat)
        if keep.any():
            pools[k] = _binary_pool(p, (p.labels == cat), keep)
    if not pools:
        raise UserError(f"no automobile or cat images found in {data_dir}")
    return Task("cifar_cats_cars", pools, _source(data_dir), input_shape("cifar_cats_cars"))


def boolean_inputs(n: int) -> np.ndarray:
    """All 2ⁿ inputs; row k has x_i = bit i of k. Shape (2ⁿ, n), float32 in {0, 1}."""
    k = np.arange(2 ** n)
    return ((k[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float32)


def parse_target(target: str, n: int, seed: int = 0) -> np.ndarray:
    """A Boolean target: 'random', a 2ⁿ-character bit string (f(x_0) first) or a hex key
    (:mod:`tfflat.data.keys`)."""
    size = 2 ** n
    t = target.strip().lower()
    if t == "random":
        return np.random.default_rng(seed).integers(0, 2, size)
    if len(t) == size and set(t) <= {"0", "1"}:
        return np.array([int(c) for c in t])
    t = t[2:] if t.startswith("0x") else t
    if len(t) == keys.n_digits(n):
        try:
            return keys.parse_key(t, n).astype(np.int64)
        except ValueError:
            pass
    raise UserError(f"target {target!r} is not 'random', a {size}-bit string or a {keys.n_digits(n)}-digit "
                    f"hex key for n = {n}")


def boolean(n: int = defaults.BOOLEAN_BITS, target: str = "random", seed: int = 0) -> Task:
    """All 2ⁿ Boolean inputs labelled by ``target`` (one pool: there is no separate test split)."""
    if not 1 <= n <= defaults.BOOLEAN_MAX_BITS:
        raise UserError(f"--bits must be between 1 and {defaults.BOOLEAN_MAX_BITS}, got {n}")
    x, y = boolean_inputs(n), parse_target(target, n, seed)
    pool = Pool(y.astype(np.int64), lambda idx: x[np.asarray(idx)])
    src = {"dataset": "boolean", "bits": n, "target": keys.function_key(y)}
    return Task("boolean", {"train": pool}, src, input_shape("boolean", n))


def _source(data_dir: str | None) -> dict:
    return {"data_dir": str(Path(data_dir).resolve()) if data_dir else None,
            "loader": "local files" if data_dir else "tensorflow-datasets"}


TASKS = {"mnist": mnist, "cifar_cats_cars": cifar_cats_cars, "boolean": boolean}
_SHAPES = {"mnist": (28, 28), "cifar_cats_cars": (32, 32, 3)}


def input_shape(name: str, bits: int = defaults.BOOLEAN_BITS) -> tuple[int, ...]:
    """The shape of one example of task ``name`` (known without loading it; boolean: ``(bits,)``)."""
    if name not in TASKS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(TASKS)}")
    return (int(bits),) if name == "boolean" else _SHAPES[name]


def load_task(name: str, data_dir: str | None = None, **options) -> Task:
    """Load a task by name; ``options`` go to the task (e.g. ``bits``, ``target`` for boolean)."""
    if name not in TASKS:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(TASKS)}")
    if name == "boolean":
        return boolean(n=options.get("bits", defaults.BOOLEAN_BITS), target=options.get("target", "random"),
                       seed=options.get("target_seed", 0))
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")
    task = TASKS[name](data_dir)
    return Task(task.name, task.pools, {"dataset": name, **task.source}, task.input_shape)
