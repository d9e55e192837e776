"""Results files of sweeps and temporal runs: JSON lines plus a sidecar, resumable.

``RESULTS.jsonl`` holds one flat record per finished measurement, appended atomically
(:func:`tfflat.runs.append_jsonl`), so ``pandas.read_json(RESULTS, lines=True)`` loads it.
``RESULTS.meta.json`` (written once, atomically) records the resolved config, the model spec,
the data source, the S/A/E indices and the package versions. A rerun reads the keys already in
the file and skips them; it refuses to append to a file made by a different config.
"""

from __future__ import annotations

import time
from pathlib import Path

from tfflat import runs
from tfflat.errors import UserError


def meta_path(out) -> Path:
    """``results/x.jsonl`` → ``results/x.meta.json``."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".meta.json")


def kernel_cache(out) -> Path:
    """The prior's kernel cache next to a results file (shared by its workers and by other sweeps
    with the same S + E, e.g. Figs. 3a and 4b)."""
    return Path(out).parent / "kernels"


def default_out(exp) -> Path:
    """Where results go without ``--out``: ``results/<config name>[-quick].jsonl``."""
    return Path("results") / f"{exp.name}{'-quick' if exp.quick else ''}.jsonl"


def open_results(exp, out, meta: dict) -> set[str]:
    """Prepare ``out`` for appending; return the keys already finished there.

    Writes the sidecar on first use; on a rerun checks that it describes the same experiment.
    """
    out = Path(out)
    if out.suffix != ".jsonl":
        raise UserError(f"--out {out} must end in .jsonl (a JSON-lines results file)")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name ending in .jsonl")
    side = meta_path(out)
    if side.exists():
        old = runs.read_json(side)
        if old.get("kind") != "tfflat-results":
            raise UserError(f"{side} is not a tfflat results sidecar; choose another --out")
        _same(out, old, meta)
    elif out.exists() and out.stat().st_size > 0:
        raise UserError(f"{out} exists but has no {side.name}; it was not made by tfflat — choose another --out")
    else:
        runs.write_json(side, {"kind": "tfflat-results", **meta, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "versions": runs.versions()})
    return finished_keys(out)


def _same(out, old: dict, new: dict) -> None:
    from tfflat.experiments.config import Experiment

    a = Experiment.from_dict(old["config"]).comparable()
    b = Experiment.from_dict(new["config"]).comparable()
    if a != b:
        diff = next((f"[{s}] {k}" for s in b if isinstance(b[s], dict)
                     for k in set(a.get(s) or {}) | set(b[s]) if (a.get(s) or {}).get(k) != b[s].get(k)),
                    next((k for k in b if a.get(k) != b.get(k)), "?"))
        raise UserError(f"{out} holds results of a different config ({diff} differs); "
                        "use another --out or delete it to start afresh")
    if old.get("indices") != runs._jsonable(new.get("indices")) or \
            old.get("attack_indices") != runs._jsonable(new.get("attack_indices")):
        raise UserError(f"{out} was made with different data (the S/A/E indices differ); "
                        "check --data-dir or use another --out")


def finished_keys(out) -> set[str]:
    return {r["key"] for r in runs.read_jsonl(out) if "key" in r}


IDENTITY = ("experiment", "quick", "dataset", "model", "train_size", "test_size")   # without a sidecar


def experiment_id(path, records: list[dict]) -> str:
    """What a results file's records belong to: ``<name>[-quick]@<hash of the config>``.

    The config is the sidecar's (without the data folder and the description, so the shards of one
    sweep, run anywhere, share it); without a sidecar, the records' own :data:`IDENTITY` fields.
    """
    meta = read_meta(path) if path is not None else None
    if meta and isinstance(meta.get("config"), dict):
        cfg = {k: v for k, v in meta["config"].items() if k != "description"}
        cfg["data"] = {k: v for k, v in (cfg.get("data") or {}).items() if k != "data_dir"}
        return _identity(cfg.get("name") or Path(path).stem, cfg.get("quick", False), cfg)
    first = records[0] if records else {}
    return record_id(first, default=Path(path).stem if path is not None else "experiment")


def record_id(rec: dict, default: str = "experiment") -> str:
    """:func:`experiment_id` from a record's own :data:`IDENTITY` fields (no sidecar)."""
    return _identity(rec.get("experiment") or default, bool(rec.get("quick", False)),
                     {k: rec.get(k) for k in IDENTITY})


def _identity(name: str, quick: bool, cfg: dict) -> str:
    import hashlib
    import json

    digest = hashlib.sha1(json.dumps(runs._jsonable(cfg), sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{name}{'-quick' if quick else ''}@{digest}"


def load(paths):
    """All records of one or more results files as one pandas DataFrame, one row per measurement.

    Every row gains ``results_file`` and ``experiment_id`` (:func:`experiment_id`). A record is
    identified by (experiment_id, key): the same key in two files of one experiment (overlapping
    shards, a file given twice) is one measurement and the first copy is kept; records of different
    experiments (e.g. the MNIST and CIFAR sweeps of Fig. 3, both keyed ``sgd/A0/seed0/over0``) are
    never merged. ``df.attrs`` holds ``read`` (records in the files) and ``duplicates`` (copies left out).
    """
    import pandas as pd

    frames, read = [], 0
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise UserError(f"results file {p} does not exist")
        recs = runs.read_jsonl(p)
        read += len(recs)
        if recs:
            df = pd.DataFrame.from_records(recs)
            df["results_file"] = str(p)
            df["experiment_id"] = experiment_id(p, recs)
            frames.append(df)
    if not frames:
        raise UserError(f"no records in {', '.join(map(str, paths))}; run the sweep first")
    df = pd.concat(frames, ignore_index=True)
    if "key" in df:
        df = df.drop_duplicates(["experiment_id", "key"], keep="first").reset_index(drop=True)
    df.attrs.update(read=read, duplicates=read - len(df))
    return df


def read_meta(path) -> dict | None:
    side = meta_path(path)
    return runs.read_json(side) if side.exists() else None
