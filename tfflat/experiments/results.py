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
    if old.get("indices") != runs._jsonable(new.get("indices")):
        raise UserError(f"{out} was made with different data (the S/A/E indices differ); "
                        "check --data-dir or use another --out")


def finished_keys(out) -> set[str]:
    return {r["key"] for r in runs.read_jsonl(out) if "key" in r}


def load(paths):
    """All records of one or more results files as a pandas DataFrame (first record per key wins)."""
    import pandas as pd

    frames = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise UserError(f"results file {p} does not exist")
        recs = runs.read_jsonl(p)
        if recs:
            frames.append(pd.DataFrame.from_records(recs))
    if not frames:
        raise UserError(f"no records in {', '.join(map(str, paths))}; run the sweep first")
    df = pd.concat(frames, ignore_index=True)
    if "key" in df:
        df = df.drop_duplicates("key", keep="first").reset_index(drop=True)
    return df


def read_meta(path) -> dict | None:
    side = meta_path(path)
    return runs.read_json(side) if side.exists() else None
