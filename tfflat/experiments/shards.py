"""One result from the shards of a sweep run on a cluster (``tfflat sweep CONFIG --shard I/N --out …``,
one job per share: see ``examples/slurm`` and ``examples/kubernetes``).

:func:`merge` checks that every shard's sidecar describes the same experiment on the same data (the
check a resumed sweep makes), copies each record once into the merged file (atomic appends: an
interrupted merge resumes, and records already in the merged file are kept, never overwritten), and
reports what the grid still lacks::

    summary = merge(["results/fig3c.1-of-8.jsonl", …], "results/fig3c.jsonl")
    summary["missing"]       # points of the grid no shard has finished (rerun those shards to resume)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tfflat import runs
from tfflat.errors import UserError
from tfflat.experiments import results


def expected_keys(meta: dict) -> set[str] | None:
    """Every record key of a sweep's grid (``None`` for other experiments, whose keys are open-ended)."""
    from tfflat.experiments import sweep
    from tfflat.experiments.config import Experiment

    exp = Experiment.from_dict(meta["config"])
    if exp.kind != "sweep":
        return None
    return {k for p in sweep.grid(exp) for k in sweep.point_keys(exp, p)}


def _sidecar(path: Path) -> dict:
    meta = results.read_meta(path)
    if meta is None:
        raise UserError(f"{path} has no sidecar {results.meta_path(path).name}: not a tfflat results file "
                        "(merge the .jsonl files that `tfflat sweep --out` wrote)")
    if meta.get("kind") != "tfflat-results":
        raise UserError(f"{results.meta_path(path)} is not a tfflat results sidecar")
    return meta


def merge(inputs, out, progress=None) -> dict:
    """Merge the results files ``inputs`` (the shards of one sweep or temporal run) into ``out``.

    Args:
      inputs: results files (``.jsonl``, each with its ``.meta.json`` sidecar), in order of precedence.
      out: the merged results file; created with a sidecar (the first shard's, plus ``merged_from``), or
        extended when it exists and holds the same experiment.
      progress: ``progress(done, total)`` after every input file.
    Returns:
      A JSON-able summary: ``inputs``, ``records`` (in ``out`` now), ``added``, ``duplicates`` (identical
      copies left out), ``conflicts`` (keys whose copies differ: the first is kept), ``missing`` (grid keys
      no input has; sweeps only, else None) and ``complete``.
    """
    paths = [Path(p) for p in inputs]
    out = Path(out)
    if not paths:
        raise UserError("give the shards' results files to merge")
    if out.suffix != ".jsonl":
        raise UserError(f"`out` {out} must end in .jsonl (a JSON-lines results file)")
    for p in paths:
        if not p.is_file():
            raise UserError(f"results file {p} does not exist")
        if p.resolve() == out.resolve():
            raise UserError(f"`out` {out} is also an input; merge into a new file")
    if len({p.resolve() for p in paths}) != len(paths):
        raise UserError("a results file is given twice")
    metas = [_sidecar(p) for p in paths]
    first = metas[0]
    for p, meta in zip(paths[1:], metas[1:]):
        results._same(p, first, meta)            # same config (but the data folder) and the same S/A/E
    side = results.meta_path(out)
    shards = [{"file": str(p), "created": m.get("created"), "versions": m.get("versions")}
              for p, m in zip(paths, metas)]
    if side.exists() or out.exists() and out.stat().st_size > 0:
        old = _sidecar(out)
        results._same(out, old, first)
        listed = [s for s in old.get("merged_from") or [] if isinstance(s, dict)]
        new = [s for s in shards if s["file"] not in {m.get("file") for m in listed}]
        if new:
            runs.write_json(side, {**old, "merged_from": listed + new})
    else:
        runs.write_json(side, {**first, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "merged_from": shards})
    have = {r["key"]: r for r in runs.read_jsonl(out) if "key" in r}
    seen: dict[str, str] = {k: json.dumps(runs._jsonable(r), sort_keys=True) for k, r in have.items()}
    added, duplicates, conflicts = 0, 0, []
    for i, p in enumerate(paths):
        for rec in runs.read_jsonl(p):
            key = rec.get("key")
            if key is None:
                continue
            text = json.dumps(runs._jsonable(rec), sort_keys=True)
            if key in seen:
                if seen[key] == text:
                    duplicates += 1
                elif key not in conflicts:
                    conflicts.append(key)
                continue
            runs.append_jsonl(out, rec)
            seen[key] = text
            added += 1
        if progress:
            progress(i + 1, len(paths))
    expected = expected_keys(first)
    missing = None if expected is None else sorted(expected - set(seen))
    return {"inputs": [str(p) for p in paths], "out": str(out), "records": len(seen), "added": added,
            "duplicates": duplicates, "conflicts": sorted(conflicts), "missing": missing,
            "complete": missing is not None and not missing}
