"""Run directories: the one module that writes results to disk, always atomically.

A run is ``RUN/model.keras`` + ``RUN/run.json`` (config, seed, data source and S/A/E indices,
package versions, zero-error epoch, accuracies, history). Later measurements add their own
JSON files next to it (``flatness.json``, ``prior.json``) through :func:`write_json`.

:func:`open_model` opens any model a user points at: a run, a ``.keras`` file, a folder written by
``keras.callbacks.ModelCheckpoint`` (its newest ``.keras`` file) or a SavedModel folder.
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
        raise UserError(f"cannot write to {path}: {err.strerror or err}; choose another `out`") from None
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


@dataclass
class Opened:
    """A model a user pointed at: ``kind`` is ``run``, ``keras`` (a ``.keras`` file, possibly the newest
    of a checkpoint folder) or ``savedmodel``; ``run`` is the :class:`Run` for a run."""

    path: Path
    kind: str
    model: object
    run: Run | None = None
    file: Path | None = None

    def describe(self) -> str:
        return {"run": "a tfflat run", "keras": "a Keras file", "savedmodel": "a SavedModel folder"}[self.kind]


def is_run(path) -> bool:
    path = Path(path)
    return (path / RUN_FILE).is_file() and (path / MODEL_FILE).is_file()


def load_keras(path):
    """``keras.models.load_model`` in safe mode (no code from the file runs), compiled when its loss can
    be rebuilt (the head reads ``from_logits``), else uncompiled."""
    import keras

    try:
        return keras.models.load_model(path, compile=True, safe_mode=True)
    except Exception:  # noqa: BLE001 - an unknown custom loss or metric: retry without the training config
        pass
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for bad files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load the Keras model {path}: {first}") from None


def open_model(path, data: bool = True) -> Opened:
    """The model at ``path``: a tfflat run (with its splits unless ``data=False``), a ``.keras`` file,
    a ``ModelCheckpoint`` folder (the newest ``.keras`` file in it) or a SavedModel folder (inference
    only: its weights are baked into a traced graph)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a tfflat run directory, a .keras file, a ModelCheckpoint "
                        "folder or a SavedModel folder")
    if path.is_file():
        if path.suffix == ".keras":
            return Opened(path, "keras", load_keras(path), file=path)
        if path.name.endswith((".weights.h5", ".h5", ".hdf5")):
            raise UserError(f"{path} is an HDF5 file ({'weights only' if '.weights.' in path.name else 'legacy format'}"
                            "); tfflat reads .keras files: save the model with model.save('model.keras')")
        raise UserError(f"{path} is not a model file; give a .keras file, a run directory, a ModelCheckpoint folder "
                        "or a SavedModel folder")
    if is_run(path):
        run = load(path, data=data)
        return Opened(path, "run", run.model, run, path / MODEL_FILE)
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return Opened(path, "savedmodel", _savedmodel(path))
    files = sorted(path.glob("*.keras"), key=lambda p: (p.stat().st_mtime, p.name))
    if files:
        return Opened(path, "keras", load_keras(files[-1]), file=files[-1])
    if (path / RUN_FILE).is_file():
        raise UserError(f"{path} is not a complete tfflat run (no {MODEL_FILE}); give the --out directory of "
                        "`tfflat train`")
    if (path / "checkpoint").is_file() or any(path.glob("*.index")):
        raise UserError(f"{path} is a tf.train.Checkpoint: it holds variables without the architecture; save the "
                        "model with model.save('model.keras') (or ModelCheckpoint(…'.keras')) and give that")
    if any(path.glob("*.weights.h5")) or any(path.glob("*.h5")):
        raise UserError(f"{path} holds only weights files (.h5); save whole models with "
                        "ModelCheckpoint('ckpt/epoch{epoch}.keras') and give that folder")
    raise UserError(f"{path} is not a tfflat run, a ModelCheckpoint folder (no .keras file) or a SavedModel "
                    f"(no saved_model.pb); train one with `tfflat train --out {path}` or give a .keras file")


def _savedmodel(path: Path):
    """A SavedModel's serving function as a Keras model (inference only)."""
    import keras
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        endpoints = list(getattr(loaded, "signatures", {}) or {})
        endpoint = "serve" if hasattr(loaded, "serve") else ("serving_default" if "serving_default" in endpoints
                                                             else (endpoints[0] if endpoints else None))
        if endpoint is None:
            raise UserError(f"the SavedModel {path} has no serving function")
        fn = getattr(loaded, endpoint, None) or loaded.signatures[endpoint]
        spec = fn.input_signature[0] if getattr(fn, "input_signature", None) else \
            list(fn.structured_input_signature[1].values())[0]
        layer = keras.layers.TFSMLayer(str(path), call_endpoint=endpoint)
        inputs = keras.Input(tuple(spec.shape[1:]), dtype=spec.dtype)
        out = layer(inputs)
        if isinstance(out, dict):
            if len(out) != 1:
                raise UserError(f"the SavedModel {path} returns {len(out)} outputs; tfflat measures one")
            out = next(iter(out.values()))
        return keras.Model(inputs, out, name=path.name)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - TensorFlow raises many types for foreign SavedModels
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load the SavedModel {path}: {first}") from None


def update(run_dir, name: str, result: dict) -> Path:
    """Write a measurement next to a run (``RUN/<name>.json``), atomically."""
    path = Path(run_dir) / f"{name}.json"
    write_json(path, result)
    return path
