"""Resumable training checkpoints: ``RUN/train-checkpoint.npz``, written while ``tfflat train`` runs.

One ``.npz`` file, replaced atomically (:func:`tfflat.runs.atomic_open`), holds everything the next
epoch depends on: the model's weights (BatchNorm statistics included), the optimizer's variables,
the shuffling RNG's state (:meth:`tfflat.training.Trainer.get_state`) and the history so far, with
the config and data fingerprint they belong to. It is read with ``allow_pickle=False``. A rerun of
the same ``train`` command continues from it and ends with the same numbers as an uninterrupted
run; the file is deleted once the run is saved.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfflat.errors import UserError

FILE = "train-checkpoint.npz"
KIND = "tfflat-train-checkpoint"
EVERY_SECONDS = 300.0          # default: a checkpoint every 5 minutes of training


@dataclass
class Checkpoint:
    """The state of a run after epoch ``history[-1]["epoch"]``."""

    config: dict
    data: dict                 # tfflat.runs.data_fingerprint of S, A, E
    history: list
    weights: list              # model.get_weights()
    trainer: dict              # Trainer.get_state()

    @property
    def epoch(self) -> int:
        return int(self.history[-1]["epoch"])

    @property
    def resume(self) -> dict:
        """The ``resume`` argument of :func:`tfflat.training.train`."""
        return {"history": self.history, "trainer": self.trainer}


def path_of(run_dir) -> Path:
    return Path(run_dir) / FILE


def save(run_dir, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``RUN/train-checkpoint.npz`` atomically (the previous one stays until then)."""
    from tfflat import runs

    meta = {"format_version": runs.FORMAT_VERSION, "kind": KIND, "config": ckpt.config, "data": ckpt.data,
            "history": ckpt.history, "rng": ckpt.trainer["rng"], "weights": len(ckpt.weights),
            "optimizer": len(ckpt.trainer["optimizer"])}
    arrays = {"meta": np.frombuffer(runs.dumps(meta).encode(), np.uint8)}
    arrays.update({f"w{i}": np.asarray(w) for i, w in enumerate(ckpt.weights)})
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(ckpt.trainer["optimizer"])})
    path = path_of(run_dir)
    with runs.atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def load(run_dir) -> Checkpoint | None:
    """The checkpoint in ``run_dir`` (``None`` if there is none); a damaged one is a :class:`UserError`."""
    from tfflat import runs

    path = path_of(run_dir)
    if not path.is_file():
        return None
    fix = "delete it, or rerun with `force` to start the run over"
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            runs.check_format(meta, path, fix)
            if meta.get("kind") != KIND:
                raise UserError(f"{path} is not a tfflat training checkpoint; {fix}")
            weights = [z[f"w{i}"] for i in range(int(meta["weights"]))]
            optimizer = [z[f"o{i}"] for i in range(int(meta["optimizer"]))]
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise UserError(f"cannot read the training checkpoint {path} ({type(err).__name__}: {err}); {fix}") from None
    meta = runs.decode(meta)
    if not isinstance(meta.get("history"), list) or not meta["history"]:
        raise UserError(f"the training checkpoint {path} has no history; {fix}")
    return Checkpoint(meta["config"], meta.get("data") or {}, meta["history"], weights,
                      {"optimizer": optimizer, "rng": meta["rng"]})


def remove(run_dir) -> None:
    path_of(run_dir).unlink(missing_ok=True)


class Saver:
    """Saves a checkpoint after every ``every``-th epoch and whenever ``seconds`` have passed since the last
    one (``None``: never on that account). Call it after each epoch with that epoch's record."""

    def __init__(self, run_dir, config: dict, data: dict, model, trainer, history: list | None = None,
                 every: int | None = None, seconds: float | None = EVERY_SECONDS):
        self.run_dir, self.config, self.data, self.model, self.trainer = run_dir, config, data, model, trainer
        self.history = list(history or [])
        self.every, self.seconds = every, seconds
        self.last = time.monotonic()
        self.saved = None          # epoch of the last checkpoint written

    def __call__(self, epoch: int, record: dict) -> None:
        self.history.append(record)
        if epoch == 0:
            return
        due = bool(self.every) and epoch % self.every == 0
        due = due or (self.seconds is not None and time.monotonic() - self.last >= self.seconds)
        if due:
            save(self.run_dir, Checkpoint(self.config, self.data, list(self.history), self.model.get_weights(),
                                          self.trainer.get_state()))
            self.last, self.saved = time.monotonic(), epoch
