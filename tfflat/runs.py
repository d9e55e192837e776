"""Run directories: the one module that writes results to disk, always atomically.

A run is ``RUN/model.keras`` + ``RUN/run.json`` (config, seed, data source and S/A/E indices,
package versions, zero-error epoch, accuracies, history). Later measurements add their own
JSON files next to it (``flatness.json``, ``prior.json``) through :func:`write_json`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from tfflat.errors import UserError

RUN_FILE, MODEL_FILE = "run.json", "model.keras"
PACKAGES = ("tfflat", "tensorflow", "keras", "tensorflow-probability", "numpy", "scipy")


def versions() -> dict:
    """Versions of Python and the packages that determine the numbers."""
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    return o


def ensure_dir(path) -> Path:
    """Create ``path`` (and parents) or fail with one clear line."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", delete=True)
        probe.close()
    except OSError as err:
        raise UserError(f"cannot write to {path}: {err.strerror or err}; choose another --out") from None
    return path


@contextlib.contextmanager
def atomic_open(path, mode: str = "w"):
    """A file handle to write ``path`` through a temporary file: ``path`` is replaced only if the
    ``with`` block finishes (for outputs too large to build in memory first)."""
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never a half-written file)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def write_json(path, obj) -> None:
    atomic_write(path, json.dumps(_jsonable(obj), indent=1) + "\n")


def read_json(path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}; the file is corrupt") from None


def append_jsonl(path, record: dict) -> None:
    """Append one JSON line atomically: a single O_APPEND write, so readers never see half a record."""
    path = Path(path)
    ensure_dir(path.parent)
    line = (json.dumps(_jsonable(record)) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path) -> list[dict]:
    """All complete records of a JSON-lines file (a torn last line from a crash is ignored)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def save_model(path, model) -> None:
    """``model.save`` to a temporary ``.keras`` file, then ``os.replace``."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


@dataclass
class Run:
    """A reopened run: its directory, metadata (``run.json``), model and data splits."""

    path: Path
    meta: dict
    model: object
    splits: object

    @property
    def task(self) -> str:
        return self.meta["config"]["dataset"]

    @property
    def model_spec(self) -> dict:
        return self.meta["model_spec"]


def save(run_dir, model, meta: dict) -> Path:
    """Write ``model.keras`` and ``run.json`` (with package versions) into ``run_dir``."""
    run_dir = ensure_dir(run_dir)
    save_model(run_dir / MODEL_FILE, model)
    write_json(run_dir / RUN_FILE, {**meta, "versions": versions()})
    return run_dir


def check(run_dir) -> Path:
    """``run_dir`` as a Path if it is a tfflat run, else a :class:`UserError` saying why."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run {run_dir} does not exist; train one with `tfflat train --out {run_dir}`")
    if not (run_dir / RUN_FILE).is_file() or not (run_dir / MODEL_FILE).is_file():
        raise UserError(f"{run_dir} is not a tfflat run (no {RUN_FILE} and {MODEL_FILE}); "
                        "give the --out directory of `tfflat train`")
    return run_dir


def load(run_dir, data: bool = True) -> Run:
    """Reopen a run: model, metadata and (unless ``data=False``) the exact S, A, E arrays."""
    import keras

    from tfflat.data import load_task, take

    run_dir = check(run_dir)
    meta = read_json(run_dir / RUN_FILE)
    try:
        model = keras.models.load_model(run_dir / MODEL_FILE, compile=False)
    except Exception as err:
        raise UserError(f"cannot load {run_dir / MODEL_FILE}: {err}") from None
    splits = None
    if data:
        src = meta["source"]
        task = load_task(src["dataset"], src.get("data_dir"), bits=src.get("bits", 7),
                         target=src.get("target", "random"))
        splits = take(task, meta["indices"])
    return Run(run_dir, meta, model, splits)


def update(run_dir, name: str, result: dict) -> Path:
    """Write a measurement next to a run (``RUN/<name>.json``), atomically."""
    path = Path(run_dir) / f"{name}.json"
    write_json(path, result)
    return path
