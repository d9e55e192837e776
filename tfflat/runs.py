"""Run directories: the one module that writes results to disk, always atomically.

A run is ``RUN/model.keras`` + ``RUN/run.json`` (config, seed, data source and S/A/E indices,
package versions, zero-error epoch, accuracies, history). Later measurements add their own
JSON files next to it (``flatness.json``, ``prior.json``) through :func:`write_json`.

:func:`open_model` opens any model a user points at: a run, a ``.keras`` file, a folder written by
``keras.callbacks.ModelCheckpoint`` (its newest ``.keras`` file) or a SavedModel folder.

Every file is written through a temporary file and ``os.replace`` with mode 0644 (0666 minus the
umask); a failed write (disk full) is one :class:`~tfflat.errors.UserError` line and leaves no
temporary file and the old file as it was. JSON files are strict JSON (non-finite numbers are
``null`` with a ``<key>_nonfinite`` sibling, see :func:`encode`) and every object carries a
``format_version``; :func:`read_json` refuses a file without one, or from a newer tfflat.

Reopening a run follows the data folder recorded in ``run.json`` only when it is an absolute
directory, and checks that the data read there is the run's (:func:`load_data`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
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


FORMAT_VERSION = 1          # of every JSON file tfflat writes; bump when a reader could misread an old file
NONFINITE = "_nonfinite"    # sibling-key suffix that says which number a JSON null stands for
_NONFINITE_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _jsonable(o):
    """``o`` with numpy values as Python ones, tuples as lists and keys as strings (floats kept as they are)."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return o.item()
    return o


def _encode(o):
    """(strict JSON value, what its nulls stand for): ``"nan"``/``"inf"``/``"-inf"`` for a non-finite number,
    ``{"i" or "i.j": name}`` for the non-finite entries of a list, ``None`` when everything is finite."""
    if isinstance(o, dict):
        return encode(o), None
    if isinstance(o, (list, tuple)):
        items, marks = [], {}
        for i, v in enumerate(o):
            e, r = _encode(v)
            items.append(e)
            if isinstance(r, str):
                marks[str(i)] = r
            elif r:
                marks.update({f"{i}.{path}": name for path, name in r.items()})
        return items, marks or None
    if isinstance(o, float) and not math.isfinite(o):
        return None, "nan" if math.isnan(o) else ("inf" if o > 0 else "-inf")
    return o, None


def encode(obj):
    """``obj`` as strict JSON data (``json.dumps(..., allow_nan=False)`` accepts it).

    Convention (every file tfflat writes, and ``--json``): a non-finite number is ``null`` and a sibling
    key ``<key>_nonfinite`` says which — ``"nan"``, ``"inf"`` or ``"-inf"``, or for a list a map from
    index (``"3"``, nested ``"3.1"``) to those names: ``{"trace": null, "trace_nonfinite": "nan"}``.
    :func:`decode` (used by :func:`read_json`, :func:`read_jsonl`) turns them back into floats.
    """
    obj = _jsonable(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            e, r = _encode(v)
            out[k] = e
            if r is not None:
                out[k + NONFINITE] = r
        return out
    return _encode(obj)[0]


def decode(obj):
    """The inverse of :func:`encode`: nulls with a ``<key>_nonfinite`` sibling become nan / ±inf again."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: decode(v) for k, v in obj.items()}
    for key in [k for k in out if k.endswith(NONFINITE) and k[: -len(NONFINITE)] in out]:
        base, mark = key[: -len(NONFINITE)], out[key]
        if isinstance(mark, str) and mark in _NONFINITE_NAMES and out[base] is None:
            out[base] = _NONFINITE_NAMES[mark]
            del out[key]
        elif isinstance(mark, dict) and isinstance(out[base], list) and _set_paths(out[base], mark):
            del out[key]
    return out


def _set_paths(items: list, marks: dict) -> bool:
    try:
        for path, name in marks.items():
            *head, last = [int(p) for p in path.split(".")]
            target = items
            for i in head:
                target = target[i]
            if target[last] is not None or name not in _NONFINITE_NAMES:
                return False
            target[last] = _NONFINITE_NAMES[name]
    except (ValueError, IndexError, TypeError):
        return False
    return True


def dumps(obj, indent=None) -> str:
    """Strict JSON text of ``obj`` (see :func:`encode`)."""
    return json.dumps(encode(obj), indent=indent, allow_nan=False)


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of every file tfflat writes: 0666 minus the umask (0644 with the usual umask 022)."""
    return 0o666 & ~_umask()


_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_error(path, err: OSError) -> UserError:
    """One line for a failed write: disk full (or over quota / file-size limit) or not writable."""
    why = err.strerror or str(err)
    if err.errno in _FULL:
        return UserError(f"cannot write {path}: {why}; free some disk space and rerun (nothing half-written was "
                         "left, and earlier results are kept)")
    return UserError(f"cannot write to {path}: {why}; choose another `out`")


def ensure_dir(path) -> Path:
    """Create ``path`` (and parents) or fail with one clear line."""
    if path is None or str(path).strip() == "":
        raise UserError("`out` is empty; give a directory or file name")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", delete=True)
        probe.close()
    except OSError as err:
        raise UserError(f"cannot write to {path}: {err.strerror or err}; choose another `out`") from None
    return path


@contextlib.contextmanager
def _staged(path, mode: str = "w"):
    """Yield (handle, temporary path) next to ``path``; the temporary file is complete and on disk after the
    block, and removed if the block fails (an ``OSError`` becomes one :class:`UserError` line)."""
    path = Path(path)
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode) as fh:
            yield fh, tmp
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, UserError):
            raise write_error(path, err) from None
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "w"):
    """A file handle to write ``path`` through a temporary file: ``path`` is replaced only if the
    ``with`` block finishes (for outputs too large to build in memory first). Disk full: one
    :class:`UserError` line, no temporary file left, the old ``path`` untouched."""
    with _staged(path, mode) as (fh, tmp):
        yield fh
    _publish(tmp, path)


def _publish(tmp, path) -> None:
    try:
        os.replace(tmp, path)
    except OSError as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise write_error(path, err) from None


def atomic_write(path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (never a half-written file)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def _versioned(obj):
    if isinstance(obj, dict):
        return {"format_version": FORMAT_VERSION, **{k: v for k, v in obj.items() if k != "format_version"}}
    return obj


def write_json(path, obj) -> None:
    """``obj`` as strict JSON (:func:`encode`), atomically; a dict gains ``format_version`` as its first key."""
    atomic_write(path, dumps(_versioned(obj), indent=1) + "\n")


def _parse(path, text: str):
    try:
        return json.loads(text, parse_constant=_no_constants)
    except (json.JSONDecodeError, ValueError) as err:
        raise UserError(f"cannot read {path}: it is not valid JSON ({err}); the file is corrupt") from None


def read_json(path, *, versioned: bool = True, fix: str | None = None) -> dict:
    """A JSON file tfflat wrote (non-finite numbers restored, see :func:`decode`).

    With ``versioned`` (the default) the file must be an object with a ``format_version`` this tfflat
    reads; anything else is one :class:`UserError` line (``fix`` says how to remake the file).
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise UserError(f"cannot read {path}: it is not a text (JSON) file") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    obj = _parse(path, text)
    if versioned:
        check_format(obj, path, fix)
    return decode(obj)


def check_format(obj, path, fix: str | None = None) -> None:
    """``obj`` (read from ``path``) is an object whose ``format_version`` this tfflat reads, or a
    :class:`UserError` that says what it is and ``fix``."""
    fix = fix or "remake it with this tfflat (rerun the command that wrote it)"
    if not isinstance(obj, dict):
        kind = {list: "a list", str: "a string"}.get(type(obj), type(obj).__name__)
        raise UserError(f"{path} is not a tfflat file (it holds {kind}, not an object); {fix}")
    version = obj.get("format_version")
    if version is None:
        raise UserError(f"{path} has no format_version: it was written by an older tfflat or another program; {fix}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"{path} has an unknown format_version {version!r}; {fix}")
    if version > FORMAT_VERSION:
        raise UserError(f"{path} has format_version {version}, newer than this tfflat {_version()} reads "
                        f"({FORMAT_VERSION}); upgrade tfflat")


def _version() -> str:
    from tfflat import __version__

    return __version__


def append_jsonl(path, record: dict) -> None:
    """Append one strict-JSON line atomically: one ``O_APPEND`` write under an exclusive lock, so readers
    never see half a record. A torn last line left by a crash is cut off first; a short write (disk
    full) is undone, and is one :class:`UserError` line."""
    import fcntl

    path = Path(path)
    ensure_dir(path.parent)
    line = (dumps(record) + "\n").encode()
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, file_mode())
    except OSError as err:
        raise write_error(path, err) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        end = _complete_end(fd, size)
        if end != size:
            os.ftruncate(fd, end)
        written = os.write(fd, line)
        if written != len(line):
            os.ftruncate(fd, end)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        os.fsync(fd)
    except OSError as err:
        raise write_error(path, err) from None
    finally:
        os.close(fd)


def _complete_end(fd: int, size: int, block: int = 1 << 16) -> int:
    """The offset just after the last newline of the file (0 if none): where its complete lines end."""
    pos = size
    while pos > 0:
        start = max(0, pos - block)
        chunk = os.pread(fd, pos - start, start)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return start + i + 1
        pos = start
    return 0


def read_jsonl(path) -> list[dict]:
    """All records of a JSON-lines file. Only a torn last line (no newline: a crash mid-append) is
    skipped; any other line that is not a JSON object is an error naming the line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"cannot read {path}: it is not a text (JSON-lines) file") from None
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    lines = text.split("\n")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line, parse_constant=_no_constants)
        except (json.JSONDecodeError, ValueError) as err:
            if n == len(lines):
                break                 # the unterminated last line: a torn append, not a record
            raise UserError(f"{path}, line {n}: not a JSON record ({err}); the file is corrupt — delete that "
                            "line or the file") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}, line {n}: not a JSON object; this is not a tfflat results file")
        out.append(decode(rec))
    return out


def save_model(path, model) -> None:
    """``model.save`` to a temporary ``.keras`` file, then ``os.replace`` (disk full: one
    :class:`UserError` line, no temporary file, the old file untouched)."""
    path = Path(path)
    _publish(_stage_model(path, model), path)


def _stage_model(path: Path, model) -> str:
    """The model saved, complete and on disk, in a temporary ``.keras`` file next to ``path``."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.keras")
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, file_mode())
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = err if isinstance(err, OSError) else err.__context__
        if isinstance(cause, OSError) and not isinstance(err, UserError):
            raise write_error(path, cause) from None
        raise
    return tmp


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
    """Write ``model.keras`` and ``run.json`` (with package versions and ``format_version``) into ``run_dir``.

    Both are written in full to temporary files first; then ``model.keras`` and last ``run.json`` are
    moved into place. ``run.json`` marks a complete run: a failure (disk full) leaves neither file
    changed and no temporary file, never a ``model.keras`` without its ``run.json``.
    """
    run_dir = ensure_dir(run_dir)
    text = dumps(_versioned({**meta, "versions": versions()}), indent=1) + "\n"
    model_tmp = _stage_model(run_dir / MODEL_FILE, model)
    try:
        with _staged(run_dir / RUN_FILE, "w") as (fh, json_tmp):
            fh.write(text)
    except BaseException:
        os.unlink(model_tmp)
        raise
    if (run_dir / RUN_FILE).exists():
        os.unlink(run_dir / RUN_FILE)          # an old run.json must not describe the new model, even briefly
    try:
        _publish(model_tmp, run_dir / MODEL_FILE)
    except BaseException:
        os.unlink(json_tmp)
        raise
    _publish(json_tmp, run_dir / RUN_FILE)
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


def read_meta(run_dir) -> dict:
    """``RUN/run.json``, checked: its format version and every field tfflat reads from it."""
    path = Path(run_dir) / RUN_FILE
    meta = read_json(path, fix=f"retrain the run (`tfflat train … --out {Path(run_dir)} --force`)")
    check_meta(meta, path)
    return meta


def check_meta(meta: dict, path) -> None:
    """A :class:`UserError` naming the first field of a run's metadata that tfflat cannot use."""
    from tfflat.data import TASKS
    from tfflat.training.run import TrainConfig

    def bad(what):
        return UserError(f"{path} is malformed ({what}); retrain the run with `tfflat train … --force`")

    for key, kind in (("config", dict), ("model_spec", dict), ("source", dict), ("indices", dict)):
        if not isinstance(meta.get(key), kind):
            raise bad(f"no {key} object")
    try:
        TrainConfig.from_dict(meta["config"])
    except UserError as err:
        raise bad(f"config: {str(err).replace('`', '')}") from None
    spec = meta["model_spec"]
    if spec.get("kind") not in ("fcn", "resnet50"):
        raise bad(f"model_spec.kind {spec.get('kind')!r} is not fcn or resnet50")
    if not _ints(spec.get("input_shape"), 1):
        raise bad("model_spec.input_shape is not a list of positive integers")
    if spec["kind"] == "fcn":
        if not _ints(spec.get("widths"), 1) or not spec["widths"]:
            raise bad("model_spec.widths is not a list of positive integers")
        for k in ("sigma_w", "sigma_b"):
            v = spec.get(k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise bad(f"model_spec.{k} is not a finite number ≥ 0")
    if meta["source"].get("dataset") not in TASKS:
        raise bad(f"source.dataset {meta['source'].get('dataset')!r} is not one of {', '.join(TASKS)}")
    for k in ("S", "A", "E"):
        part = meta["indices"].get(k)
        if not isinstance(part, dict) or not isinstance(part.get("pool"), str) or not _ints(part.get("indices"), 0):
            raise bad(f"indices.{k} is not {{pool: name, indices: [integers ≥ 0]}}")


def _ints(v, least: int) -> bool:
    return isinstance(v, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= least for i in v)


def data_fingerprint(splits) -> dict:
    """SHA-256 of the labels and of the inputs of S, A, E: what a reopened run checks its data against."""
    labels, inputs = hashlib.sha256(), hashlib.sha256()
    for x, y in ((splits.x_train, splits.y_train), (splits.x_attack, splits.y_attack), (splits.x_test, splits.y_test)):
        labels.update(np.ascontiguousarray(y, np.int64).tobytes())
        inputs.update(np.ascontiguousarray(x, np.float32).tobytes())
    return {"labels_sha256": labels.hexdigest(), "inputs_sha256": inputs.hexdigest()}


def load_data(meta: dict, run_dir, data_dir=None):
    """The exact S, A, E of a run, from ``data_dir`` or else the folder its ``run.json`` names.

    A data path read from ``run.json`` is followed only when it is absolute (tfflat records absolute
    paths; a relative one means the file was edited or made elsewhere, and is refused rather than
    resolved against some folder) and is a directory. Whatever is read (the readers never execute
    anything: see :mod:`tfflat.data.sources`) must then be the run's data: stored indices within the
    pools, and the labels' SHA-256 equal to the one recorded at training (a mismatch is an error; other
    inputs with the same labels are a warning).
    """
    import warnings

    from tfflat.data import load_task, take

    src, path = meta["source"], Path(run_dir) / RUN_FILE
    stored = src.get("data_dir")
    if data_dir is None and stored is not None:
        if not isinstance(stored, str) or not Path(stored).is_absolute():
            raise UserError(f"{path} names the data folder {stored!r}, which is not an absolute path (tfflat records "
                            "absolute paths, so the file was edited or made elsewhere); give the data folder with "
                            "`data_dir`")
        if not Path(stored).is_dir():
            raise UserError(f"run {run_dir} was trained on the data in {stored}, which is not a directory here; "
                            "give the data's new place with `data_dir`")
    task = load_task(src["dataset"], stored if data_dir is None else str(data_dir), bits=src.get("bits", 7),
                     target=src.get("target", "random"))
    for k, part in meta["indices"].items():
        pool = task.pools.get(part["pool"])
        if pool is not None and part["indices"] and max(part["indices"]) >= len(pool):
            raise UserError(f"{path}: the {k} indices go up to {max(part['indices'])}, but the {part['pool']} split "
                            f"of this data has {len(pool)} examples: it is not the data the run was trained on")
    splits = take(task, meta["indices"])
    recorded = meta.get("data")
    if isinstance(recorded, dict):
        now = data_fingerprint(splits)
        where = data_dir if data_dir is not None else (stored or "tensorflow-datasets")
        if recorded.get("labels_sha256") not in (None, now["labels_sha256"]):
            raise UserError(f"the data in {where} is not the data run {run_dir} was trained on (the labels of S, A, E "
                            "differ); give the original data folder with `data_dir`")
        if recorded.get("inputs_sha256") not in (None, now["inputs_sha256"]):
            warnings.warn(f"the inputs read from {where} differ from those run {run_dir} was trained on (same labels; "
                          "e.g. images decoded by another JPEG library): measures describe the network on these inputs",
                          UserWarning, stacklevel=3)
    return splits


def check_weights(model, where) -> None:
    """A :class:`UserError` when ``model`` has NaN or infinite weights (a diverged training): every measure of
    it would be NaN or meaningless."""
    bad = []
    for v in getattr(model, "weights", []):
        try:
            value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        except Exception:  # noqa: BLE001 - a weight we cannot read is not ours to judge
            continue
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad.append(getattr(v, "path", getattr(v, "name", "?")))
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise UserError(f"the network in {where} has NaN or infinite weights ({shown}): its training diverged; "
                        "retrain it with a lower learning rate")


def load(run_dir, data: bool = True, data_dir=None) -> Run:
    """Reopen a run: model, metadata and (unless ``data=False``) the exact S, A, E arrays (from
    ``data_dir`` when given, else the folder recorded in ``run.json``; see :func:`load_data`)."""
    import keras

    run_dir = check(run_dir)
    meta = read_meta(run_dir)
    try:
        model = keras.models.load_model(run_dir / MODEL_FILE, compile=False, safe_mode=True)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for bad files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load {run_dir / MODEL_FILE}: {first}; retrain the run") from None
    check_weights(model, run_dir)
    splits = load_data(meta, run_dir, data_dir) if data else None
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


def open_model(path, data: bool = True, data_dir=None) -> Opened:
    """The model at ``path``: a tfflat run (with its splits unless ``data=False``, from ``data_dir`` when
    given), a ``.keras`` file,
    a ``ModelCheckpoint`` folder (the newest ``.keras`` file in it) or a SavedModel folder (inference
    only: its weights are baked into a traced graph)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a tfflat run directory, a .keras file, a ModelCheckpoint "
                        "folder or a SavedModel folder")
    if path.is_file():
        if path.suffix == ".keras":
            return Opened(path, "keras", _checked(load_keras(path), path), file=path)
        if path.name.endswith((".weights.h5", ".h5", ".hdf5")):
            raise UserError(f"{path} is an HDF5 file ({'weights only' if '.weights.' in path.name else 'legacy format'}"
                            "); tfflat reads .keras files: save the model with model.save('model.keras')")
        raise UserError(f"{path} is not a model file; give a .keras file, a run directory, a ModelCheckpoint folder "
                        "or a SavedModel folder")
    if is_run(path):
        run = load(path, data=data, data_dir=data_dir)
        return Opened(path, "run", run.model, run, path / MODEL_FILE)
    if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
        return Opened(path, "savedmodel", _savedmodel(path))
    files = sorted(path.glob("*.keras"), key=lambda p: (p.stat().st_mtime, p.name))
    if files:
        return Opened(path, "keras", _checked(load_keras(files[-1]), files[-1]), file=files[-1])
    if (path / RUN_FILE).is_file():
        raise UserError(f"{path} is not a complete tfflat run (no {MODEL_FILE}); give the --out directory of "
                        "`tfflat train`")
    from tfflat.training.checkpoint import FILE as CHECKPOINT

    if (path / CHECKPOINT).is_file():
        raise UserError(f"{path} is an unfinished training run (only its checkpoint); rerun its `tfflat train … "
                        f"--out {path}` command to finish it")
    if (path / "checkpoint").is_file() or any(path.glob("*.index")):
        raise UserError(f"{path} is a tf.train.Checkpoint: it holds variables without the architecture; save the "
                        "model with model.save('model.keras') (or ModelCheckpoint(…'.keras')) and give that")
    if any(path.glob("*.weights.h5")) or any(path.glob("*.h5")):
        raise UserError(f"{path} holds only weights files (.h5); save whole models with "
                        "ModelCheckpoint('ckpt/epoch{epoch}.keras') and give that folder")
    raise UserError(f"{path} is not a tfflat run, a ModelCheckpoint folder (no .keras file) or a SavedModel "
                    f"(no saved_model.pb); train one with `tfflat train --out {path}` or give a .keras file")


def _checked(model, where):
    check_weights(model, where)
    return model


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


def tfflat_files(run_dir) -> list[Path]:
    """What tfflat wrote in ``run_dir``: the run, its measures (JSON objects with a ``format_version``), the
    training checkpoint and leftover temporary files — what ``train --force`` removes (nothing else)."""
    from tfflat.training.checkpoint import FILE as CHECKPOINT

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    out = []
    for p in sorted(run_dir.iterdir()):
        if not p.is_file():
            continue
        if p.name in (RUN_FILE, MODEL_FILE, CHECKPOINT) or (p.name.startswith(".") and ".tmp" in p.name):
            out.append(p)
        elif p.suffix == ".json":
            try:
                obj = json.loads(p.read_text())
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            if isinstance(obj, dict) and "format_version" in obj:
                out.append(p)
    return out


def update(run_dir, name: str, result: dict) -> Path:
    """Write a measurement next to a run (``RUN/<name>.json``), atomically."""
    path = Path(run_dir) / f"{name}.json"
    write_json(path, result)
    return path
