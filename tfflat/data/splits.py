"""S (true labels), A (flipped labels) and E (test) drawn disjointly from a seed (SPEC §1).

S and E depend only on the data seed and their own sizes, never on |A|, so every run of an
attack-size sweep shares the same S + E (and so one kernel matrix for the prior). A is either the
first |A| of one fixed order (nested subsets, the default) or a fresh subset per sample
(``draw_indices(..., sample=k)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfflat.data.tasks import Task
from tfflat.errors import UserError


@dataclass
class Splits:
    """Arrays for S, A, E (float32 inputs, 0/1 labels; A's labels already flipped) and their indices."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_attack: np.ndarray
    y_attack: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    indices: dict = field(default_factory=dict)   # {"S"|"A"|"E": {"pool": name, "indices": [...]}}

    @property
    def x_fit(self) -> np.ndarray:
        """S ∪ A, the set the network is trained on."""
        return np.concatenate([self.x_train, self.x_attack])

    @property
    def y_fit(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_attack])

    @property
    def sizes(self) -> dict:
        return {"S": len(self.y_train), "A": len(self.y_attack), "E": len(self.y_test)}


def _order(task: Task, train_size: int, attack_size: int, test_size: int, seed: int):
    """S, E and the candidates for A (in draw order), their pools' names; checks every size."""
    for name, v in (("--train-size", train_size), ("--attack-size", attack_size), ("--test-size", test_size)):
        if v < 0:
            raise UserError(f"{name} must be ≥ 0, got {v}")
    if train_size < 1:
        raise UserError("--train-size must be at least 1")
    rng = np.random.default_rng(seed)
    pools = task.pools
    if "test" in pools and "train" in pools:
        n_tr, n_te = len(pools["train"]), len(pools["test"])
        if train_size + attack_size > n_tr:
            raise UserError(f"|S| + |A| = {train_size + attack_size} but the {task.name} training split has only "
                            f"{n_tr} examples; lower --train-size/--attack-size")
        if test_size > n_te:
            raise UserError(f"|E| = {test_size} but the {task.name} test split has only {n_te} examples; "
                            "lower --test-size")
        p_tr, p_te = rng.permutation(n_tr), rng.permutation(n_te)
        return p_tr[:train_size], p_te[:test_size], p_tr[train_size:], ("train", "train", "test")
    (pool_name, pool), = pools.items()
    n = len(pool)
    need = train_size + attack_size + test_size
    if need > n:
        raise UserError(f"|S| + |A| + |E| = {need} but {task.name} has only {n} examples here "
                        f"({task.source.get('data_dir') or pool_name}); lower the sizes")
    p = rng.permutation(n)
    return p[:train_size], p[train_size:train_size + test_size], p[train_size + test_size:], (pool_name,) * 3


def _indices(names, s, a, e) -> dict:
    return {k: {"pool": pn, "indices": [int(i) for i in idx]}
            for k, pn, idx in zip(("S", "A", "E"), names, (s, a, e))}


def draw_indices(task: Task, train_size: int, attack_size: int, test_size: int, seed: int,
                 sample: int | None = None) -> dict:
    """Disjoint index sets for S, A, E. E comes from the test pool when the task has one.

    S and E depend on ``seed`` and their own sizes only. A is the first ``attack_size`` of a fixed
    order of the remaining examples (so a smaller A is a subset of a larger one) — or, with
    ``sample`` (an integer), a fresh subset of that size drawn without replacement from all of them
    by a generator seeded with (``seed``, ``attack_size``, ``sample``): a new A for every sample
    ("for each subset of attack set we sample 5 times", App. J.1, read as new subsets).
    """
    s, e, rest, names = _order(task, train_size, attack_size, test_size, seed)
    if sample is None:
        a = rest[:attack_size]
    else:
        if not isinstance(sample, (int, np.integer)) or isinstance(sample, bool) or sample < 0:
            raise UserError(f"sample must be an integer ≥ 0, got {sample!r}")
        pick = np.random.default_rng([int(seed), int(attack_size), int(sample)])
        a = rest[pick.choice(len(rest), size=attack_size, replace=False)]
    return _indices(names, s, a, e)


def take(task: Task, indices: dict) -> Splits:
    """Materialise the splits named by ``indices`` (as stored in run.json); A's labels flipped."""
    arrays = {}
    for k in ("S", "A", "E"):
        pool = task.pools.get(indices[k]["pool"])
        if pool is None:
            raise UserError(f"the data no longer has a {indices[k]['pool']!r} split needed for {k}")
        idx = np.asarray(indices[k]["indices"], np.int64)
        if len(idx) and idx.max() >= len(pool):
            raise UserError(f"stored {k} indices exceed the {indices[k]['pool']} split's {len(pool)} examples: "
                            "the data directory is not the one this run was made with")
        x = pool.load(idx) if len(idx) else np.zeros((0,) + task.input_shape, np.float32)
        arrays[k] = (x.astype(np.float32), pool.labels[idx].astype(np.int64))
    (xs, ys), (xa, ya), (xe, ye) = arrays["S"], arrays["A"], arrays["E"]
    return Splits(xs, ys, xa, 1 - ya, xe, ye, indices)


def make_splits(task: Task, train_size: int, attack_size: int, test_size: int, seed: int = 0) -> Splits:
    """Draw S, A, E (see :func:`draw_indices`) and load their arrays."""
    return take(task, draw_indices(task, train_size, attack_size, test_size, seed))
